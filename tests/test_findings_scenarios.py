"""Findings on provoked failures and on healthy runs: one table, each row a run through ``descend.fit`` with its
default diagnostics, and the rule it must raise (None: a healthy run, which must raise nothing).

A provoked failure must raise its rule and none of the rules that contradict it (:data:`EXCLUDES`, both ways). A
healthy run must raise no finding, be rolled back by no divergence guard and not stop as diverged. The data are
real and small: descend's bundled datasets, scikit-learn's generators and seeded arrays. ``benchmarks/
findings_scenarios.py`` runs the same table and prints it, with the outcomes, for docs/benchmarks.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, make_circles, make_classification, make_moons
from torch import nn

from descend.data.datasets import load_dataset
from descend.inspect.findings import EXCLUDES
from descend.inspect.monitor import HealthMonitor
from descend.train import DivergenceGuard, fit
from tests.test_findings import mlp


def sin3x(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    x = g.uniform(-2, 2, (n, 1))
    return x, np.sin(3 * x[:, 0]) + 0.1 * g.standard_normal(n)


def xor(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(float)


def noisy_regression(n: int = 60, d: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Few rows, many features, one of which carries the signal: room to memorise."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, d))
    return x, x[:, 0] + 0.5 * g.standard_normal(n)


def with_bad_rows(kind: str) -> SimpleNamespace:
    """Prepared data (as ``descend.data.prepare`` returns it, so nothing imputes) with a few rows of NaN or inf."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(512, 4, generator=g)
    if kind == "regression":
        y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(512, generator=g)
        X[[7, 300], 0] = float("nan")
    else:
        y = (X[:, 0] - X[:, 1] > 0).float()
        X[[40, 41, 200], 2] = float("inf")
    return SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task=kind)


def dead_relu_net() -> nn.Module:
    model = mlp(30, 32, 2, nn.ReLU)
    with torch.no_grad():
        model[0].bias.fill_(-20.0)  # standardised inputs never lift the first layer above zero
    return model


BC = "breast_cancer"


def bc_head(rows: int = 80) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x[:rows], y[:rows]


@dataclass(frozen=True)
class Scenario:
    """A run (``model``, ``data`` and fit's ``options``, each built when the run starts) and the rule it must
    raise, None for a healthy run. ``health_every``: the HealthMonitor's cadence (fit's default 100 when None)."""

    name: str
    model: Callable[[], Any]
    data: Callable[[], Any]
    expected: str | None
    options: dict[str, Any] = field(default_factory=dict)
    health_every: int | None = None
    slow: bool = False


def S(name: str, model: Any, data: Any, expected: str | None, health_every: int | None = None, slow: bool = False,
      **options: Any) -> Scenario:
    build = model if callable(model) and not isinstance(model, str) else (lambda: model)
    load = data if callable(data) else (lambda: load_dataset(data))
    return Scenario(name, build, load, expected, options, health_every, slow)


