"""Findings: each rule raised by a constructed failure, and no rule raised on ten healthy runs.

Provoked runs go through descend.fit with a HealthMonitor (every 10 steps) and the Findings callback; healthy runs
through fit's default diagnostics (result.findings). A provoked run must raise its rule (others may come along: a
dead layer also starves earlier layers of gradient); a healthy run must raise none. The rules' thresholds are in
descend.inspect.findings.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from sklearn.datasets import load_breast_cancer, make_circles
from torch import nn

from descend.data.datasets import load_dataset
from descend.inspect.findings import Finding, Findings, diagnose
from descend.inspect.monitor import HealthMonitor, SharpnessMonitor
from descend.train import fit


def mlp(d_in: int, width: int, depth: int, act: type[nn.Module], *, scale: float = 1.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    model = nn.Sequential(*layers, nn.Linear(d, 1))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(scale)
    return model


def run(model, data, **options) -> list[Finding]:
    health = HealthMonitor(every=10)
    findings = Findings(health=health)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(model, data, callbacks=[health, findings], progress=False, seed=0, **options)
    return findings.findings


def dead_relu_net() -> nn.Module:
    model = mlp(30, 32, 2, nn.ReLU)
    with torch.no_grad():
        model[0].bias.fill_(-20.0)  # standardised inputs never lift the first layer above zero
    return model


def provoked(rule: str):
    bc = load_dataset("breast_cancer")
    x, y = load_breast_cancer(return_X_y=True)
    cases = {
        "vanishing_gradients": lambda: run(mlp(30, 32, 10, nn.Sigmoid), bc, epochs=3, optimizer="sgd", lr=0.01,
                                           loss="bce"),
        "exploding_gradients": lambda: run(mlp(30, 64, 12, nn.ReLU, scale=6.0), bc, epochs=1, optimizer="sgd",
                                           lr=1e-12, loss="bce"),
        "dead_relus": lambda: run(dead_relu_net(), bc, epochs=3, loss="bce"),
        # without the divergence guard, which would roll back and shrink the lr (the guard_* events say so)
        "lr_too_high": lambda: run("mlp", bc, epochs=5, optimizer="sgd", lr=50.0, guard=False),
        "lr_too_low": lambda: run("mlp", bc, epochs=3, optimizer="sgd", lr=1e-7),
        "over_fitting": lambda: run(mlp(30, 256, 2, nn.ReLU), (x[:80], y[:80]), epochs=150, lr=1e-3, validation=0.5,
                                    early_stopping=False, batch_size="full", loss="bce"),
        "under_fitting": lambda: run("logistic", make_circles(400, noise=0.05, factor=0.5, random_state=0),
                                     epochs=60, lr=0.05),
        # tiny weights: a saddle at the origin, escaped after ~350 full-batch steps
        "plateau": lambda: run(mlp(30, 16, 3, nn.Tanh, scale=0.001), bc, epochs=400, optimizer="sgd", lr=1.0,
                               loss="bce", early_stopping=False, batch_size="full", tol=None),
    }
    return cases[rule]()


@pytest.mark.parametrize(
    "rule",
    ["vanishing_gradients", "exploding_gradients", "dead_relus", "lr_too_high", "lr_too_low", "over_fitting",
     "under_fitting", "plateau"],
)
def test_each_rule_is_raised_by_its_constructed_failure(rule: str) -> None:
    findings = provoked(rule)
    found = {f.rule: f for f in findings}
    assert rule in found, [str(f) for f in findings]
    f = found[rule]
    assert f.message and f.suggestion and f.evidence
    assert f.step is not None or f.epoch is not None


# Healthy runs on five built-in datasets, through fit's own diagnostics (health every 25 steps, sharpness every
# 1000 on a fixed training batch, findings): the runs of 1000 and 1035 steps include a sharpness measurement; the
# full-batch ones (Newton, L-BFGS, plain gradient descent) stop on the tolerance rule at the optimum.
HEALTHY = {
    "iris mlp": ("mlp", "iris", {"epochs": 250, "lr": 0.01}),
    "wine mlp": ("mlp", "wine", {"epochs": 60}),
    "breast_cancer logistic": ("logistic", "breast_cancer", {"epochs": 60, "lr": 0.01}),
    "digits mlp": ("mlp", "digits", {"epochs": 23}),
    "diabetes mlp": ("mlp", "diabetes", {"epochs": 100, "lr": 0.01}),
    "iris softmax": ("softmax", "iris", {"epochs": 100, "lr": 0.05}),
    "wine softmax momentum": ("softmax", "wine", {"optimizer": "momentum", "lr": 0.01, "epochs": 40}),
    "breast_cancer newton": ("logistic", "breast_cancer", {"optimizer": "newton", "batch_size": "full", "l2": 1e-3}),
    "breast_cancer lbfgs": ("logistic", "breast_cancer", {"optimizer": "lbfgs", "batch_size": "full", "l2": 1e-3}),
    "diabetes linear gd": ("linear", "diabetes", {"optimizer": "sgd", "lr": 0.1, "batch_size": "full",
                                                  "epochs": 600}),
}


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_no_finding_on_healthy_runs_with_fits_default_diagnostics(name: str, tmp_path) -> None:
    model, dataset, options = HEALTHY[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(model, load_dataset(dataset), progress=False, seed=0, run_dir=tmp_path / "run", **options)
    assert result.findings == [], [str(f) for f in result.findings]
    # not a vacuous pass: the rules had the records they read
    health = (tmp_path / "run" / "health.jsonl").read_text().splitlines()
    assert len(health) == 1 + result.steps // 25
    curvature = tmp_path / "run" / "curvature.jsonl"
    second_order = options.get("optimizer") in ("newton", "lbfgs")
    measured = len(curvature.read_text().splitlines()) if curvature.exists() else 0
    assert measured == (0 if second_order else result.steps // 1000)


def test_findings_and_records_are_written_to_the_run_folder(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x.sum(1, keepdim=True)
    model = mlp(3, 8, 1, nn.Tanh)
    health = HealthMonitor(every=2)
    curvature = SharpnessMonitor(lambda: (model(x) - y).pow(2).mean(), every=2)
    findings = Findings(health=health, sharpness=curvature)
    fit(model, (x, y), epochs=4, optimizer="sgd", lr=1e-8, batch_size="full", validation=0.0, progress=False,
        callbacks=[health, curvature, findings], run_dir=tmp_path / "run")
    run_dir = tmp_path / "run"
    lines = [json.loads(line) for line in (run_dir / "health.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [r["step"] for r in health.records] == [1, 2, 4]  # first step, then every 2
    records = [json.loads(line) for line in (run_dir / "curvature.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert records[0]["threshold"] == pytest.approx(2 / 1e-8)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    logged = [e for e in events if e["event"] == "finding"]
    assert [e["rule"] for e in logged] == [f.rule for f in findings.findings] == ["lr_too_low"]


def test_rules_on_constructed_rows() -> None:
    """The epoch-row rules on hand-made histories, including the edges of their thresholds."""
    falling = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.0 / e} for e in range(1, 31)]
    assert diagnose(falling) == []
    over = [dict(r, val_loss=r["loss"] if r["epoch"] <= 10 else 0.1 * (1 + 0.03 * (r["epoch"] - 10)))
            for r in falling]
    (f,) = diagnose(over)
    assert f.rule == "over_fitting" and f.epoch == 10
    slow = [{"epoch": e, "loss": 1.0 - 0.005 * e} for e in range(1, 21)]
    assert [f.rule for f in diagnose(slow)] == ["lr_too_low"]
    rising = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 1.2}]
    assert [f.rule for f in diagnose(rising)] == ["lr_too_high"]
    assert [f.rule for f in diagnose([*rising[:1], {"epoch": 2, "loss": 1.09}])] == []
