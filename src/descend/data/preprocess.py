"""The preprocessor: what was learned from the training rows, applied the same way to any later table.

For a numeric column with training values :math:`x_1..x_m`, the feature is :math:`(x - a) / b` where

- ``scale="standard"``: :math:`a = \\bar x`, :math:`b = \\sqrt{\\tfrac1m \\sum_i (x_i - \\bar x)^2}` (the population
  standard deviation, as scikit-learn's ``StandardScaler``);
- ``scale="minmax"``: :math:`a = \\min_i x_i`, :math:`b = \\max_i x_i - \\min_i x_i`, so training values land in [0, 1];
- ``scale="none"``: :math:`a = 0`, :math:`b = 1`.

A categorical column with training categories :math:`c_1 < \\dots < c_k` becomes k one-hot columns
``name=c_1 .. name=c_k`` (not scaled). A category not seen in training is an error with ``unseen="error"``, or all
zeros with ``unseen="ignore"``.

A column that is constant over the training rows carries no information and has :math:`b = 0`: with
``constant="drop"`` (the default) it is dropped with a :class:`DataWarning`; with ``constant="error"`` it is refused.
Missing values are refused unless ``impute="mean"`` or ``"median"`` (numeric columns get the training mean or median,
categorical columns the most frequent training category) or ``"drop"`` (only for preparing: rows are removed).

Everything learned is plain numbers and strings: :meth:`Preprocessor.to_dict` is JSON, saved beside the model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.data.columns import Kind, column_kind, numeric_values, text_values
from descend.data.encode import encode_splits
from descend.data.errors import (
    ColumnMismatchError,
    ConstantColumnError,
    DataOptionError,
    DataWarning,
    MissingValueError,
    shown,
)
from descend.data.options import check_choice
from descend.data.read import Origin, read_with_origin, shown_names
from descend.data.target import TargetEncoding

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONSTANT", "IMPUTE", "SCALES", "UNSEEN", "Column", "Preprocessor"]

SCALES = ("standard", "minmax", "none")
IMPUTE = (None, "mean", "median", "drop")
UNSEEN = ("error", "ignore")
CONSTANT = ("drop", "error")
_FORMAT = "descend.data.Preprocessor"


@dataclass
class Column:
    """One input column as learned from training: numeric (``shift``, ``scale``), categorical or dropped."""

    name: str
    kind: str  # "numeric" | "categorical" | "dropped"
    fill: float | str | None = None
    shift: float = 0.0
    scale: float = 1.0
    categories: list[str] | None = None

    @property
    def width(self) -> int:
        return {"numeric": 1, "dropped": 0}.get(self.kind, len(self.categories or []))


class Preprocessor:
    """Turns feature columns into a float32 tensor with statistics learned from training rows only.

    Args:
        scale: ``"standard"``, ``"minmax"`` or ``"none"`` (see the module docstring for the maths).
        impute: ``None`` (missing values are an error), ``"mean"``, ``"median"`` or ``"drop"``.
        unseen: ``"error"`` or ``"ignore"`` (all-zero one-hot) for categories not seen in training.
        constant: ``"drop"`` (with a warning) or ``"error"`` for columns constant over the training rows.

    Learned attributes end in ``_``: ``columns_`` (one :class:`Column` per input column), ``feature_names_``,
    ``target_`` (a :class:`TargetEncoding`, or None when fitted without a target).

    Example:
        >>> import pandas as pd
        >>> pre = Preprocessor().fit(pd.DataFrame({"a": [1.0, 3.0], "y": [0, 1]}), target="y")
        >>> pre.transform(pd.DataFrame({"a": [2.0]})).tolist()
        [[0.0]]
    """

    def __init__(
        self,
        *,
        scale: str = "standard",
        impute: str | None = None,
        unseen: str = "error",
        constant: str = "drop",
    ) -> None:
        check_choice("scale", scale, SCALES)
        check_choice("impute", impute, IMPUTE)
        check_choice("unseen", unseen, UNSEEN)
        check_choice("constant", constant, CONSTANT)
        self.scale, self.impute, self.unseen, self.constant = scale, impute, unseen, constant
        self.columns_: list[Column] = []
        self.target_: TargetEncoding | None = None

    # --- fitting ------------------------------------------------------------------------------------------------

    def fit(
        self, source: Any, *, target: str | Sequence[str] | None = None, task: str = "auto"
    ) -> Preprocessor:
        """Learn from every row of ``source`` (anything :func:`read_table` reads); the target is left out."""
        from descend.data.target import fit_target

        frame, origin = read_with_origin(source)
        names = [target] if isinstance(target, str) else list(target or [])
        features = [c for c in frame.columns if c not in names]
        kinds = {c: column_kind(frame[c], c, origin) for c in features}
        self.fit_rows(frame, kinds, np.arange(len(frame)), origin)
        self.target_ = fit_target(frame, names, task, origin) if names else None
        return self

    def fit_rows(self, frame: pd.DataFrame, kinds: dict[str, Kind], rows: np.ndarray, origin: Origin) -> None:
        """Learn each column in ``kinds`` from the given rows of ``frame`` only (the training split)."""
        self.set_columns(
            [self._fit_column(frame[name], name, kind, rows, origin) for name, kind in kinds.items()], origin
        )

    def set_columns(self, columns: list[Column], origin: Origin) -> None:
        """Keep the fitted ``columns``, warning of those dropped as constant; refuse a table with none left."""
        self.columns_ = columns
        dropped = [c.name for c in self.columns_ if c.kind == "dropped"]
        if dropped:
            warnings.warn(
                f"{origin}: dropped {len(dropped)} column(s) constant over the training rows: "
                f"{', '.join(map(repr, dropped[:10]))}{' ...' if len(dropped) > 10 else ''} "
                "(pass constant='error' to refuse them instead)",
                DataWarning,
                stacklevel=4,
            )
        if not any(c.width for c in self.columns_):
            raise ConstantColumnError(f"{origin}: every feature column is constant over the training rows")

    def _fit_column(
        self, series: pd.Series, name: str, kind: Kind, rows: np.ndarray, origin: Origin
    ) -> Column:
        fill: float | str | None = None
        if kind == "categorical":
            t = text_values(series)[rows]
            present = t[t != None]  # noqa: E711 (elementwise on an object array)
            cats, counts = np.unique(present.astype(str), return_counts=True)
            if len(cats) == 0:
                raise MissingValueError(f"{origin}: column {shown(name)} has no values in the training rows")
            if self.impute in ("mean", "median"):
                fill = str(cats[np.argmax(counts)])
            col = Column(name, "categorical", fill=fill, categories=[str(c) for c in cats])
            return self._constant(col, origin, cats[0]) if len(cats) == 1 else col
        v = numeric_values(series, name, origin, allow_missing=self.impute is not None, rows=rows)[rows]
        missing = np.isnan(v)
        value: float | None = None
        if missing.any():
            if missing.all():
                raise MissingValueError(f"{origin}: column {shown(name)} has no values in the training rows")
            value = float(np.nanmedian(v) if self.impute == "median" else np.nanmean(v, dtype=np.float64))
            v = np.where(missing, value, v)
        elif self.impute in ("mean", "median"):
            value = float(np.median(v) if self.impute == "median" else np.mean(v, dtype=np.float64))
        lo, hi = float(v.min()), float(v.max())
        if self.scale == "standard" and lo != hi:
            mean, std = float(np.mean(v, dtype=np.float64)), float(np.std(v, dtype=np.float64))
        else:
            mean, std = 0.0, 1.0
        return self.numeric_column(name, value, lo, hi, mean, std, origin)

    def numeric_column(
        self, name: str, fill: float | None, lo: float, hi: float, mean: float, std: float, origin: Origin
    ) -> Column:
        """A numeric column whose training values span ``[lo, hi]`` with this mean and std (constant if lo == hi)."""
        if lo == hi:
            return self._constant(Column(name, "numeric"), origin, lo)
        if self.scale == "standard":
            shift, scale = mean, std
        elif self.scale == "minmax":
            shift, scale = lo, hi - lo
        else:
            shift, scale = 0.0, 1.0
        return Column(name, "numeric", fill=fill, shift=shift, scale=scale)

    def _constant(self, col: Column, origin: Origin, value: Any) -> Column:
        if self.constant == "error":
            raise ConstantColumnError(
                f"{origin}: column {shown(col.name)} has the same value ({shown(value)}) in every training row, so it "
                "cannot inform the model; remove it, or pass constant='drop'"
            )
        return Column(col.name, "dropped")

    # --- applying -----------------------------------------------------------------------------------------------

    @property
    def feature_names_(self) -> list[str]:
        names: list[str] = []
        for c in self.columns_:
            names += [c.name] if c.kind == "numeric" else [f"{c.name}={k}" for k in (c.categories or [])]
        return names

    def transform(self, source: Any, *, unseen: str | None = None, encoding: str | None = None) -> torch.Tensor:
        """Features of every row of ``source`` as a float32 tensor of shape ``(rows, len(feature_names_))``.

        The table must hold the training feature columns (in any order; target columns and dropped constant
        columns may also be present and are ignored). An array or tensor without column names is matched by
        position. ``unseen`` overrides the fitted choice for categories not seen in training; ``encoding`` is the
        text encoding of a CSV/TSV file (see :func:`read_table`).
        """
        frame, origin = read_with_origin(source, encoding=encoding)
        return self.transform_frame(frame, origin, unseen=unseen)

    def transform_frame(self, frame: pd.DataFrame, origin: Origin, *, unseen: str | None = None) -> torch.Tensor:
        """:meth:`transform` of a table already read, whose errors name ``origin`` (the file it came from)."""
        if not self.columns_:
            raise DataOptionError("this Preprocessor is not fitted; call fit() or load one with from_dict()")
        if unseen is not None:
            check_choice("unseen", unseen, UNSEEN)
        frame = self._match_columns(frame, origin)
        for c in self.columns_:
            if c.kind != "dropped" and column_kind(frame[c.name], c.name, origin) != c.kind:
                example = shown(frame[c.name].dropna().iloc[0])
                raise ColumnMismatchError(
                    f"{origin}: column {shown(c.name)} was {c.kind} in training but here holds "
                    f"{'text' if c.kind == 'numeric' else 'numbers'} such as {example}; give it the same kind "
                    "of values as in training"
                )
        return self.encode(frame, origin, None, unseen or self.unseen)

    def _match_columns(self, frame: pd.DataFrame, origin: Origin) -> pd.DataFrame:
        used = [c.name for c in self.columns_ if c.kind != "dropped"]
        allowed = {c.name for c in self.columns_} | set(self.target_.names if self.target_ else [])
        have = list(frame.columns)
        if origin.name in ("array", "tensor") and not set(used) <= set(have):
            every = [c.name for c in self.columns_]
            for names in (used, every):
                if len(have) == len(names):
                    return frame.set_axis(names, axis=1)
            raise ColumnMismatchError(
                f"{origin}: has {len(have)} columns; the model was trained on {len(used)} feature columns "
                f"({shown_names(used)}), matched by position for an array"
            )
        missing = [n for n in used if n not in have]
        if missing:
            raise ColumnMismatchError(
                f"{origin}: missing feature column(s) {shown_names(missing)}; the model was trained on {shown_names(used)}"
            )
        extra = [n for n in have if n not in allowed]
        if extra:
            raise ColumnMismatchError(
                f"{origin}: unexpected column(s) {shown_names(extra)}; the model was trained on {shown_names(used)} "
                "(drop the others before predicting)"
            )
        return frame

    def encode(
        self, frame: pd.DataFrame, origin: Origin, rows: np.ndarray | None, unseen: str
    ) -> torch.Tensor:
        """The features of ``frame`` (only ``rows``, if given) as scaled float32; values are checked as they go."""
        return encode_splits(frame, self.columns_, origin, [rows], unseen)[0]

    def decode(self, indices: Any) -> np.ndarray:
        """Original class labels for class indices (see :meth:`TargetEncoding.decode`)."""
        if self.target_ is None:
            raise DataOptionError(
                "this Preprocessor was fitted without a target, so it has no classes to decode"
            )
        return self.target_.decode(indices)

    # --- saving -------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this preprocessor, as JSON-ready lists, strings and numbers."""
        return {
            "format": _FORMAT,
            "version": 1,
            "options": {
                "scale": self.scale,
                "impute": self.impute,
                "unseen": self.unseen,
                "constant": self.constant,
            },
            "columns": [
                {
                    k: v
                    for k, v in vars(c).items()
                    if v is not None and not (c.kind != "numeric" and k in _NUMERIC)
                }
                for c in self.columns_
            ],
            "target": self.target_.to_dict() if self.target_ else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Rebuild a preprocessor saved with :meth:`to_dict`, checking every field (the file may have been edited):
        a :class:`DataOptionError` names the first field that is missing or out of range."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT or d.get("version") != 1:
            raise DataOptionError(
                f"not a saved descend preprocessor (expected format {_FORMAT!r}, version 1)"
            )
        options = _field(d, "options", dict)
        unknown = sorted(set(options) - {"scale", "impute", "unseen", "constant"})
        if unknown:
            raise DataOptionError(f"options: unknown option {shown(unknown[0])}")
        pre = cls(**options)
        items = _field(d, "columns", list)
        if not items:
            raise DataOptionError("columns: the list is empty; a preprocessor has one entry per feature column")
        pre.columns_ = [_column(c, f"columns[{j}]") for j, c in enumerate(items)]
        names = [c.name for c in pre.columns_]
        if len(set(names)) < len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise DataOptionError(f"columns: the name {shown(twice)} appears twice")
        if not any(c.width for c in pre.columns_):
            raise DataOptionError("columns: every column is dropped, so there are no features")
        target = d.get("target")
        pre.target_ = _target(target) if target is not None else None
        return pre

    def __repr__(self) -> str:
        return (
            f"Preprocessor(scale={self.scale!r}, impute={self.impute!r}, unseen={self.unseen!r}, "
            f"constant={self.constant!r}; {len(self.feature_names_)} features)"
        )


_NUMERIC = ("shift", "scale")
_KINDS = ("numeric", "categorical", "dropped")


def _field(d: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """``d[key]``, which must be present and of type ``kind``."""
    at = f"{where}." if where else ""
    if key not in d:
        raise DataOptionError(f"{at}{key} is missing")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DataOptionError(f"{at}{key} is {shown(value)}; expected a {kind.__name__}")
    return value


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataOptionError(f"{where} is {shown(value)}; expected a finite number")
    if positive and value <= 0:
        raise DataOptionError(f"{where} is {value!r}; expected a number > 0 (it divides the feature)")
    return float(value)


def _column(c: Any, where: str) -> Column:
    """One saved column, checked: a name, a kind, and the numbers or categories that kind needs."""
    if not isinstance(c, dict):
        raise DataOptionError(f"{where} is {shown(c)}; expected an object with name and kind")
    unknown = sorted(set(c) - {"name", "kind", "fill", "shift", "scale", "categories"})
    if unknown:
        raise DataOptionError(f"{where}: unknown field {shown(unknown[0])}")
    name = _field(c, "name", str, where)
    where = f"{where} ({shown(name)})"
    kind = _field(c, "kind", str, where)
    if kind not in _KINDS:
        raise DataOptionError(f"{where}.kind is {shown(kind)}; expected one of {', '.join(map(repr, _KINDS))}")
    fill = c.get("fill")
    if kind == "numeric":
        shift = _number(c.get("shift", 0.0), f"{where}.shift")
        scale = _number(c.get("scale", 1.0), f"{where}.scale", positive=True)
        return Column(name, kind, None if fill is None else _number(fill, f"{where}.fill"), shift, scale)
    if kind == "dropped":
        return Column(name, kind)
    cats = _field(c, "categories", list, where)
    if not cats or not all(isinstance(k, str) for k in cats) or len(set(cats)) < len(cats):
        raise DataOptionError(f"{where}.categories must be a non-empty list of distinct strings")
    if fill is not None and fill not in cats:
        raise DataOptionError(f"{where}.fill is {shown(fill)}; expected one of its categories")
    return Column(name, kind, fill, categories=list(cats))


def _target(t: Any) -> TargetEncoding:
    if not isinstance(t, dict):
        raise DataOptionError(f"target is {shown(t)}; expected an object with names, task and classes")
    names = _field(t, "names", list, "target")
    if not names or not all(isinstance(n, str) for n in names):
        raise DataOptionError(f"target.names is {shown(names)}; expected a non-empty list of column names")
    task = _field(t, "task", str, "target")
    classes = _field(t, "classes", list, "target")
    tasks = ("regression", "binary", "multiclass")
    if task not in tasks:
        raise DataOptionError(f"target.task is {shown(task)}; expected one of {', '.join(map(repr, tasks))}")
    need = {"regression": "no classes", "binary": "2 classes", "multiclass": "at least 2 classes"}[task]
    ok = not classes if task == "regression" else len(classes) == 2 if task == "binary" else len(classes) >= 2
    scalars = all(isinstance(k, (str, int, float)) for k in classes)
    if not ok or not scalars or len(set(map(repr, classes))) < len(classes):
        raise DataOptionError(f"target.classes has {len(classes)} entries; a {task} target has {need} (distinct labels)")
    return TargetEncoding.from_dict(t)
