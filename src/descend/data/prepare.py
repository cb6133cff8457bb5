"""prepare(): a table in, clean float32 tensors out.

read → check (target, types, missing, infinite) → split (seeded, stratified) → fit the preprocessor on the training
rows → encode every split. Each step refuses bad data with a :mod:`descend.data.errors` exception naming the
table, the column and the first offending row.

A CSV, TSV or Parquet file whose columns are all floats without missing values skips the DataFrame: the same target
checks, split and :class:`Preprocessor` columns, with the features filled and their training statistics gathered in
one pass over the parsed Arrow batches (:mod:`descend.data.dense`). A NaN or infinite value found in that pass sends
the file through the general path, which reports it.
"""

from __future__ import annotations

import difflib
import functools
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.data.columns import column_kind, numeric_values
from descend.data.datasets import Dataset
from descend.data.decisions import describe_notes
from descend.data.dense import BATCH_VALUES, dense_columns, fill_splits, medians, scale_in_place
from descend.data.encode import Notes, boolean_values, encode_splits
from descend.data.errors import (
    ColumnError,
    DataOptionError,
    DataWarning,
    EmptyTableError,
    LengthMismatchError,
    MissingColumnError,
    MissingValueError,
    shown,
)
from descend.data.fitting import Column, Fitting, constant_column
from descend.data.kinds import _ID_NAME, Plan, blanks_as_gaps
from descend.data.options import check_choice
from descend.data.preprocess import Preprocessor
from descend.data.read import Origin, frame_from_array, read_file, read_with_origin, shown_names, to_frame
from descend.data.split import check_fractions, split_indices
from descend.data.target import TASKS, TargetEncoding, Task, check_target_present, fit_target

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["PreparedData", "prepare"]


