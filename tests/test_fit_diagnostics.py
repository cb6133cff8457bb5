"""Diagnostics as part of a normal descend.fit run (``diagnostics=True``, the default).

Oracles: the Hessian of a linear model's mean squared error is constant and known in closed form,
:math:`H = \\tfrac{2}{n} A^T A + \\lambda_2 \\,\\mathrm{diag}(1_w, 0_b)` with :math:`A = [X, 1]`, so the sharpness
fit records at steps 1000 and 2000 must be its top eigenvalue (``numpy.linalg.eigvalsh``), and the threshold 2/lr; watching
must not change the descent (same weights, bit for bit, with diagnostics on and off); findings reach the
FitResult and events.jsonl with the same fields.
"""

from __future__ import annotations

import doctest
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import descend.inspect.diagnostics
from descend.errors import ConfigError
from descend.inspect import Findings, HealthMonitor, SharpnessMonitor
from descend.train import fit

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def regression(n: int = 200, d: int = 3, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) * torch.tensor([1.0, 2.0, 0.5])
    y = X @ torch.tensor([1.0, -1.0, 2.0]) + 0.1 * torch.randn(n, generator=g)
    return SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task="regression")


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("optimizer", "options", "edge"), [("sgd", {}, 2.0), ("momentum", {"momentum": 0.5}, 3.0)])
def test_default_sharpness_is_the_top_eigenvalue_of_the_training_loss(tmp_path, optimizer, options, edge) -> None:
    data, l2, lr = regression(), 0.1, 0.01
    result = fit("linear", data, loss="mse", optimizer=optimizer, optimizer_options=options, lr=lr, l2=l2,
                 batch_size=4, epochs=40, tol=None, progress=False, run_dir=tmp_path / "run")
    assert result.steps == 2000
    records = read(tmp_path / "run" / "curvature.jsonl")
    assert [r["step"] for r in records] == [1000, 2000]
    # fit's fixed batch for sharpness: four batches of 4 but at least 32 of the 200 rows, drawn with the run's
    # seed (0), as training_loss does
    rows = descend.inspect.diagnostics.sharpness_rows(4)
    assert rows == 32
    idx = torch.randperm(200, generator=torch.Generator().manual_seed(0))[:rows].sort().values
    A = np.hstack([data.X_train[idx].double().numpy(), np.ones((rows, 1))])
    H = 2 / rows * A.T @ A + l2 * np.diag([1.0, 1.0, 1.0, 0.0])  # the penalty is part of the objective
    top = np.linalg.eigvalsh(H)[-1]
    for r in records:
        assert r["sharpness"] == pytest.approx(top, rel=1e-4)
        assert r["threshold"] == pytest.approx(edge / lr)  # (2 + 2 momentum) / lr
        assert r["ratio"] == pytest.approx(top * lr / edge, rel=1e-4)
        assert "preconditioned_ratio" not in r
    health = read(tmp_path / "run" / "health.jsonl")
    assert [r["step"] for r in health] == [1, *range(HealthMonitor().every, 2001, HealthMonitor().every)]  # the default cadence


def test_adam_gets_the_preconditioned_edge(tmp_path) -> None:
    fit("linear", regression(), loss="mse", lr=0.01, batch_size=4, epochs=20, tol=None, progress=False,
        run_dir=tmp_path / "run")
    (r,) = read(tmp_path / "run" / "curvature.jsonl")
    assert r["preconditioned_threshold"] == pytest.approx((2 + 2 * 0.9) / ((1 - 0.9) * 0.01))
    assert r["preconditioned_ratio"] == pytest.approx(r["preconditioned_sharpness"] / r["preconditioned_threshold"])


def test_watching_does_not_change_the_descent() -> None:
    data = regression()
    runs = [fit("mlp", data, lr=0.01, batch_size=8, epochs=41, tol=None, progress=False, seed=3, diagnostics=d)
            for d in (True, False)]
    assert runs[0].steps == 1025  # one sharpness measurement and 21 health records happened in the first run
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert runs[0].history == [dict(r, time=r0["time"]) for r, r0 in zip(runs[1].history, runs[0].history)]


def test_findings_are_on_the_result_and_in_the_events(tmp_path) -> None:
    # lr far too small for plain gradient descent: the update ratios stay below 1e-5 (lr_too_low)
    result = fit("mlp", regression(), optimizer="sgd", lr=1e-7, batch_size=8, epochs=3, progress=False,
                 run_dir=tmp_path / "run")
    assert [f.rule for f in result.findings] == ["lr_too_low"]
    (f,) = result.findings
    assert f.message and f.suggestion and f.evidence["max_update_ratio"] < 1e-5
    events = [e for e in read(tmp_path / "run" / "events.jsonl") if e["event"] == "finding"]
    assert [(e["rule"], e["message"], e["suggestion"], e["evidence"], e["step"]) for e in events] == [
        (f.rule, f.message, f.suggestion, f.evidence, f.step)]


