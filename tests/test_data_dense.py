"""The dense path of prepare() (a file of float columns, Arrow straight to tensors) against the general path.

The oracle is the general path on the very same parsed values: ``read_table(path)`` gives the DataFrame that path
works from (same float32/float64 columns), and ``prepare`` of it never takes the dense path. Statistics are merged
batch by batch on one side and computed in two NumPy passes on the other, so shifts and scales agree to ``rtol=1e-12``
and the scaled float32 features to one or two float32 ulps (``atol=1e-6``; features are of order 1).
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from descend.data import DataWarning, MissingValueError, NonFiniteError, prepare, read_table
from descend.data.dense import medians

prepare_module = importlib.import_module("descend.data.prepare")  # the module, not the function it exports
ROWS = 60_000  # about 4 MB of CSV: several 1 MB pyarrow blocks, so batches merge


def write(path: Path, n: int = ROWS, seed: int = 0, **extra: Any) -> Path:
    rng = np.random.default_rng(seed)
    cols = {
        "a": rng.normal(3.0, 2.0, n),
        "b": rng.exponential(5.0, n) * 1e4,
        "c": rng.integers(-10, 10, n).astype(float),  # whole numbers: a CSV parses them as float64
        "d": np.linspace(-1.0, 1.0, n) + 1e3,  # a trend: batch means differ
        "y": rng.normal(size=n),
    }
    cols.update(extra)
    df = pd.DataFrame(cols)
    if path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False, float_format="%.6g")
    return path


def through_dense(source: Any, **kw: Any) -> Any:
    """``prepare(source, **kw)``, checked to have taken the dense path (a spy on its fill)."""
    calls: list[int] = []
    fill = prepare_module.fill_splits

    def spy(*a: Any) -> Any:
        calls.append(1)
        return fill(*a)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare_module, "fill_splits", spy)
        data = prepare(source, **kw)
    assert calls, f"{type(source).__name__} did not take the dense path"
    return data


def both(path: Path, **kw: Any) -> tuple[Any, Any]:
    return through_dense(path, **kw), prepare(read_table(path), **kw)


def same(dense: Any, general: Any, rtol: float = 1e-12) -> None:
    for name in ("X_train", "X_val", "X_test"):
        a, b = getattr(dense, name), getattr(general, name)
        if b is None:
            assert a is None
            continue
        assert a.dtype == torch.float32 and a.is_contiguous() and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for name in ("y_train", "y_val", "y_test", "index_train", "index_val", "index_test"):
        a, b = getattr(dense, name), getattr(general, name)
        assert (a is None and b is None) or torch.equal(a, b), name
    assert dense.task == general.task and dense.classes == general.classes
    assert dense.feature_names == general.feature_names
    for c, d in zip(dense.preprocessor.columns_, general.preprocessor.columns_):
        assert (c.name, c.kind) == (d.name, d.kind)
        np.testing.assert_allclose([c.shift, c.scale], [d.shift, d.scale], rtol=rtol)
        assert (c.fill is None) == (d.fill is None)
        if c.fill is not None:
            # The dense path's median is taken over the float32 features (a Parquet float64 column is rounded to
            # float32 as it fills them), so it agrees with the general path's to float32 precision; the mean,
            # merged from float64 moments, to 1e-12.
            fill_rtol = max(rtol, 1e-12) if general.preprocessor.impute == "mean" else 1e-7
            np.testing.assert_allclose(float(c.fill), float(d.fill), rtol=fill_rtol)
        assert dense.decisions == general.decisions


@pytest.mark.parametrize(
    "kw",
    [
        {"validation": 0.2},
        {"validation": 0.25, "test": 0.1, "seed": 5},
        {"validation": 0.2, "scale": "minmax"},
        {"validation": 0.2, "scale": "none"},
        {"validation": 0.2, "impute": "mean"},
        {"validation": 0.2, "impute": "drop"},
        {"validation": 0.0},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_dense_path_matches_the_general_path(tmp_path: Path, kw: dict[str, Any]) -> None:
    same(*both(write(tmp_path / "t.csv"), target="y", **kw))


def test_dense_path_stratifies_classes_and_reads_parquet(tmp_path: Path) -> None:
    labels = np.random.default_rng(1).choice([0.0, 1.0, 2.0], ROWS, p=[0.7, 0.2, 0.1])
    dense, general = both(write(tmp_path / "t.parquet", label=labels), target="label", validation=0.3)
    assert dense.task == "multiclass"
    same(dense, general)


def test_a_constant_column_is_dropped_with_the_same_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "k.csv", k=np.full(ROWS, 7.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dense, general = both(path, target="y")
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 2 and "'k'" in messages[0]
    assert messages[0].replace(str(path), "") == messages[1].replace("DataFrame", "")
    assert "k" not in dense.feature_names
    same(dense, general)


def test_nan_or_infinite_values_are_reported_by_the_general_checks(tmp_path: Path) -> None:
    # "nan" and "inf" parse as floats, so the dense path sees them only in its pass; it defers to the checks.
    path = write(tmp_path / "t.csv")
    rows = path.read_text().splitlines()
    rows[40_001] = "nan," + rows[40_001].split(",", 1)[1]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(MissingValueError, match=r"t\.csv: column 'a', line 40002: value is missing"):
        prepare(path, target="y", strict=True)
    same(prepare(path, target="y", impute="mean"), prepare(read_table(path), target="y", impute="mean"))
    rows[59_000] = ",".join([*rows[59_000].split(",")[:-1], "-inf"])
    rows[40_001] = rows[40_002]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(NonFiniteError, match=r"t\.csv: target 'y', line 59001: value -inf is infinite"):
        prepare(path, target="y")


def arrays_both(X: Any, y: Any, **kw: Any) -> tuple[Any, Any]:
    """prepare((X, y)) through the dense path, and the same pair through the general path (a DataFrame of X's
    columns, as the pair reads without it)."""
    fast = through_dense((X, y), **kw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare_module, "_dense_arrays", lambda source, pre: None)
        general = prepare((X, y), **kw)
    return fast, general


def table(n: int = ROWS, seed: int = 0, dtype: Any = np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cols = [rng.normal(3.0, 2.0, n), rng.exponential(5.0, n) * 1e4, rng.integers(-10, 10, n).astype(float),
            np.linspace(-1.0, 1.0, n) + 1e3]  # fmt: skip
    return np.stack(cols, axis=1).astype(dtype)


@pytest.mark.parametrize(
    "dtype,kw",
    [
        (np.float64, {"validation": 0.2}),
        (np.float32, {"validation": 0.25, "test": 0.1, "seed": 5}),
        (np.float32, {"validation": 0.2, "scale": "minmax"}),
        (np.float64, {"validation": 0.0, "impute": "mean"}),
    ],
    ids=lambda v: getattr(v, "__name__", None) or ",".join(f"{k}={w}" for k, w in v.items()),
)
def test_float_arrays_take_the_dense_path_with_the_general_paths_result(dtype: Any, kw: dict[str, Any]) -> None:
    X = table(dtype=dtype)
    y = X[:, 0] * 2 - X[:, 3] + np.random.default_rng(3).normal(size=len(X))
    # Full float64 values (a CSV's have 6 digits): the column at 1e3 +- 0.58 loses 1e-12 of its spread to
    # cancellation, differently in block-merged moments and in two NumPy passes.
    same(*arrays_both(X, y, **kw), rtol=1e-10)


def test_arrays_dense_path_for_classes_tensors_several_targets_and_a_constant_column() -> None:
    X = table(n=5000, dtype=np.float32)
    labels = np.random.default_rng(1).choice([0, 1, 2], len(X), p=[0.7, 0.2, 0.1])
    dense, general = arrays_both(torch.from_numpy(X), torch.from_numpy(labels), validation=0.3)
    assert dense.task == "multiclass"
    same(dense, general)
    same(*arrays_both(X, np.stack([X[:, 0], X[:, 1]], axis=1), validation=0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dense, general = arrays_both(np.concatenate([X, np.full((len(X), 1), 7.0, np.float32)], axis=1),
                                     labels, validation=0.2)  # fmt: skip
    assert "x4" not in dense.feature_names
    same(dense, general)


def test_arrays_with_a_gap_take_the_general_path_and_its_checks() -> None:
    X = table(n=2000)
    X[1500, 2] = np.nan
    y = X[:, 0].copy()
    with pytest.raises(MissingValueError, match=r"column 'x2', row 1501: value is missing"):
        prepare((X, y), strict=True)
    data = prepare((X, y))
    assert "x2.missing" in data.feature_names  # the general path's fill and indicator
    y[7] = np.nan  # a missing target: the general path leaves the row out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert len(prepare((table(n=2000), y), validation=0.0).X_train) == 1999


@pytest.mark.parametrize("rows", [1, 2, 7, 10, 1001, 4096, 40_001])
def test_medians_equal_numpy_median_of_the_float64_values(rows):
    # The general path fills a gap with np.median of the column's float64 values; the dense path partitions in
    # float32 and must give the same figure, bit for bit (ties, an even count, large magnitudes).
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 4)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1] * 2)
    x[:, 2] *= np.float32(3e30)
    assert medians(x) == [float(np.median(x[:, j].astype(np.float64))) for j in range(4)]


@pytest.mark.parametrize("n", [4, 7, 100_003])
def test_nothing_held_out_keeps_every_row_in_order(n: int) -> None:
    """validation=0, test=0: the training rows are every row in order, as sorting the seeded permutation gives
    them, without drawing it; the held-out splits are empty int64 arrays like the drawn ones."""
    from descend.data.split import split_indices

    for seed in (0, 7):
        tr, va, te = split_indices(n, validation=0.0, test=0.0, seed=seed)
        np.testing.assert_array_equal(tr, np.sort(np.random.default_rng(seed).permutation(n)))
        assert tr.dtype == va.dtype == te.dtype == np.int64 and len(va) == len(te) == 0
        held = split_indices(n, validation=0.5, test=0.0, seed=seed)[2]
        assert held.dtype == te.dtype and held.shape == te.shape


def test_the_split_drawn_ahead_is_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large table's permutation, drawn on a thread while the target is checked (here from any size), gives
    the same rows as the general path's split; a stratified split draws per class and leaves it unused."""
    prep = importlib.import_module("descend.data.prepare")
    monkeypatch.setattr(prep, "_AHEAD_ROWS", 1)
    drawn: list[int] = []

    def split_indices(n: int, *, permutation: Any = None, **kw: Any) -> Any:
        def taken() -> Any:
            drawn.append(n)
            return permutation()

        return real(n, permutation=None if permutation is None else taken, **kw)

    real = prep.split_indices
    monkeypatch.setattr(prep, "split_indices", split_indices)
    same(*both(write(tmp_path / "t.csv"), target="y", validation=0.25, test=0.1, seed=3))
    assert drawn == [ROWS]
    labels = np.random.default_rng(1).choice([0.0, 1.0, 2.0], ROWS, p=[0.7, 0.2, 0.1])
    same(*both(write(tmp_path / "c.csv", label=labels), target="label", validation=0.3))
    assert drawn == [ROWS]