SCENARIOS: list[Scenario] = [
    # -- over-fitting: a wide MLP on 40 training rows, full batch; with early stopping off, and on (its default)
    S("overfit: wide mlp, 40 rows, no early stopping", lambda: mlp(30, 256, 2, nn.ReLU), bc_head, "over_fitting",
      epochs=150, lr=1e-3, validation=0.5, early_stopping=False, batch_size="full", loss="bce"),
    S("overfit: wide mlp, 40 rows, default early stopping", lambda: mlp(30, 256, 2, nn.ReLU), bc_head,
      "over_fitting", epochs=150, lr=1e-3, validation=0.5, batch_size="full", loss="bce"),
    S("overfit: regression, 30 rows x 20 features, default early stopping", "mlp", noisy_regression,
      "over_fitting", epochs=200, lr=0.01, validation=0.5, batch_size=8),
    # -- under-fitting: models too simple for the data
    S("underfit: linear on sin(3x), sgd", "linear", sin3x, "under_fitting", optimizer="sgd", lr=0.05, epochs=40),
    S("underfit: logistic on circles", "logistic", lambda: make_circles(400, noise=0.05, factor=0.5, random_state=0),
      "under_fitting", epochs=60, lr=0.05),
    S("underfit: logistic on xor, momentum, batch 8", "logistic", xor, "under_fitting", optimizer="momentum",
      lr=0.01, batch_size=8, epochs=30),
    # -- learning rate too high
    S("lr high: sgd lr 50, no guard (nan)", "mlp", BC, "lr_too_high", optimizer="sgd", lr=50.0, epochs=5,
      guard=False),
    S("lr high: adam lr 1 on wine", "mlp", "wine", "lr_too_high", lr=1.0, epochs=30),
    # -- divergence with early stopping on (and the guard)
    S("diverge: sgd lr 50, guard and early stopping", "mlp", BC, "lr_too_high", optimizer="sgd", lr=50.0,
      epochs=30),
    S("diverge: regression sgd lr 3, guard and early stopping", "mlp", "diabetes", "lr_too_high",
      optimizer="sgd", lr=3.0, epochs=30),
    # -- learning rate too low
    S("lr low: sgd lr 1e-7", "mlp", BC, "lr_too_low", optimizer="sgd", lr=1e-7, epochs=3),
    S("lr low: softmax on iris at the defaults", "softmax", "iris", "lr_too_low"),
    S("lr low: linear regression, full-batch gd lr 1e-3", "linear", "diabetes", "lr_too_low", optimizer="sgd",
      lr=1e-3, batch_size="full", epochs=100),
    # -- vanishing and exploding gradients
    S("vanishing: 10 sigmoid layers", lambda: mlp(30, 32, 10, nn.Sigmoid), BC, "vanishing_gradients",
      health_every=10, optimizer="sgd", lr=0.01, epochs=3, loss="bce"),
    S("vanishing: 12 tanh layers at 0.3x init", lambda: mlp(10, 32, 12, nn.Tanh, scale=0.3), "diabetes",
      "vanishing_gradients", health_every=10, optimizer="sgd", lr=0.01, epochs=3),
    S("exploding: 12 relu layers at 6x init", lambda: mlp(30, 64, 12, nn.ReLU, scale=6.0), BC,
      "exploding_gradients", health_every=10, optimizer="sgd", lr=1e-12, epochs=1, loss="bce"),
    S("exploding: 10 relu layers at 5x init", lambda: mlp(10, 64, 10, nn.ReLU, scale=5.0), "diabetes",
      "exploding_gradients", health_every=10, optimizer="sgd", lr=1e-12, epochs=1),
    # -- plateau: tiny weights, a saddle at the origin
    S("plateau: tanh at 0.001x init, escaped", lambda: mlp(30, 16, 3, nn.Tanh, scale=0.001), BC, "plateau",
      optimizer="sgd", lr=1.0, loss="bce", early_stopping=False, batch_size="full", tol=None, epochs=400),
    S("plateau: tanh at 0.001x init, early stopping stops on it", lambda: mlp(30, 16, 3, nn.Tanh, scale=0.001), BC,
      "plateau", optimizer="sgd", lr=1.0, loss="bce", batch_size="full", tol=None, epochs=400),
    # -- bad batches: rows of NaN or inf that the guard skips
    S("bad batches: NaN rows, regression", "linear", lambda: with_bad_rows("regression"), "bad_batches",
      optimizer="sgd", lr=0.05, epochs=10, tol=None),
    S("bad batches: inf rows, binary mlp", "mlp", lambda: with_bad_rows("binary"), "bad_batches", epochs=10,
      tol=None),
    S("dead relus: biases at -20", dead_relu_net, BC, "dead_relus", epochs=3, loss="bce"),
    # -- healthy runs: every kind of task, size, batch and optimizer family; nothing to find
    S("healthy: diabetes mlp adam (scaled target)", "mlp", "diabetes", None, epochs=100, lr=0.01),
    S("healthy: diabetes linear sgd mini-batch", "linear", "diabetes", None, optimizer="sgd", lr=0.01, epochs=60),
    S("healthy: diabetes linear full-batch gd", "linear", "diabetes", None, optimizer="sgd", lr=0.1,
      batch_size="full", epochs=600),
    S("healthy: breast_cancer logistic adam", "logistic", BC, None, epochs=60, lr=0.01),
    S("healthy: breast_cancer mlp nesterov", "mlp", BC, None, optimizer="nesterov", lr=0.01, epochs=40),
    S("healthy: breast_cancer logistic lbfgs", "logistic", BC, None, optimizer="lbfgs", batch_size="full", l2=1e-3),
    S("healthy: breast_cancer logistic newton", "logistic", BC, None, optimizer="newton", batch_size="full",
      l2=1e-3),
    S("healthy: iris mlp adam", "mlp", "iris", None, epochs=250, lr=0.01),
    S("healthy: iris mlp batch 1 (stochastic)", "mlp", "iris", None, batch_size=1, epochs=9),
    S("healthy: iris softmax lr 0.05", "softmax", "iris", None, epochs=100, lr=0.05),
    S("healthy: wine softmax momentum", "softmax", "wine", None, optimizer="momentum", lr=0.01, epochs=40),
    S("healthy: wine mlp adagrad", "mlp", "wine", None, optimizer="adagrad", lr=0.05, epochs=60),
    S("healthy: digits mlp rmsprop", "mlp", "digits", None, optimizer="rmsprop", lr=1e-3, epochs=23),
    S("healthy: digits softmax adamw", "softmax", "digits", None, optimizer="adamw", lr=0.01, epochs=30),
    S("healthy: moons mlp sgd (hard: noise 0.3)", "mlp", lambda: make_moons(600, noise=0.3, random_state=0), None,
      optimizer="sgd", lr=0.1, epochs=60),
    S("healthy: 3-class hard, 10% flipped labels, mlp adam", "mlp",
      lambda: make_classification(800, 10, n_informative=5, n_classes=3, flip_y=0.1, random_state=0), None,
      epochs=60),
    S("healthy: sin(3x) mlp adam (regression, easy)", "mlp", sin3x, None, epochs=150, lr=0.01),
]


