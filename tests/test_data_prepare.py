"""prepare() and the Preprocessor against oracles: scikit-learn's scalers and encoder fitted on the training rows,
NumPy statistics, and naive counts written here.

Tolerances: features are float32, so scaled values are compared to the float64 oracle with ``atol=1e-5``
(about 100 float32 ulps at magnitude 1); statistics (mean, std) are compared with ``rtol=1e-6``.
"""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from descend.data import DataWarning, Preprocessor, prepare, read_table

ATOL = 1e-5


def table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(3.0, 2.0, n),
            "b": rng.exponential(5.0, n),
            "c": rng.integers(-10, 10, n).astype(float),
            "y": rng.normal(size=n),
        }
    )


def test_standard_scaling_matches_sklearn_fitted_on_training_rows() -> None:
    df = table()
    data = prepare(df, target="y", validation=0.25, test=0.1, seed=3)
    feats = ["a", "b", "c"]
    oracle = StandardScaler().fit(df.iloc[data.index_train.numpy()][feats])
    for X, idx in (
        (data.X_train, data.index_train),
        (data.X_val, data.index_val),
        (data.X_test, data.index_test),
    ):
        assert X is not None and idx is not None
        assert X.dtype == torch.float32 and X.is_contiguous()
        want = oracle.transform(df.iloc[idx.numpy()][feats])
        np.testing.assert_allclose(X.numpy(), want, atol=ATOL)
    cols = {c.name: c for c in data.preprocessor.columns_}
    np.testing.assert_allclose([cols[f].shift for f in feats], oracle.mean_, rtol=1e-6)
    np.testing.assert_allclose([cols[f].scale for f in feats], oracle.scale_, rtol=1e-6)


def test_scaling_statistics_come_from_training_rows_only() -> None:
    # The split of a regression table depends only on (rows, seed), so rows can be poisoned after seeing it.
    clean = table()
    first = prepare(clean, target="y", validation=0.2, seed=7)
    held_out = np.concatenate([first.index_val.numpy()])
    poisoned = clean.copy()
    poisoned.loc[held_out, ["a", "b", "c"]] = 1e6
    second = prepare(poisoned, target="y", validation=0.2, seed=7)
    assert torch.equal(first.index_train, second.index_train)
    # Training features are identical: the validation rows contributed nothing to mean or std.
    torch.testing.assert_close(second.X_train, first.X_train, rtol=0, atol=0)
    # Had they leaked, the mean of column a would have moved by about 0.2 * 1e6.
    all_rows_mean = poisoned["a"].mean()
    shift_a = second.preprocessor.columns_[0].shift
    assert abs(shift_a - clean["a"].iloc[first.index_train.numpy()].mean()) < 1e-9
    assert abs(all_rows_mean - shift_a) > 1e5
    assert second.X_val.min() > 1e4


def test_mean_and_median_imputation_use_training_rows_only() -> None:
    df = table(100)
    df.loc[[3, 17, 42], "a"] = np.nan
    for how, stat in (("mean", np.mean), ("median", np.median)):
        data = prepare(df, target="y", validation=0.3, impute=how, seed=1)
        train_a = df["a"].iloc[data.index_train.numpy()].dropna().to_numpy()
        fill = data.preprocessor.columns_[0].fill
        assert fill == pytest.approx(float(stat(train_a)), rel=1e-12)
        filled = df["a"].fillna(fill)
        want = (filled - filled.iloc[data.index_train.numpy()].mean()) / filled.iloc[
            data.index_train.numpy()
        ].std(ddof=0)
        got = np.concatenate([data.X_train[:, 0].numpy(), data.X_val[:, 0].numpy()])
        at = np.concatenate([data.index_train.numpy(), data.index_val.numpy()])
        np.testing.assert_allclose(got, want.iloc[at].to_numpy(), atol=ATOL)


def test_impute_drop_removes_rows_and_indices_point_into_the_source() -> None:
    df = table(50)
    df.loc[[2, 9], "b"] = np.nan
    df.loc[30, "y"] = np.nan
    data = prepare(df, target="y", validation=0.2, impute="drop", seed=0)
    seen = np.concatenate([data.index_train.numpy(), data.index_val.numpy()])
    assert sorted(seen.tolist()) == [i for i in range(50) if i not in (2, 9, 30)]
    np.testing.assert_allclose(data.y_val.numpy(), df["y"].iloc[data.index_val.numpy()], rtol=1e-6)


def test_minmax_and_none_match_their_oracles() -> None:
    df = table()
    data = prepare(df, target="y", scale="minmax", seed=0)
    oracle = MinMaxScaler().fit(df.iloc[data.index_train.numpy()][["a", "b", "c"]])
    np.testing.assert_allclose(
        data.X_val.numpy(), oracle.transform(df.iloc[data.index_val.numpy()][["a", "b", "c"]]), atol=ATOL
    )
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    raw = prepare(df, target="y", scale="none", seed=0)
    np.testing.assert_allclose(
        raw.X_train.numpy(), df.iloc[raw.index_train.numpy()][["a", "b", "c"]], rtol=1e-6
    )


