"""descend.sklearn: scikit-learn's own estimator checks, the parameters against the options table, searches,
pipelines, clone, pickle, partial_fit and the safe model format."""

from __future__ import annotations

import inspect
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, load_iris, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.estimator_checks import parametrize_with_checks

import descend
from descend.errors import ConfigError
from descend.sklearn import ESTIMATOR_DEFAULTS, LEFT_OUT, RENAMED, DescendClassifier, DescendRegressor
from descend.train.fit import ConvergenceWarning
from descend.train.options import OPTIONS

# Small and quiet, so the checks run in seconds: one hidden layer of 16, 30 epochs at a rate that learns in
# them, no diagnostics.
FAST = {"model": "mlp:16", "epochs": 30, "lr": 0.01, "diagnostics": False}


@parametrize_with_checks([DescendClassifier(**FAST), DescendRegressor(**FAST)])
def test_sklearn_check(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the few epochs
        check(estimator)


@pytest.mark.parametrize("cls", [DescendClassifier, DescendRegressor])
def test_parameters_are_the_table(cls):
    """Every option of fit is a parameter with the table's default (or the estimators' own, each with its reason),
    or left out with a reason."""
    params = {n: p.default for n, p in inspect.signature(cls).parameters.items()}
    for option in OPTIONS.values():
        name = RENAMED.get(option.name, option.name)
        left_out = option.flag is None or (option.name in LEFT_OUT and option.name not in RENAMED)
        if left_out or (option.name == "scale_target" and cls is DescendClassifier):
            assert name not in params
        else:
            assert params.pop(name) == ESTIMATOR_DEFAULTS.get(option.name, option.default), name
    assert params == {"refit": True, "verbose": False, "warm_start": False}


def test_bad_parameter_is_refused_at_fit_with_the_template():
    X, y = load_iris(return_X_y=True)
    clf = DescendClassifier(batch_size=0)  # stored as given
    assert clf.batch_size == 0
    with pytest.raises(ConfigError, match=r"batch_size: invalid batch_size=0; expected full, an int >= 1 or None"):
        clf.fit(X, y)
    with pytest.raises(ConfigError, match="validation"):
        DescendClassifier(validation=1.5).fit(X, y)
    with pytest.raises(TypeError):
        DescendClassifier(learning_rate=0.1)


def test_clone_of_a_fitted_estimator_is_unfitted():
    X, y = load_iris(return_X_y=True)
    fitted = DescendClassifier(**{**FAST, "lr": 0.02}).fit(X, y)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict(X)


def test_learned_attributes_and_probabilities():
    X, y = load_iris(return_X_y=True)
    names = ["Iris-" + str(c) for c in np.array(["setosa", "versicolor", "virginica"])[y]]
    clf = DescendClassifier(**FAST).fit(pd.DataFrame(X, columns=list("abcd")), names)
    assert clf.classes_.tolist() == ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]
    assert clf.feature_names_in_.tolist() == list("abcd") and clf.n_features_in_ == 4
    assert clf.n_iter_ == clf.best_epoch_ == len(clf.loss_curve_) == len(clf.history_) <= len(clf.validation_scores_)
    assert len(clf.validation_scores_) <= 30 and clf.best_loss_ > 0
    frame = pd.DataFrame(X, columns=list("abcd"))
    p = clf.predict_proba(frame)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (clf.classes_[p.argmax(1)] == clf.predict(frame)).all()
    assert not hasattr(DescendClassifier(loss="hinge"), "predict_proba")


