"""Healthy runs never meet the divergence guard: a table of batch sizes (1 row to the full batch), optimizers
(SGD, momentum, Adam, AdaGrad, RMSProp, L-BFGS), tasks (regression with its target scaled, binary, multiclass),
sizes, and separable data trained to a loss near zero, each run with no guard event at all."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

import descend
from descend.data import load_dataset
from descend.train import DivergenceGuard

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def separable(rows: int) -> SimpleNamespace:
    """Two Gaussian classes split by a plane with a wide margin: the loss goes to near zero."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(rows, 5, generator=g)
    y = (X[:, 0] > 0).float()
    X[:, 0] += torch.where(y > 0, 2.0, -2.0)
    cut = rows * 4 // 5
    return SimpleNamespace(X_train=X[:cut], y_train=y[:cut], X_val=X[cut:], y_val=y[cut:], task="binary")


def regression(rows: int) -> SimpleNamespace:
    """A target in the hundreds (fit scales it), linear in 8 features plus a sine and noise."""
    g = torch.Generator().manual_seed(2)
    X = torch.randn(rows, 8, generator=g)
    y = 300 + 50 * (X @ torch.linspace(-1, 1, 8)) + 20 * torch.sin(X[:, 0]) + 5 * torch.randn(rows, generator=g)
    cut = rows * 4 // 5
    return SimpleNamespace(X_train=X[:cut], y_train=y[:cut], X_val=X[cut:], y_val=y[cut:], task="regression")


# (name, data, model, options): the optimizers at their usual learning rates, for as many epochs as they need
CASES: list[tuple[str, Any, str, dict[str, Any]]] = [
    ("iris-b1-adam", lambda: load_dataset("iris"), "mlp", {"batch_size": 1, "epochs": 6}),
    ("wine-b8-rmsprop", lambda: load_dataset("wine"), "mlp", {"batch_size": 8, "optimizer": "rmsprop", "epochs": 20}),
    ("digits-b32-adam", lambda: load_dataset("digits"), "mlp", {"epochs": 20}),
    ("digits-b256-momentum", lambda: load_dataset("digits"), "mlp",
     {"batch_size": 256, "optimizer": "momentum", "lr": 0.05, "epochs": 40}),
    ("cancer-full-sgd", lambda: load_dataset("breast_cancer"), "logistic",
     {"batch_size": "full", "optimizer": "sgd", "lr": 0.5, "epochs": 200}),
    ("cancer-b32-adagrad", lambda: load_dataset("breast_cancer"), "mlp",
     {"optimizer": "adagrad", "lr": 0.05, "epochs": 20}),
    ("regression-b32-sgd", lambda: regression(2000), "mlp", {"optimizer": "sgd", "lr": 0.01, "epochs": 15}),
    ("regression-full-momentum", lambda: regression(500), "linear",
     {"batch_size": "full", "optimizer": "momentum", "lr": 0.1, "epochs": 200}),
    ("regression-full-lbfgs", lambda: regression(500), "mlp",
     {"batch_size": "full", "optimizer": torch.optim.LBFGS, "lr": 1.0, "epochs": 30}),
    ("separable-b1-sgd", lambda: separable(400), "logistic",
     {"batch_size": 1, "optimizer": "sgd", "lr": 0.1, "epochs": 10}),
    ("separable-b32-adam", lambda: separable(20_000), "mlp", {"epochs": 5}),
    ("separable-full-adam", lambda: separable(2000), "mlp", {"batch_size": "full", "lr": 0.01, "epochs": 300}),
]


@pytest.mark.parametrize(("name", "data", "model", "options"), CASES, ids=[c[0] for c in CASES])
def test_healthy_run_has_no_guard_event(name: str, data: Any, model: str, options: dict[str, Any]) -> None:
    guard = DivergenceGuard()
    result = descend.fit(model, data(), guard=guard, early_stopping=False, tol=None, progress=False,
                         diagnostics=False, **options)  # fmt: skip
    assert guard.events == [] and not guard.diverged and guard.skips == 0, guard.events
    assert result.stop_reason == "max_epochs"
    assert result.history[-1]["loss"] < result.history[0]["loss"]
