"""Findings: each rule raised by a constructed failure, and no rule raised on twelve healthy runs.

Provoked runs go through descend.fit with a HealthMonitor (every 10 steps) and the Findings callback; healthy runs
through fit's default diagnostics (result.findings). A provoked run must raise its rule (others may come along: a
dead layer also starves earlier layers of gradient); a healthy run must raise none. The rules' thresholds are in
descend.inspect.findings. Where a finding reports numbers, the test recomputes them from an independent source:
the history (over-fitting's epoch, a diverged run's losses), the exact Hessian (torch.func.hessian, eigvalsh) for
sharpness, the parameters recorded around each step for update ratios.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import statistics
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, make_circles
from torch import nn
from torch.func import functional_call, hessian

from descend.data.datasets import load_dataset
from descend.inspect.findings import EXCLUDES, RULES, Finding, Findings, diagnose
from descend.inspect.monitor import HealthMonitor, SharpnessMonitor
from descend.train import Callback, DivergenceGuard, FitResult, TrainState, fit


def mlp(d_in: int, width: int, depth: int, act: type[nn.Module], *, scale: float = 1.0, seed: int = 0) -> nn.Module:
    """``depth`` hidden layers of ``width`` units, default torch initialisation times ``scale``, one output."""
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


def watched(model, data, **options) -> tuple[list[Finding], FitResult]:
    health = HealthMonitor(every=10)
    findings = Findings(health=health)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(model, data, callbacks=[health, findings], progress=False, seed=0, **options)
    return findings.findings, result


def run(model, data, **options) -> list[Finding]:
    return watched(model, data, **options)[0]


def dead_relu_net() -> nn.Module:
    model = mlp(30, 32, 2, nn.ReLU)
    with torch.no_grad():
        model[0].bias.fill_(-20.0)  # standardised inputs never lift the first layer above zero
    return model


def over_fitting_run() -> tuple[list[Finding], FitResult]:
    """A wide MLP on 40 training rows, full batch, 150 epochs: it memorises them."""
    x, y = load_breast_cancer(return_X_y=True)
    return watched(mlp(30, 256, 2, nn.ReLU), (x[:80], y[:80]), epochs=150, lr=1e-3, validation=0.5,
                   early_stopping=False, batch_size="full", loss="bce")


def provoked(rule: str):
    bc = load_dataset("breast_cancer")
    cases = {
        "vanishing_gradients": lambda: run(mlp(30, 32, 10, nn.Sigmoid), bc, epochs=3, optimizer="sgd", lr=0.01,
                                           loss="bce"),
        "exploding_gradients": lambda: run(mlp(30, 64, 12, nn.ReLU, scale=6.0), bc, epochs=1, optimizer="sgd",
                                           lr=1e-12, loss="bce"),
        "dead_relus": lambda: run(dead_relu_net(), bc, epochs=3, loss="bce"),
        # without the divergence guard, which would roll back and shrink the lr (the guard_* events say so)
        "lr_too_high": lambda: run("mlp", bc, epochs=5, optimizer="sgd", lr=50.0, guard=False),
        "lr_too_low": lambda: run("mlp", bc, epochs=3, optimizer="sgd", lr=1e-7),
        "over_fitting": lambda: over_fitting_run()[0],
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


def test_over_fitting_names_the_epoch_validation_loss_turned() -> None:
    # Oracle: the history. The turn is the epoch of the last new low of the validation loss (a running minimum,
    # scanned in the test); from there the validation loss climbs (least-squares slope > 0, ending >= 1.2x) while
    # the training loss falls (slope < 0), and before it the validation loss fell.
    findings, result = over_fitting_run()
    (f,) = [f for f in findings if f.rule == "over_fitting"]
    val = [row["val_loss"] for row in result.history]
    train = [row["loss"] for row in result.history]
    turn, low = 0, math.inf
    for i, v in enumerate(val):
        if v < low:
            turn, low = i, v
    epoch = int(result.history[turn]["epoch"])
    assert f.epoch == f.evidence["best_epoch"] == epoch
    assert f.evidence["best_val_loss"] == val[turn] and f.evidence["last_val_loss"] == val[-1]
    after = np.arange(len(val) - turn)
    assert np.polyfit(after, val[turn:], 1)[0] > 0 > np.polyfit(after, train[turn:], 1)[0]
    assert np.polyfit(np.arange(turn + 1), val[: turn + 1], 1)[0] < 0
    assert val[-1] >= 1.2 * val[turn] and train[-1] < train[turn]
    assert 5 < epoch < len(val) - 5  # a turn inside the run, not at either end


# Healthy runs on five built-in datasets, through fit's own diagnostics (health every 100 steps, sharpness every
# 1000 on a fixed training batch, findings): the runs of 1000, 1035, 1080 and 1278 (batch size 1) steps include a
# sharpness measurement; the full-batch ones (Newton, L-BFGS, plain gradient descent) stop on the tolerance rule
# at the optimum.
HEALTHY = {
    "iris mlp": ("mlp", "iris", {"epochs": 250, "lr": 0.01}),
    # `descend train iris.csv --target species --batch-size 1 --epochs 9`: one row a step, the CLI's defaults
    "iris mlp batch 1": ("mlp", "iris", {"batch_size": 1, "epochs": 9}),
    "wine mlp batch 1": ("mlp", "wine", {"batch_size": 1, "epochs": 9}),
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
    assert len(health) == 1 + result.steps // HealthMonitor().every  # fit's default cadence
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


class Params(Callback):
    """The parameters after every step (run after the monitors, so they are the ones the monitors measured)."""

    def __init__(self) -> None:
        self.after: dict[int, list[torch.Tensor]] = {}

    def on_fit_start(self, state: TrainState) -> None:
        self.after[state.step] = [p.detach().clone() for p in state.model.parameters()]

    def on_step_end(self, state: TrainState) -> None:
        self.after[state.step] = [p.detach().clone() for p in state.model.parameters()]


def as_function(model: nn.Module, x: torch.Tensor):
    """``theta -> model(x)`` in float64, theta the parameters flattened in ``model.parameters()`` order."""
    model = copy.deepcopy(model).double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def out(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, [s.numel() for s in shapes])
        return functional_call(model, {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}, (x.double(),))

    return out


def flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params]).double()


def test_lr_too_high_on_sharpness_above_the_edge() -> None:
    # Full-batch gradient descent on a small tanh MLP at lr = 2.5 x 2/lambda_max: the step overshoots along the
    # sharpest direction by 4x a step. The targets are the start's outputs plus a residual orthogonal to the
    # sharpest output direction (the top left singular vector of the Jacobian), so the loss first falls, along
    # the flat directions, and over 4 epochs ends below 1.1x the first: only the sharpness shows the danger.
    # Oracle: the exact Hessian of the loss at each recorded step's parameters (torch.func.hessian, float64),
    # its top eigenvalue (eigvalsh), against the records and the finding's evidence.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    out = as_function(model, x)
    theta0 = flat([p.detach() for p in model.parameters()])
    u1 = torch.linalg.svd(torch.func.jacrev(lambda t: out(t).squeeze(1))(theta0), full_matrices=False)[0][:, 0]
    r0 = torch.sin(2 * x[:, 0]).double() + 0.3 * x[:, 1].double() - out(theta0).squeeze(1)
    y = (out(theta0).squeeze(1) + r0 - (u1 @ r0) * u1).float().unsqueeze(1).detach()

    def top_eigenvalue(theta: torch.Tensor) -> float:
        H = hessian(lambda t: (out(t) - y.double()).pow(2).mean())(theta)
        return float(torch.linalg.eigvalsh(H)[-1])

    lr = 2.5 * 2 / top_eigenvalue(theta0)
    curvature = SharpnessMonitor(lambda: (model(x) - y).pow(2).mean(), every=1)
    findings, params = Findings(sharpness=curvature), Params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(model, (x, y), epochs=4, optimizer="sgd", lr=lr, batch_size="full", validation=0.0, tol=None,
                     guard=False, diagnostics=False, progress=False, callbacks=[curvature, findings, params])
    losses = [row["loss"] for row in result.history]
    assert losses[-1] <= 1.1 * losses[0] and all(math.isfinite(v) for v in losses)  # the loss alone says nothing
    records = curvature.records
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        exact = top_eigenvalue(flat(params.after[r["step"]]))
        assert r["sharpness"] == pytest.approx(exact, rel=1e-3)
        assert r["threshold"] == pytest.approx(2 / lr) and r["ratio"] == pytest.approx(exact * lr / 2, rel=1e-3)
        assert exact * lr / 2 > 2  # above twice the edge at every recorded step
    (f,) = [f for f in findings.findings if f.rule == "lr_too_high"]
    last = records[-1]
    assert f.step == last["step"] == 4
    assert f.evidence == {"sharpness": last["sharpness"], "threshold": last["threshold"]}
    assert f"{last['sharpness']:.4g}" in f.message and "2/lr" in f.message


def test_lr_too_high_on_large_oscillating_updates() -> None:
    # Full-batch gradient descent with the Huber loss on a line, lr = 5/lambda_max (2.5 x the quadratic edge):
    # near the optimum the loss is quadratic and the step overshoots; beyond delta it is linear and the step is
    # bounded, so the descent settles into a 2-cycle: the bias jumps across zero each step (update ratio ~2.5, the
    # weight's ~0.003, median 1.2), the loss alternates between 1.77 and 2.2. Started far away (weight 20), the
    # loss ends below the first epoch's, never non-finite, and no sharpness is measured: only the update ratios
    # and the oscillation show it.
    # Oracle: the ratios recomputed from the parameters recorded before and after each measured step
    # (||theta_t - theta_{t-1}|| / ||theta_{t-1}||, per tensor), the rises counted on the history.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, generator=g)
    y = 0.5 * x + 0.3 + 0.2 * torch.randn(200, 1, generator=g)
    A = torch.cat([x, torch.ones_like(x)], 1)
    lam = float(torch.linalg.eigvalsh(A.T @ A / len(x))[-1])  # the Hessian of the quadratic part of the loss
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(20.0)
        model.bias.fill_(0.0)
    health, params = HealthMonitor(every=1), Params()
    findings = Findings(health=health)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(model, (x, y), loss="huber", epochs=40, optimizer="sgd", lr=2.5 * 2 / lam, batch_size="full",
                     validation=0.0, tol=None, guard=False, diagnostics=False, progress=False,
                     callbacks=[health, findings, params])
    losses = [row["loss"] for row in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] <= 1.1 * losses[0]
    rises = sum(b > 1.05 * a for a, b in itertools.pairwise(losses[-10:]))
    assert rises >= 3
    for r in health.records[-3:]:
        before, after = params.after[r["step"] - 1], params.after[r["step"]]
        exact = {name: float((b - a).norm() / a.norm()) for name, a, b in zip(("weight", "bias"), before, after)}
        assert r["update_ratio"] == pytest.approx(exact, rel=1e-5)
        assert statistics.median(exact.values()) > 0.1
    (f,) = [f for f in findings.findings if f.rule == "lr_too_high"]
    last = health.records[-1]
    assert f.step == last["step"] == 40
    assert f.evidence == {"median_update_ratio": pytest.approx(statistics.median(last["update_ratio"].values())),
                          "rises": rises}
    assert f"in {rises} of the last 9 epochs" in f.message


def lr_too_high(findings: list[Finding]) -> Finding:
    (f,) = [f for f in findings if f.rule == "lr_too_high"]
    return f


def test_lr_too_high_says_non_finite_only_when_a_loss_was() -> None:
    # Constructed rows: a nan at epoch 3 is named as such, with its epoch; a run stopped as diverged with every
    # loss finite (the divergence guard out of retries) is not called non-finite, and its evidence is the history's.
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}, {"epoch": 3, "loss": math.nan}]
    f = lr_too_high(diagnose(rows, stop_reason="diverged"))
    assert f.epoch == 3 and "non-finite (nan) at epoch 3: the descent diverged" in f.message
    assert math.isnan(f.evidence["loss"]) and f.evidence["stop_reason"] == "diverged"
    finite = [*rows[:2], {"epoch": 3, "loss": 0.9}]
    f = lr_too_high(diagnose(finite, stop_reason="diverged"))
    assert not f.message.startswith("The training loss became non-finite")
    assert "every epoch's training loss was finite" in f.message and "fell to 0.5 (epoch 2)" in f.message
    assert f.evidence == {"stop_reason": "diverged", "first_loss": 1.0, "lowest_loss": 0.5, "lowest_epoch": 2,
                          "last_loss": 0.9}
    assert f.epoch == 3


def test_lr_too_high_on_a_provoked_non_finite_loss() -> None:
    # Plain SGD at lr 50 without the guard: the loss overflows. The epoch named is the history's first non-finite one.
    findings, result = watched("mlp", load_dataset("breast_cancer"), epochs=5, optimizer="sgd", lr=50.0, guard=False)
    first = next(int(row["epoch"]) for row in result.history if not math.isfinite(row["loss"]))
    f = lr_too_high(findings)
    assert f.epoch == first and f"at epoch {first}" in f.message and "non-finite" in f.message


def test_lr_too_high_when_the_guard_runs_out_on_a_rising_loss() -> None:
    # Full-batch gradient descent on least squares at lr = 1.02 x 2/lambda_max: the error along the sharpest
    # direction grows by 1.04 a step, the loss never spikes (x1.5 over 10 steps) but climbs; the guard, allowed no
    # retry, stops the run as diverged on the rising rule. Every epoch's loss is finite, and the finding says so,
    # with the lowest and last losses of the history.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5])
    y = X @ torch.tensor([1.0, -1.0, 2.0]) + 0.1 * torch.randn(200, generator=g)
    A = torch.cat([X, torch.ones(200, 1)], 1).double()
    lam = float(torch.linalg.eigvalsh(2 / 200 * A.T @ A)[-1])  # the Hessian of the mean squared error
    data = SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task="regression")  # as given: unscaled
    guard = DivergenceGuard(max_retries=0)
    findings, result = watched("linear", data, loss="mse", epochs=400, optimizer="sgd", lr=1.02 * 2 / lam,
                               batch_size="full", tol=None, guard=guard, scale_target=False)
    assert result.stop_reason == "diverged"
    assert [e["event"] for e in guard.events] == ["guard_stop"] and guard.events[0]["reason"] == "rising"
    losses = [row["loss"] for row in result.history]
    assert all(math.isfinite(v) for v in losses)
    low = int(np.argmin(losses))
    f = lr_too_high(findings)
    assert not f.message.startswith("The training loss became non-finite")
    assert "every epoch's training loss was finite" in f.message
    assert f.evidence == {"stop_reason": "diverged", "first_loss": losses[0], "lowest_loss": losses[low],
                          "lowest_epoch": low + 1, "last_loss": losses[-1]}
    assert f.epoch == len(losses) and f"ended at {losses[-1]:.4g}" in f.message


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_the_probe_leaves_model_and_optimizer_bit_identical(optimizer: str) -> None:
    # Oracle: a twin trained identically without the probe. After the probe, both take the same five steps; every
    # parameter, gradient and optimizer state tensor must be equal bit for bit (a state left changed, or a rate
    # left at 10x, would show at once).
    from descend.inspect.diagnostics import training_loss
    from descend.inspect.findings import probe_higher_lr
    from descend.optim import Adam, Momentum

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, generator=g), torch.randn(64, 1, generator=g)
    twins = []
    for _ in range(2):
        model = mlp(3, 8, 1, nn.Tanh)
        opt = Adam(model.parameters(), lr=1e-3) if optimizer == "adam" else Momentum(model.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            opt.step()
        twins.append((model, opt))
    (model, opt), (twin, twin_opt) = twins
    before, after = probe_higher_lr(model, opt, training_loss(model, nn.functional.mse_loss, x, y))
    assert after < before
    for m, o in twins:
        for _ in range(5):
            o.zero_grad()
            (m(x) - y).pow(2).mean().backward()
            o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b) and torch.equal(a.grad, b.grad)
    assert opt.param_groups[0]["lr"] == twin_opt.param_groups[0]["lr"]
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        for key, value in opt.state[p].items():
            other = twin_opt.state[q][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def test_contradicting_findings_are_never_both_raised() -> None:
    # A run that diverged (a non-finite epoch) after its validation loss rose: the divergence explains both, so
    # over_fitting is left out (EXCLUDES); a steadily falling loss that reached 3.6e-15 is converged, not slow.
    rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.0 / e if e < 10 else e / 50} for e in range(1, 31)]
    rows.append({"epoch": 31, "loss": math.inf, "val_loss": math.inf})
    assert [f.rule for f in diagnose(rows)] == ["lr_too_high"]
    tiny = [{"epoch": e, "loss": 3.6e-15 * 2.0 ** (40 - e)} for e in range(1, 41)]
    assert diagnose(tiny) == []
    for rule, overridden in EXCLUDES.items():
        assert rule not in overridden and set(overridden) <= set(RULES)


def test_advice_leaves_out_what_the_run_already_does() -> None:
    # dead units in a net already initialised with He: the advice does not say "use He initialisation".
    record = {"step": 10, "grad_norm": {"0": 1.0, "2": 1.0}, "param_norm": {"0": 1.0, "2": 1.0},
              "update_ratio": {"0": 1e-3, "2": 1e-3}, "global_grad_norm": 1.4,
              "activations": {"1": {"module": "ReLU", "dead_fraction": 0.9, "units": 64}}}
    (f,) = diagnose([{"epoch": 1, "loss": 1.0}], [record] * 3, setup={"init": "he", "lr": 0.01})
    assert f.rule == "dead_relus" and "use He" not in f.suggestion and "already used" in f.suggestion
    assert "lr=0.001" in f.suggestion and "--lr 0.001" in f.suggestion
    over = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.0 / e if e < 10 else e / 50} for e in range(1, 31)]
    (f,) = diagnose(over, early_stopping={"best_epoch": 9, "restored": True}, setup={"l2": 1e-3, "dropout": 0.2})
    assert "Early stopping kept epoch 9's weights" in f.message
    assert "early_stopping=True" not in f.suggestion and "dropout" not in f.suggestion and "l2=0.001" in f.suggestion


@pytest.mark.parametrize("lr", [1e-6, 1e-4])
def test_a_rate_far_too_low_on_a_zero_initialised_linear_model_is_named_as_such(lr: float) -> None:
    # Weights that start at zero and barely move look huge-gradient (the gradient dwarfs them) and flat; the cause
    # is the rate, which the probe shows by raising it step by step (10x, 100x, ...) until the loss falls.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(150, 5, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0]) + 0.1 * torch.randn(150, generator=g)
    data = SimpleNamespace(X_train=X[:120], y_train=y[:120], X_val=X[120:], y_val=y[120:], task="regression")
    result = fit("linear", data, optimizer="sgd", lr=lr, batch_size="full", epochs=30, tol=None,
                         early_stopping=False, progress=False)  # fmt: skip
    (found,) = result.findings
    assert found.rule == "lr_too_low" and "the rate, not the model" in found.message