@pytest.mark.parametrize("cls", [DescendClassifier, DescendRegressor])
def test_refit_is_a_fit_on_all_rows_for_the_chosen_epochs(cls):
    """The oracle: a fit with every row, early stopping off and the best epoch's count, with the same seed, has the
    same weights; refit=False keeps the early-stopped model, trained on the held-out split."""
    X, y = load_digits(return_X_y=True)
    if cls is DescendRegressor:
        y = y.astype(float)
    options = {**FAST, "epochs": 60, "random_state": 3}
    chosen = cls(**options, refit=False).fit(X, y)
    assert chosen.best_epoch_ < chosen.n_iter_ == len(chosen.validation_scores_) <= 60
    assert chosen.stop_reason_ == "early_stopping"
    refit = cls(**options).fit(X, y)
    assert refit.best_epoch_ == refit.n_iter_ == chosen.best_epoch_ == len(refit.loss_curve_)
    assert refit.validation_scores_ == chosen.validation_scores_ and refit.best_loss_ == chosen.best_loss_
    assert refit.stop_reason_ == "early_stopping" and refit.converged_
    oracle = cls(**{**options, "epochs": chosen.best_epoch_}, validation=0.0, early_stopping=False, tol=None,
                 refit=False).fit(X, y)  # fmt: skip
    for a, b in zip(refit.model_.parameters(), oracle.model_.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(refit.predict(X), oracle.predict(X))


def test_refit_is_not_warned_about_its_planned_stop():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        DescendClassifier(**{**FAST, "epochs": 200}, random_state=0).fit(X, y)


def test_multi_output_regression():
    X, Y = make_regression(n_samples=300, n_features=5, n_targets=3, noise=1.0, random_state=0)
    reg = DescendRegressor(model="mlp:32", epochs=200, diagnostics=False).fit(X, Y)
    assert reg.predict(X).shape == (300, 3) and reg.n_outputs_ == 3
    assert reg.score(X, Y) > 0.95


def test_warm_start_continues():
    X, y = load_iris(return_X_y=True)
    clf = DescendClassifier(**{**FAST, "epochs": 5}, warm_start=True, early_stopping=False, tol=None)
    clf.fit(X, y)
    first = [p.detach().clone() for p in clf.model_.parameters()]
    model = clf.model_
    clf.fit(X, y)
    assert clf.model_ is model and clf.n_iter_ == 10 and len(clf.loss_curve_) == 10
    assert any(not np.allclose(a, b.detach()) for a, b in zip(first, clf.model_.parameters()))


def test_partial_fit_matches_fit_with_the_same_passes():
    """Five chunks per pass, twenty passes, against one fit of twenty epochs on all rows (no validation rows
    either way): the chunks reach the whole fit's accuracy on held-out rows, to within one point."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    options = {"model": "mlp:32", "diagnostics": False, "validation": 0.0, "tol": None, "random_state": 0}
    whole = DescendClassifier(**options, epochs=20).fit(X_train, y_train)
    parts = DescendClassifier(**options)
    for _ in range(20):
        for chunk in np.array_split(np.arange(len(X_train)), 5):
            parts.partial_fit(X_train[chunk], y_train[chunk], classes=np.arange(10))
    assert parts.n_iter_ == 100
    assert parts.score(X_test, y_test) >= whole.score(X_test, y_test) - 0.01
    assert whole.score(X_test, y_test) > 0.95


def test_partial_fit_refuses_what_it_cannot_do():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="classes must be passed"):
        DescendClassifier(**FAST).partial_fit(X, y)
    with pytest.raises(ConfigError, match="schedule"):
        DescendClassifier(**FAST, schedule="cosine").partial_fit(X, y, classes=[0, 1, 2])


def test_pipeline_with_column_transformer_and_cross_val_score():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"size": rng.normal(size=n), "colour": rng.choice(["red", "green", "blue"], n)})
    y = (frame["size"] + 2 * (frame["colour"] == "red") > 1).astype(int)
    encode = ColumnTransformer([("colour", OneHotEncoder(), ["colour"])], remainder="passthrough")
    pipe = make_pipeline(encode, DescendClassifier(model="mlp:16", epochs=60, diagnostics=False))
    scores = cross_val_score(pipe, frame, y, cv=3)
    assert scores.mean() > 0.9


@pytest.mark.slow
def test_grid_search_two_jobs_on_digits():
    X, y = load_digits(return_X_y=True)
    grid = GridSearchCV(DescendClassifier(epochs=15, diagnostics=False),
                        {"lr": [1e-3, 3e-3], "model": ["mlp:16", "mlp:32"]}, cv=3, n_jobs=2)  # fmt: skip
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_.predict(X[:5]).shape == (5,)
    assert grid.best_estimator_.score(X, y) > 0.9


def test_pickle_and_safe_format_round_trip(tmp_path):
    X, y = load_iris(return_X_y=True)
    clf = DescendClassifier(**FAST).fit(X, y * 10)  # labels 0, 10, 20: decoded from the saved classes
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    clf.save(tmp_path / "clf")
    saved = descend.load(tmp_path / "clf")
    np.testing.assert_array_equal(np.asarray(saved.predict(X)), clf.predict(X))
    np.testing.assert_allclose(saved.predict_proba(X).numpy(), clf.predict_proba(X), atol=1e-6)
    Xr, yr = make_regression(n_samples=100, n_features=3, random_state=0)
    reg = DescendRegressor(**FAST).fit(Xr, yr)
    reg.save(tmp_path / "reg")
    np.testing.assert_allclose(descend.load(tmp_path / "reg").predict(Xr).numpy(), reg.predict(Xr), rtol=1e-5,
                               atol=1e-3)  # fmt: skip
