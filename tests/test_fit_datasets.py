"""Real results on scikit-learn's datasets through descend.data.prepare (validation 0.2, seed 0).

Thresholds are the issue's: digits (softmax, MLP) and breast_cancer (logistic) >= 0.95 validation accuracy with
Adam and fit's defaults; diabetes linear regression R² >= 0.45 on validation with fit's defaults too (the target,
about 150 ± 77, is standardised for training), and within 0.01 of the least-squares fit (scikit-learn's
LinearRegression) on the same split with full-batch gradient descent.
"""

from __future__ import annotations

import warnings

import pytest
from sklearn.linear_model import LinearRegression as SkLinear

import descend
from descend.data import DataWarning, load_dataset, prepare

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning"),
]


def prepared(name: str) -> descend.data.PreparedData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # digits: constant pixels dropped
        return prepare(load_dataset(name), validation=0.2, seed=0)


@pytest.mark.parametrize(("model", "name"), [("softmax", "digits"), ("mlp", "digits"), ("logistic", "breast_cancer")])
def test_classification_accuracy_with_defaults(model: str, name: str) -> None:
    result = descend.fit(model, prepared(name))
    assert result.final["val_accuracy"] >= 0.95


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_diabetes_regression_r2_with_defaults(model: str) -> None:
    # Adam at lr 1e-3, batch 32: without the standardised target (scale_target=False) the same call ends at
    # R² below 0 (weights of ~1 after 1,000 steps, where ~40 are needed): checked as the control.
    data = prepared("diabetes")
    assert descend.fit(model, data).final["val_r2"] >= 0.45
    assert descend.fit("linear", data, scale_target=False).final["val_r2"] < 0


def test_diabetes_linear_regression_matches_least_squares() -> None:
    data = prepared("diabetes")
    result = descend.fit("linear", data, optimizer="sgd", lr=0.1, batch_size="full", epochs=2000, tol=1e-10)
    sk = SkLinear().fit(data.X_train.numpy(), data.y_train.numpy()).score(data.X_val.numpy(), data.y_val.numpy())
    assert result.final["val_r2"] >= 0.45
    assert result.final["val_r2"] == pytest.approx(sk, abs=0.01)
