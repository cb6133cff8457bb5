"""Metrics against scikit-learn's implementations (float64; agreement to 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from descend.errors import ConfigError
from descend.metrics import evaluate, greater_is_better

rng = np.random.default_rng(0)


def test_regression_metrics() -> None:
    y = rng.normal(size=(40, 2))
    f = y + rng.normal(scale=0.5, size=(40, 2))
    got = evaluate(torch.from_numpy(f), torch.from_numpy(y), "regression")
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, f)), rel=1e-10)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, f), rel=1e-10)
    assert got["r2"] == pytest.approx(skm.r2_score(y, f), rel=1e-10)


def test_binary_metrics_from_logits() -> None:
    y = (rng.random(60) > 0.4).astype(np.float64)
    z = rng.normal(size=(60, 1)) * 2
    p = 1 / (1 + np.exp(-z[:, 0]))
    got = evaluate(torch.from_numpy(z), torch.from_numpy(y), "binary")
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p > 0.5), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-10)


def test_multiclass_metrics_from_logits() -> None:
    y = rng.integers(0, 3, 60)
    z = rng.normal(size=(60, 3))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    got = evaluate(torch.from_numpy(z), torch.from_numpy(y), "multiclass")
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, z.argmax(1)), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1, 2]), rel=1e-10)


def test_metric_checks() -> None:
    assert greater_is_better("val_accuracy") and not greater_is_better("val_loss")
    with pytest.raises(ConfigError, match="'r2' does not fit a binary task"):
        evaluate(torch.zeros(2), torch.zeros(2), "binary", ["r2"])
    with pytest.raises(ConfigError, match="unknown metric 'val_f1'"):
        greater_is_better("val_f1")
