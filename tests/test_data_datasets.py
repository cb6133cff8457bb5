"""Built-in datasets (against scikit-learn's own arrays) and the seeded synthetic generators (against their maths)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import sklearn.datasets

from descend.data import (
    DataOptionError,
    list_datasets,
    load_dataset,
    make_blobs,
    make_linear,
    make_logistic,
    make_spirals,
    prepare,
)

SKLEARN = [
    ("iris", "load_iris", "species", "multiclass", (150, 4)),
    ("wine", "load_wine", "cultivar", "multiclass", (178, 13)),
    ("breast_cancer", "load_breast_cancer", "diagnosis", "binary", (569, 30)),
    ("digits", "load_digits", "digit", "multiclass", (1797, 64)),
    ("diabetes", "load_diabetes", "progression", "regression", (442, 10)),
]


@pytest.mark.filterwarnings("ignore::descend.data.errors.DataWarning")  # digits has constant border pixels
@pytest.mark.parametrize(("name", "loader", "target", "task", "shape"), SKLEARN)
def test_sklearn_datasets_match_the_bundled_arrays(
    name: str, loader: str, target: str, task: str, shape: tuple
) -> None:
    ds = load_dataset(name)
    bunch = getattr(sklearn.datasets, loader)()
    assert ds.target == target and ds.task == task
    assert ds.frame.shape == (shape[0], shape[1] + 1)
    np.testing.assert_array_equal(ds.frame[ds.feature_names].to_numpy(), bunch.data)
    if task == "regression":
        np.testing.assert_array_equal(ds.frame[target].to_numpy(), bunch.target)
    else:
        labels = ds.frame[target].to_numpy()
        expected = bunch.target_names[bunch.target] if name != "digits" else bunch.target
        np.testing.assert_array_equal(labels.astype(str), np.asarray(expected).astype(str))
    assert prepare(ds, validation=0.0).task == task


def test_datasets_are_fresh_copies() -> None:
    a = load_dataset("iris")
    a.frame.iloc[0, 0] = -1.0
    assert load_dataset("iris").frame.iloc[0, 0] == 5.1


def test_list_and_unknown_names() -> None:
    assert list_datasets()[:5] == [s[0] for s in SKLEARN]
    with pytest.raises(
        DataOptionError, match=r"dataset must be one of .*; got 'irs' \(did you mean 'iris'\?\)"
    ):
        load_dataset("irs")


@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="mnist1d not installed")
def test_mnist1d_is_generated_locally_without_touching_global_random_state() -> None:
    before = np.random.get_state()[1].copy()
    ds = load_dataset("mnist1d")
    assert np.array_equal(np.random.get_state()[1], before)
    assert ds.frame.shape == (5000, 41) and ds.target == "digit"
    assert sorted(ds.frame["digit"].unique().tolist()) == list(range(10))
    assert "mnist1d" in list_datasets()


def test_synthetic_generators_are_seeded() -> None:
    for make in (make_linear, make_logistic, make_spirals, make_blobs):
        a, b, c = make(seed=1), make(seed=1), make(seed=2)
        assert a.frame.equals(b.frame), make.__name__
        assert not a.frame.equals(c.frame), make.__name__


def test_linear_least_squares_recovers_the_true_weights() -> None:
    ds = make_linear(4000, 4, noise=0.1, seed=0)
    X = np.c_[ds.frame[ds.feature_names].to_numpy(np.float64), np.ones(4000)]
    coef, *_ = np.linalg.lstsq(X, ds.frame["y"].to_numpy(np.float64), rcond=None)
    # Standard error of each weight is noise / sqrt(n) = 0.0016; 0.01 is > 6 standard errors.
    np.testing.assert_allclose(coef[:4], ds.info["weights"], atol=0.01)
    assert coef[4] == pytest.approx(ds.info["bias"], abs=0.01)
    residual = ds.frame["y"].to_numpy() - X @ coef
    assert residual.std() == pytest.approx(0.1, rel=0.05)


def test_logistic_labels_follow_the_model() -> None:
    ds = make_logistic(20000, 2, seed=3)
    X = ds.frame[ds.feature_names].to_numpy(np.float64)
    p = 1 / (1 + np.exp(-(X @ np.array(ds.info["weights"]) + ds.info["bias"])))
    # Mean label equals mean probability within 4 standard errors (sd <= 0.5 / sqrt(n)).
    assert abs(ds.frame["y"].mean() - p.mean()) < 4 * 0.5 / np.sqrt(20000)
    assert set(ds.frame["y"].unique()) == {0, 1}


def test_spirals_and_blobs_have_balanced_classes_in_their_geometry() -> None:
    sp = make_spirals(300, arms=3, noise=0.0, seed=0)
    assert sp.task == "multiclass" and sp.frame["y"].value_counts().tolist() == [100, 100, 100]
    radius = np.hypot(sp.frame["x0"], sp.frame["x1"])
    assert radius.max() <= 1.0
    bl = make_blobs(600, centers=4, n_features=3, spread=0.5, seed=0)
    centers = np.array(bl.info["centers"])
    X = bl.frame[bl.feature_names].to_numpy()
    dist = np.linalg.norm(X - centers[bl.frame["y"].to_numpy()], axis=1)
    # With sd 0.5 in 3-D, the distance to the own centre is chi(3) * 0.5: below 0.5 * 4 almost surely.
    assert dist.max() < 2.0
    assert make_blobs(centers=2).task == "binary"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_linear(0), r"n must be an integer >= 1; got 0"),
        (lambda: make_linear(noise=-1), r"noise must be a number >= 0; got -1"),
        (lambda: make_spirals(arms=1), r"arms must be an integer >= 2; got 1"),
        (lambda: make_blobs(n_features=2.5), r"n_features must be an integer >= 1; got 2\.5"),
    ],
)
def test_generator_arguments_are_checked(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataOptionError, match=match):
        call()