@dataclass
class Outcome:
    found: list[str]
    rollbacks: int
    stop: str
    messages: list[str]


def run_scenario(s: Scenario) -> Outcome:
    """Run ``s`` through fit (seed 0, default diagnostics, a default divergence guard whose events are read)."""
    options = dict(s.options)
    callbacks = [HealthMonitor(every=s.health_every)] if s.health_every else []
    guard = options.pop("guard", None)
    guard = DivergenceGuard() if guard is None else guard
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(s.model(), s.data(), progress=False, seed=0, callbacks=callbacks, guard=guard, **options)
    rollbacks = sum(e["event"] == "guard_rollback" for e in guard.events) if isinstance(guard, DivergenceGuard) else 0
    return Outcome([f.rule for f in result.findings], rollbacks, result.stop_reason,
                   [str(f) for f in result.findings])


def contradicting(rule: str) -> set[str]:
    """The rules that must not come with ``rule``: those it overrides and those that override it."""
    return set(EXCLUDES[rule]) | {other for other, over in EXCLUDES.items() if rule in over}


def passed(s: Scenario, o: Outcome) -> bool:
    if s.expected is None:
        return not o.found and o.rollbacks == 0 and o.stop != "diverged"
    return s.expected in o.found and not contradicting(s.expected) & set(o.found)


@pytest.mark.parametrize(
    "scenario", [pytest.param(s, id=s.name, marks=[pytest.mark.slow] if s.slow else []) for s in SCENARIOS]
)
def test_scenario(scenario: Scenario) -> None:
    outcome = run_scenario(scenario)
    assert passed(scenario, outcome), (scenario.expected, outcome)


def test_the_table_covers_each_failure_twice_and_twelve_healthy_runs() -> None:
    expected = [s.expected for s in SCENARIOS]
    for rule in ("over_fitting", "under_fitting", "lr_too_high", "lr_too_low", "vanishing_gradients",
                 "exploding_gradients", "plateau", "bad_batches"):
        assert expected.count(rule) >= 2, rule
    assert sum(e is not None for e in expected) >= 20 and expected.count(None) >= 12
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