@dataclass
class PreparedData:
    """Tensors ready for gradient descent, and the preprocessor that made them.

    ``X_*`` are float32 of shape ``(rows, n_features)``. ``y_*`` are float32 ``(rows,)`` or ``(rows, k)`` for
    regression, float32 0/1 ``(rows,)`` for binary, int64 class indices ``(rows,)`` for multiclass. ``X_val`` has
    0 rows when ``validation=0``; ``X_test`` is None unless ``test > 0``. ``index_*`` are the 0-based positions
    of each split's rows in the source table.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor | None
    y_test: torch.Tensor | None
    task: Task
    classes: list[Any]
    feature_names: list[str]
    target_name: str | tuple[str, ...]
    preprocessor: Preprocessor
    index_train: torch.Tensor = field(repr=False)
    index_val: torch.Tensor = field(repr=False)
    index_test: torch.Tensor | None = field(repr=False)

    @property
    def decisions(self) -> list[str]:
        """What was done to each kind of column, one line each (also saved with the preprocessing)."""
        return self.preprocessor.describe()

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        """Number of classes; 0 for regression."""
        return len(self.classes) if self.task != "regression" else 0

    def __repr__(self) -> str:
        test = f", test={len(self.X_test)}" if self.X_test is not None else ""
        return (
            f"PreparedData(task={self.task!r}, train={len(self.X_train)}, val={len(self.X_val)}{test}, "
            f"n_features={self.n_features}, n_classes={self.n_classes}, target={self.target_name!r})"
        )


def prepare(
    source: Any,
    *,
    target: str | Sequence[str] | None = None,
    task: str = "auto",
    validation: float = 0.2,
    test: float = 0.0,
    scale: str = "standard",
    impute: str | None = "median",
    unseen: str = "infrequent",
    min_frequency: int = 5,
    drop: Sequence[str] | None = None,
    keep: Sequence[str] | None = None,
    dates: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    strict: bool = False,
    seed: int = 0,
    constant: str = "drop",
    stratify: bool = True,
    encoding: str | None = None,
) -> PreparedData:
    """Read, check, split, scale and encode a table into :class:`PreparedData`.

    By default a messy table trains as it is, and each decision is a line of :attr:`PreparedData.decisions`:
    gaps are filled, rare and unseen categories pooled, dates expanded, identifiers and constant columns left out
    (rules: :mod:`descend.data.kinds`, :mod:`descend.data.fitting`, :mod:`descend.data.categories`).

    Args:
        source: anything :func:`read_table` reads (path, DataFrame, array, tensor), a :class:`Dataset`, or a pair
            ``(X, y)`` of arrays/tensors (then ``target`` stays None; y's column is called ``"y"``).
        target: the target column, or a list of columns (multi-output regression). Required for a table. Rows
            whose target is missing are left out (strict: refused).
        task: ``"auto"``, ``"regression"``, ``"binary"`` or ``"multiclass"`` (inference rules:
            :mod:`descend.data.target`).
        validation, test: fractions of the rows held out, each in [0, 1) and together below 1.
        scale: ``"standard"``, ``"minmax"`` or ``"none"``; statistics come from the training rows only.
        impute: gaps in feature columns: ``"median"`` (the training median, plus a 0/1 ``<name>.missing`` column
            for a column with gaps; a gap in a text column is the category ``(missing)``), ``"mean"`` (the same
            with the mean), ``"drop"`` (remove the rows; gaps met later take the median) or ``"error"`` (refuse;
            ``None`` means the same).
        unseen: a category not seen in training, in the held-out rows and in :meth:`Preprocessor.transform` later:
            ``"infrequent"`` (the pool of rare categories; all zeros for a column without one), ``"ignore"`` (all
            zeros) or ``"error"``.
        min_frequency: categories with fewer training rows (an integer >= 1) are pooled into ``(infrequent)``.
        drop: columns to leave out. keep: columns to use that would be left out as identifiers or as constant.
        dates: columns to read as dates (parts: year, month, weekday, yearday, days). categorical: columns to read
            as categories (integer codes, say). Each name must be a feature column of the table.
        strict: refuse each problem instead of handling it: gaps (unless ``impute="drop"``), unseen categories,
            numbers with a stray word, dates not named in ``dates``, identifiers not named in ``drop``/``keep``,
            columns with no values; text is compared exactly (no trimming, no case merging, no pooling).
        seed: seeds the split.
        constant: ``"drop"`` (with a :class:`DataWarning`) or ``"error"`` for columns constant in training.
        stratify: split classification data so each class keeps its share in every split.
        encoding: the text encoding of a CSV/TSV file (``"latin-1"``, ``"cp1252"``, ...); by default UTF-8, and
            a file that is not is refused naming its first bad byte (see :func:`read_table`).

    Example:
        >>> from descend.data import load_dataset
        >>> data = prepare(load_dataset("iris"), validation=0.2, seed=0)
        >>> data.X_train.shape, data.y_train.dtype, data.classes
        (torch.Size([120, 4]), torch.int64, ['setosa', 'versicolor', 'virginica'])
    """
    check_choice("task", task, TASKS)
    check_fractions(validation, test)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataOptionError(f"seed must be an integer; got {seed!r}")
    pre = Preprocessor(
        scale=scale, impute=impute, unseen=unseen, constant=constant, min_frequency=min_frequency, strict=strict,
        drop=drop, keep=keep, dates=dates, categorical=categorical,
    )  # fmt: skip
    import pandas as pd

    dense = _dense_arrays(source, pre)
    if dense is not None:  # float arrays (X, y) go straight to tensors, as a clean numeric file does
        split = functools.partial(_split, validation=validation, test=test, seed=int(seed), stratify=stratify,
                                  origin=dense[2])  # fmt: skip
        data = _prepare_dense(*dense, task, pre, split)
        if data is not None:
            return data
    table, origin, names = _source(source, target, encoding)
    split = functools.partial(
        _split, validation=validation, test=test, seed=int(seed), stratify=stratify, origin=origin
    )
    if isinstance(table, pd.DataFrame):
        frame = table
    else:  # parsed by pyarrow from a file
        if _is_dense(table, names, pre):  # a clean numeric table goes straight to tensors
            features = [c for c in table.column_names if c not in names]
            if validation + test > 0 and table.num_rows >= _AHEAD_ROWS:  # drawn while the target is checked
                split = functools.partial(split, ahead=_draw_ahead(table.num_rows, int(seed)))
            targets = pd.DataFrame({n: table.column(n).to_numpy() for n in names}, copy=False)
            batches = table.select(features).to_batches(max_chunksize=max(1, BATCH_VALUES // len(features)))
            del table  # so the dense pass can release the table as it fills the tensors
            data = _prepare_dense(batches, features, origin, targets, names, task, pre, split)
            if data is not None:
                return data
            table, origin = read_file(Path(source), encoding=encoding)  # a NaN or infinite: read again to check
        frame = to_frame(table)
    features = [c for c in frame.columns if c not in names]
    if not features:
        raise ColumnError(f"{origin}: no feature columns besides the target {shown_names(names)}")
    frame = blanks_as_gaps(frame, features)
    plan = pre.plan(frame, features, origin)

    kept, unlabelled = _rows_to_keep(frame, names, plan, pre, task, origin)
    rows = np.flatnonzero(kept) if not kept.all() else np.arange(len(frame))
    if len(rows) == 0:
        raise EmptyTableError(f"{origin}: impute='drop' removed every row (each has a missing value)")
    targets = frame[names] if len(rows) == len(frame) else frame[names].iloc[rows]
    coding = fit_target(targets, names, task, origin)
    y = coding.encode(targets, origin)

    parts = split(y, coding)
    pre.fit_rows(frame, plan, rows[parts[0]], origin)
    pre.target_ = coding
    if unlabelled:
        line = f"target: {unlabelled} row(s) without a target value left out"
        pre.decisions_.append(line)
        warnings.warn(f"{origin}: {line} (strict=True refuses them)", DataWarning, stacklevel=2)
    # A table read from a file here is ours: its columns are released as the tensors are filled.
    owned = isinstance(source, (str, os.PathLike))
    notes: list[Notes] = [{} for _ in parts]
    X = encode_splits(frame, pre.columns_, origin, [rows[p] for p in parts], pre.unseen_rule, strict=pre.strict,
                      release=owned, notes=notes)  # fmt: skip
    for what, note in zip(("validation", "test"), notes[1:]):
        said = describe_notes(note, pre.columns_)
        if said:
            pre.decisions_.append(f"{what} rows: {'; '.join(said)}")
    return _prepared(X, y, rows, parts, pre, names)


def _split(
    y: torch.Tensor,
    encoding: TargetEncoding,
    *,
    validation: float,
    test: float,
    seed: int,
    stratify: bool,
    origin: Origin,
    ahead: tuple[int, Future[np.ndarray]] | None = None,
) -> list[np.ndarray]:
    """Positions (among the rows kept) of the training, validation and (if ``test > 0``) test rows."""
    labels = y.numpy() if encoding.task != "regression" and stratify else None
    drawn = ahead[1].result if ahead is not None and ahead[0] == len(y) and labels is None else None
    tr, va, te = split_indices(
        len(y), validation=validation, test=test, seed=seed, labels=labels, origin=str(origin), permutation=drawn
    )
    return [tr, va, te] if test > 0 else [tr, va]


#: Rows from which the dense path draws the split's permutation on a thread of its own.
_AHEAD_ROWS = 1 << 16


def _draw_ahead(n: int, seed: int) -> tuple[int, Future[np.ndarray]]:
    """``np.random.default_rng(seed).permutation(n)`` drawn on a thread (NumPy's shuffle releases the GIL), so
    that a large table's seeded split (30-45 ms for a million rows, one core) overlaps reading and checking the
    target; a stratified split, which draws per class, does not use it."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(lambda: np.random.default_rng(seed).permutation(n))
    pool.shutdown(wait=False)  # the thread ends with its one task
    return n, future


def _prepared(
    X: list[torch.Tensor],
    y: torch.Tensor,
    rows: np.ndarray | None,
    parts: list[np.ndarray],
    pre: Preprocessor,
    names: list[str],
) -> PreparedData:
    """``rows``: the table's row of each kept row (None: every row kept, in order)."""
    assert pre.target_ is not None
    test = len(parts) > 2
    ys = [y[torch.from_numpy(p)] for p in parts]
    index = [torch.from_numpy(p if rows is None else rows[p]) for p in parts]
    return PreparedData(
        X[0], ys[0], X[1], ys[1], X[2] if test else None, ys[2] if test else None,
        task=pre.target_.task,
        classes=list(pre.target_.classes),
        feature_names=pre.feature_names_,
        target_name=names[0] if len(names) == 1 else tuple(names),
        preprocessor=pre,
        index_train=index[0], index_val=index[1], index_test=index[2] if test else None,
    )  # fmt: skip


def _is_dense(table: pa.Table, names: list[str], pre: Preprocessor) -> bool:
    """Whether :func:`_prepare_dense` can take the table: float columns, no missing values, some features, no
    column named in the options and none named like an identifier (those take the general path's rules)."""
    named = pre.drop or pre.keep or pre.dates or pre.categorical
    features = [c for c in table.column_names if c not in names]
    return (
        bool(features) and not named and not any(_ID_NAME.search(c.strip()) for c in features)
        and dense_columns(table, table.column_names)
    )  # fmt: skip


def _dense_arrays(
    source: Any, pre: Preprocessor
) -> tuple[list[np.ndarray], list[str], Origin, pd.DataFrame, list[str]] | None:
    """For a pair ``(X, y)`` whose X is a 2-D float array or tensor and whose y has no gap, with no option naming
    a column: X's blocks of rows (views), the feature names, the origin, y as a frame and its names, as
    :func:`_prepare_dense` takes them. None for anything else, which takes the general path."""
    if not (isinstance(source, tuple) and len(source) == 2) or pre.drop or pre.keep or pre.dates or pre.categorical:
        return None
    X, y = source
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in (np.float32, np.float64) and X.shape[1]):
        return None
    features = [f"x{j}" for j in range(X.shape[1])]  # as frame_from_array names an array's columns
    targets = _target_frame(y, len(X), features)
    if not targets.notna().to_numpy().all():
        return None
    X = np.ascontiguousarray(X)
    step = max(1, BATCH_VALUES // X.shape[1])
    blocks = [X[i : i + step] for i in range(0, len(X), step)]
    return blocks, features, Origin("arrays (X, y)"), targets, list(targets.columns)


def _prepare_dense(
    batches: list[Any],
    features: list[str],
    origin: Origin,
    targets: pd.DataFrame,
    names: list[str],
    task: str,
    pre: Preprocessor,
    split: Callable[[torch.Tensor, TargetEncoding], list[np.ndarray]],
) -> PreparedData | None:
    """What the general path gives for float features without gaps (a table that :func:`_is_dense` accepts, or
    arrays :func:`_dense_arrays` accepts), with no DataFrame: ``batches`` hold the feature values, row blocks in
    order, and are released as the tensors fill. None if a feature holds a NaN or an infinite value, for the
    general path to report (see :mod:`descend.data.dense`).
    """
    _rows_to_keep(targets, names, Plan(), pre, task, origin)  # the general path's checks of the target
    encoding = fit_target(targets, names, task, origin)
    y = encoding.encode(targets, origin)
    parts = split(y, encoding)
    filled = fill_splits(batches, parts)
    if filled is None:
        return None
    X, moments = filled
    lo, hi, mean, std = (a.tolist() for a in (moments.lo, moments.hi, moments.mean, moments.std))
    if pre.strict or pre.impute == "error":
        fill: list[float | None] = [None] * len(features)
    elif pre.impute == "mean":
        fill = list(mean)
    else:  # the median a gap met later takes: one partition of each training column
        fill = list(medians(X[0]))
    columns = []
    for j, c in enumerate(features):
        if lo[j] == hi[j]:
            columns.append(_constant_dense(pre, c, lo[j], origin))
            continue
        shift, scale = {"standard": (mean[j], std[j]), "minmax": (lo[j], hi[j] - lo[j])}.get(pre.scale, (0.0, 1.0))
        columns.append(Column(c, "numeric", fill=fill[j], shift=shift, scale=scale))
    pre.set_columns(columns, origin)
    pre.target_ = encoding
    live = [j for j, c in enumerate(pre.columns_) if c.kind != "dropped"]
    if len(live) < len(features):
        X = [np.ascontiguousarray(x[:, live]) for x in X]
    scale_in_place(X, [pre.columns_[j] for j in live])
    return _prepared([torch.from_numpy(x) for x in X], y, None, parts, pre, names)


def _constant_dense(pre: Preprocessor, name: str, value: float, origin: Origin) -> Column:
    return constant_column(Column(name, "numeric"), origin, value,
                     Fitting(pre.scale, pre.impute, pre.min_frequency, pre.constant, pre.strict))  # fmt: skip


def _source(
    source: Any, target: str | Sequence[str] | None, encoding: str | None = None
) -> tuple[pd.DataFrame | pa.Table, Origin, list[str]]:
    """The table (a CSV, TSV or Parquet file as Arrow), where it came from, and the target column names."""
    import pandas as pd

    table: pd.DataFrame | pa.Table
    if isinstance(source, Dataset):
        names = _names(target) or [source.target]
        table, origin = source.frame, Origin(f"dataset {source.name!r}")
    elif isinstance(source, tuple):
        if len(source) != 2:
            raise DataOptionError(f"a tuple source must be (X, y); got a tuple of {len(source)}")
        if target is not None:
            raise DataOptionError(
                "target= names a column of a table; with (X, y) the target is y, so leave it out"
            )
        table, origin, names = _from_xy(*source)
    else:
        if isinstance(source, (str, os.PathLike)):
            table, origin = read_file(Path(source), encoding=encoding)
        else:
            table, origin = read_with_origin(source)
        names = _names(target)
    columns = [str(c) for c in table.columns] if isinstance(table, pd.DataFrame) else table.column_names
    if not names:
        raise MissingColumnError(
            f"{origin}: name the target column with target=...; columns are {shown_names(columns)}"
        )
    for n in names:
        if n not in columns:
            near = difflib.get_close_matches(n, columns, n=1)
            hint = f" (did you mean {shown(near[0])}?)" if near else ""
            raise MissingColumnError(
                f"{origin}: no target column {shown(n)}{hint}; columns are {shown_names(columns)}"
            )
    return table, origin, names


def _names(target: str | Sequence[str] | None) -> list[str]:
    if target is None:
        return []
    if isinstance(target, str):
        return [target]
    names = list(target)
    if not names or not all(isinstance(n, str) for n in names):
        raise DataOptionError(f"target must be a column name or a list of column names; got {target!r}")
    return names


def _from_xy(X: Any, y: Any) -> tuple[pd.DataFrame, Origin, list[str]]:
    import pandas as pd

    frame, _ = read_with_origin(X)
    yf = _target_frame(y, len(frame), list(frame.columns))
    # One concat, not a column insert per target: X read from a wide file is one block per column, and pandas
    # warns (PerformanceWarning) on every insert into a frame of more than 100 blocks.
    out = pd.concat([frame.reset_index(drop=True), yf.reset_index(drop=True)], axis=1)
    return out, Origin("arrays (X, y)"), list(yf.columns)


def _target_frame(y: Any, rows: int, features: list[str]) -> pd.DataFrame:
    """y of a pair ``(X, y)`` as a frame: one column ``y`` (``y0``, ``y1``, ... for several; ``target_`` before a
    name X uses)."""
    import pandas as pd

    if isinstance(y, pd.DataFrame):
        yf = y
    elif isinstance(y, pd.Series):
        yf = y.to_frame(name=y.name if isinstance(y.name, str) else "y")
    else:
        arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        yf = frame_from_array(arr, "y", prefix="y")
        if yf.shape[1] == 1:
            yf.columns = ["y"]
    if len(yf) != rows:
        raise LengthMismatchError(f"X has {rows} rows but y has {len(yf)}; give one target per row of X")
    taken = set(features)
    return yf.set_axis([c if c not in taken else f"target_{c}" for c in map(str, yf.columns)], axis=1)


def _rows_to_keep(
    frame: pd.DataFrame,
    names: list[str],
    plan: Plan,
    pre: Preprocessor,
    task: str,
    origin: Origin,
) -> tuple[np.ndarray, int]:
    """Check every value once, in table order; return the mask of rows to keep and how many were left out for a
    missing target. Rows go only for a missing target (outside strict mode) or a gap with ``impute="drop"``."""
    import pandas as pd

    drop_gaps = pre.impute == "drop"
    keep = np.ones(len(frame), dtype=bool)
    for n in names:
        present = check_target_present(frame[n], n, origin)
        if pd.api.types.is_numeric_dtype(frame[n].dtype):
            numeric_values(frame[n], n, origin, allow_missing=True, role="target")  # infinite values
        elif task in ("auto", "regression"):
            column_kind(frame[n], n, origin)  # numbers with a typo are not class labels
        if not present.all():
            if not drop_gaps and (pre.strict or pre.impute == "error"):
                i = int(np.flatnonzero(~present)[0])
                raise MissingValueError(
                    f"{origin}: target {shown(n)}, {origin.at(i)}: value is missing ({int((~present).sum())} missing); "
                    "a target is never imputed: remove those rows, or pass impute='drop' (strict off: they are left out)"
                )
            keep &= present
    unlabelled = int((~keep).sum())
    for c, kind in plan.kinds.items():
        if kind == "numeric":
            v = numeric_values(frame[c], c, origin, allow_missing=not pre.strict and pre.impute != "error")
            if drop_gaps:
                keep &= ~np.isnan(v)
        elif drop_gaps and kind == "boolean":
            keep &= ~np.isnan(boolean_values(frame[c]))
        elif drop_gaps:
            keep &= frame[c].notna().to_numpy()
    return keep, 0 if drop_gaps else unlabelled