def test_stratified_split_keeps_each_class_share_within_one_row() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(["common", "middle", "rare"], [700, 250, 50])
    df = pd.DataFrame({"x": rng.normal(size=1000), "label": rng.permutation(labels)})
    data = prepare(df, target="label", validation=0.2, test=0.1, seed=5)
    assert data.X_test is not None and data.index_test is not None
    parts = [data.index_train.numpy(), data.index_val.numpy(), data.index_test.numpy()]
    # A partition of the rows: each once.
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    assert [len(p) for p in parts] == [700, 200, 100]
    for part, fraction in ((parts[1], 0.2), (parts[2], 0.1)):
        counts = pd.Series(df["label"].to_numpy()[part]).value_counts()
        for name, total in (("common", 700), ("middle", 250), ("rare", 50)):
            assert abs(counts[name] - fraction * total) < 1.0, (name, counts[name])
    # Same seed, same split; another seed, another split.
    again = prepare(df, target="label", validation=0.2, test=0.1, seed=5)
    other = prepare(df, target="label", validation=0.2, test=0.1, seed=6)
    assert torch.equal(again.index_val, data.index_val)
    assert not torch.equal(other.index_val, data.index_val)


def test_unstratified_split_of_imbalanced_data_is_allowed_to_drift() -> None:
    # The same data without stratification: the rare class's share in validation is not held (a check that the
    # stratified test above can fail for a plain random split).
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(["common", "rare"], [900, 100]))
    df = pd.DataFrame({"x": rng.normal(size=1000), "label": labels})
    drift = []
    for seed in range(20):
        data = prepare(df, target="label", validation=0.2, seed=seed, stratify=False)
        drift.append(abs((df["label"].to_numpy()[data.index_val.numpy()] == "rare").sum() - 20))
        strat = prepare(df, target="label", validation=0.2, seed=seed)
        assert (df["label"].to_numpy()[strat.index_val.numpy()] == "rare").sum() == 20
    assert max(drift) >= 2


@pytest.mark.parametrize(
    ("values", "task", "classes"),
    [
        ([0.5, 1.25, 3.0, 2.0] * 10, "regression", []),
        (list(range(40)), "regression", []),  # 40 distinct whole numbers: a count, not labels
        ([0, 1] * 20, "binary", [0, 1]),
        ([0.0, 1.0] * 20, "binary", [0, 1]),  # whole floats are integer labels
        ([True, False] * 20, "binary", [False, True]),
        (["no", "yes"] * 20, "binary", ["no", "yes"]),
        ([3, 1, 2, 5] * 10, "multiclass", [1, 2, 3, 5]),
        (["b", "a", "c"] * 13 + ["a"], "multiclass", ["a", "b", "c"]),
    ],
)
def test_task_is_inferred_from_the_target(values: list[Any], task: str, classes: list[Any]) -> None:
    df = pd.DataFrame({"x": np.arange(len(values), dtype=float), "y": values})
    data = prepare(df, target="y", validation=0.0)
    assert data.task == task and data.classes == classes
    assert data.n_classes == (0 if task == "regression" else len(classes))
    expected_dtype = torch.int64 if task == "multiclass" else torch.float32
    assert data.y_train.dtype == expected_dtype and data.y_train.shape == (len(values),)
    if task != "regression":
        decoded = data.preprocessor.decode(data.y_train)
        assert list(decoded) == list(df["y"].iloc[data.index_train.numpy()])


def test_task_override_and_binary_targets_are_zero_one_floats() -> None:
    df = pd.DataFrame({"x": np.arange(40.0), "y": [1, 2, 3, 4] * 10})
    assert prepare(df, target="y", task="regression").task == "regression"
    data = prepare(df, target="y", task="multiclass")
    assert data.classes == [1, 2, 3, 4]
    assert torch.equal(data.y_train, torch.tensor([1, 2, 3, 4] * 10)[data.index_train] - 1)
    binary = prepare(pd.DataFrame({"x": np.arange(10.0), "d": ["M", "B"] * 5}), target="d", validation=0.0)
    assert binary.y_train.dtype == torch.float32 and set(binary.y_train.tolist()) == {0.0, 1.0}
    assert list(binary.preprocessor.decode(binary.y_train)) == ["M", "B"] * 5


