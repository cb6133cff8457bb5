"""Real results on scikit-learn's datasets through descend.data.prepare (validation 0.2, seed 0).

Thresholds are the issue's: digits (softmax, MLP) and breast_cancer (logistic) >= 0.95 validation accuracy with
Adam and fit's defaults; diabetes linear regression R² >= 0.45 on validation, and within 0.01 of the least-squares
fit (scikit-learn's LinearRegression) on the same split.
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


def test_diabetes_linear_regression_r2() -> None:
    # Plain full-batch gradient descent: its rate does not depend on the target's scale (diabetes' is ~150),
    # unlike Adam's steps of about lr each.
    data = prepared("diabetes")
    result = descend.fit("linear", data, optimizer="sgd", lr=0.1, batch_size="full", epochs=2000, tol=1e-10)
    sk = SkLinear().fit(data.X_train.numpy(), data.y_train.numpy()).score(data.X_val.numpy(), data.y_val.numpy())
    assert result.final["val_r2"] >= 0.45
    assert result.final["val_r2"] == pytest.approx(sk, abs=0.01)