def test_diagnostics_off(tmp_path) -> None:
    result = fit("mlp", regression(), optimizer="sgd", lr=1e-7, batch_size=8, epochs=3, progress=False,
                 run_dir=tmp_path / "run", diagnostics=False)
    assert result.findings == []
    assert not (tmp_path / "run" / "health.jsonl").exists()
    assert not any(e["event"] == "finding" for e in read(tmp_path / "run" / "events.jsonl"))


def test_the_callers_monitors_replace_the_defaults(tmp_path) -> None:
    health = HealthMonitor(every=10)
    fit("mlp", regression(), lr=0.01, batch_size=8, epochs=2, progress=False, callbacks=[health],
        run_dir=tmp_path / "run")
    assert [r["step"] for r in read(tmp_path / "run" / "health.jsonl")] == [1, 10, 20, 30, 40, 50]
    added = descend.inspect.diagnostics.default_callbacks([health], loss=lambda: torch.zeros(()))
    assert [type(cb) for cb in added] == [SharpnessMonitor, Findings]
    assert added[1].health is health  # type: ignore[attr-defined]


def test_diagnostics_argument_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"^diagnostics: invalid diagnostics='yes'; expected True or False"):
        fit("linear", regression(), diagnostics="yes", progress=False)  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testmod(descend.inspect.diagnostics)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("optimizer", "key"), [("adam", "preconditioned_threshold"), ("sgd", "threshold")])
def test_a_schedule_that_ends_at_zero_is_not_measured_there(tmp_path, optimizer, key) -> None:
    # warm-up-cosine falls to 0 at the planned end; the last step lands on the sharpness cadence
    result = fit("mlp", regression(), optimizer=optimizer, lr=0.01, schedule="warmup-cosine", max_steps=20,
                 batch_size=16, sharpness_every=10, tol=None, progress=False, run_dir=tmp_path / "run")
    assert result.steps == 20 and result.final["lr"] == 0.0
    records = read(tmp_path / "run" / "curvature.jsonl")
    assert [r["step"] for r in records] == [10]
    assert records[0][key] > 0 and records[0]["lr"] > 0


def _baseline(loss, y: torch.Tensor, out: int) -> float:
    return descend.inspect.diagnostics.TrainingLoss(torch.nn.Linear(2, out), loss, torch.zeros(len(y), 2), y,
                                                    None).baseline()  # fmt: skip


def test_baseline_is_the_closed_form_minimum_of_each_loss() -> None:
    """The best constant prediction's loss, against closed forms (float64 sums of the same float32 targets) to
    1e-6 relative: squared error, the variance; absolute error, the mean distance to the median; binary
    cross-entropy, the entropy of the positives' fraction; cross-entropy, the entropy of the class frequencies
    (a class absent from the batch included); a standardised squared error, the variance over sigma squared."""
    from descend.losses import get, standardised

    g = torch.Generator().manual_seed(0)
    y = torch.randn(129, generator=g) * 3 + 5
    yd = y.double()
    assert _baseline(get("mse", "regression"), y, 1) == pytest.approx(float(yd.var(unbiased=False)), rel=1e-6)
    mad = float((yd - yd.median()).abs().mean())
    assert _baseline(get("mae", "regression"), y, 1) == pytest.approx(mad, rel=1e-6)
    sigma = torch.tensor([4.0])
    scaled = standardised(get("mse", "regression"), torch.tensor([5.0]), sigma)
    assert _baseline(scaled, y, 1) == pytest.approx(float(yd.var(unbiased=False)) / 16.0, rel=1e-6)
    b = (torch.rand(200, generator=g) < 0.3).float()
    p = float(b.double().mean())
    assert _baseline(get("bce", "binary"), b, 1) == pytest.approx(-p * np.log(p) - (1 - p) * np.log(1 - p), rel=1e-6)
    k = torch.randint(0, 4, (300,), generator=g)  # classes 0-3 of 5: class 4 never occurs
    freq = torch.bincount(k, minlength=5).double() / len(k)
    entropy = float(-(freq[freq > 0] * freq[freq > 0].log()).sum())
    assert _baseline(get("cross_entropy", "multiclass"), k, 5) == pytest.approx(entropy, rel=1e-6)


def test_baseline_without_a_closed_form_is_lbfgs_minimum() -> None:
    """Huber has no closed-form minimiser: the baseline is L-BFGS's answer, started from the best closed form
    (oracle: the lowest loss over a grid of constants 1e-3 apart, in float64)."""
    from descend.losses import get

    y = torch.cat([torch.zeros(50), torch.full((10,), 20.0)])
    grid = torch.arange(-5.0, 25.0, 1e-3, dtype=torch.float64)[:, None]
    d = (grid - y.double()).abs()
    best = float(torch.where(d < 1, 0.5 * d * d, d - 0.5).mean(1).min())
    assert _baseline(get("huber", "regression"), y, 1) == pytest.approx(best, rel=1e-6)