def test_one_hot_matches_sklearn_and_unseen_categories_follow_the_option() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "n": rng.normal(size=60),
            "colour": rng.choice(["red", "green", "blue"], 60),
            "y": rng.normal(size=60),
        }
    )
    data = prepare(df, target="y", validation=0.2, seed=0)
    assert data.feature_names == ["n", "colour=blue", "colour=green", "colour=red"]
    train = df.iloc[data.index_train.numpy()]
    oracle = OneHotEncoder(handle_unknown="ignore").fit(train[["colour"]])
    np.testing.assert_array_equal(data.X_train[:, 1:].numpy(), oracle.transform(train[["colour"]]).toarray())
    new = pd.DataFrame({"n": [0.0, 1.0], "colour": ["purple", "red"]})
    got = data.preprocessor.transform(new, unseen="ignore")
    np.testing.assert_array_equal(got[:, 1:].numpy(), oracle.transform(new[["colour"]]).toarray())
    assert got[0, 1:].sum() == 0


def test_preprocessor_round_trips_through_json() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "n": rng.normal(size=50),
            "k": np.ones(50),
            "colour": rng.choice(["red", "blue"], 50),
            "label": rng.choice(["cat", "dog", "eel"], 50),
        }
    )
    df.loc[4, "n"] = np.nan
    with pytest.warns(DataWarning, match="'k'"):
        data = prepare(df, target="label", impute="median", seed=0)
    saved = json.loads(json.dumps(data.preprocessor.to_dict()))
    _assert_plain(saved)
    loaded = Preprocessor.from_dict(saved)
    new = df.drop(columns=["label"]).iloc[:10]
    torch.testing.assert_close(loaded.transform(new), data.preprocessor.transform(new), rtol=0, atol=0)
    assert list(loaded.decode(torch.tensor([2, 0]))) == ["eel", "cat"]
    assert loaded.feature_names_ == data.feature_names == ["n", "colour=blue", "colour=red"]
    # The dropped constant column may be present or absent; the target column may be present.
    torch.testing.assert_close(loaded.transform(new.drop(columns=["k"])), loaded.transform(df.iloc[:10]))


def _assert_plain(obj: Any) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str)
            _assert_plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_plain(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), type(obj)


def test_transform_matches_columns_by_name_in_any_order() -> None:
    df = table(40)
    data = prepare(df, target="y", validation=0.0)
    shuffled = df[["c", "y", "a", "b"]]
    torch.testing.assert_close(data.preprocessor.transform(shuffled), data.X_train)
    # An unnamed array is matched by position.
    torch.testing.assert_close(data.preprocessor.transform(df[["a", "b", "c"]].to_numpy()), data.X_train)


def test_all_readers_give_the_same_table(tmp_path: Path) -> None:
    df = pd.DataFrame({"x0": [1.5, -2.0, 3.25], "x1": [4.0, 5.5, -6.0], "y": [0.0, 1.0, 1.0]})
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        df.to_csv(f, index=False)
    df.to_parquet(tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", df.to_numpy())
    np.savez(tmp_path / "t.npz", X=df[["x0", "x1"]].to_numpy(), y=df["y"].to_numpy())
    sources: list[Any] = [
        *(tmp_path / f"t.{e}" for e in ("csv", "tsv", "csv.gz", "parquet", "npz")),
        df,
        df.to_numpy(),
        torch.tensor(df.to_numpy()),
    ]
    for source in sources:
        got = read_table(source)
        if list(got.columns) == ["x0", "x1", "x2"]:
            got = got.set_axis(["x0", "x1", "y"], axis=1)
        assert list(got.columns) == ["x0", "x1", "y"], source
        np.testing.assert_allclose(got.to_numpy(dtype=float), df.to_numpy(), rtol=1e-7, err_msg=str(source))
    npy = read_table(tmp_path / "t.npy")
    np.testing.assert_array_equal(npy.to_numpy(), df.to_numpy())


def test_xy_pairs_and_multi_output_regression() -> None:
    rng = np.random.default_rng(2)
    X = torch.tensor(rng.normal(size=(30, 3)))
    Y = rng.normal(size=(30, 2))
    data = prepare((X, Y), validation=0.2)
    assert data.task == "regression" and data.y_train.shape == (24, 2) and data.target_name == ("y0", "y1")
    np.testing.assert_allclose(data.y_val.numpy(), Y[data.index_val.numpy()], rtol=1e-6)
    labels = prepare((X, rng.integers(0, 3, 30)), validation=0.0)
    assert (
        labels.task == "multiclass"
        and labels.feature_names == ["x0", "x1", "x2"]
        and labels.target_name == "y"
    )


def test_no_validation_gives_empty_tensors_of_the_right_width() -> None:
    data = prepare(table(10), target="y", validation=0.0)
    assert data.X_val.shape == (0, 3) and data.y_val.shape == (0,)
    assert data.X_test is None and data.y_test is None


def test_constant_columns_are_dropped_with_a_warning_naming_them() -> None:
    df = table(30).assign(k=5.0, t="same")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = prepare(df, target="y")
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1 and "constant over the training rows: 'k', 't'" in messages[0]
    assert data.feature_names == ["a", "b", "c"]
