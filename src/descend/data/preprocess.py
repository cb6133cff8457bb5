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
                raise MissingValueError(f"{origin}: column {name!r} has no values in the training rows")
            if self.impute in ("mean", "median"):
                fill = str(cats[np.argmax(counts)])
            col = Column(name, "categorical", fill=fill, categories=[str(c) for c in cats])
            return self._constant(col, origin, cats[0]) if len(cats) == 1 else col
        v = numeric_values(series, name, origin, allow_missing=self.impute is not None, rows=rows)[rows]
        missing = np.isnan(v)
        value: float | None = None
        if missing.any():
            if missing.all():
                raise MissingValueError(f"{origin}: column {name!r} has no values in the training rows")
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
                f"{origin}: column {col.name!r} has the same value ({value!r}) in every training row, so it "
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

    def transform(self, source: Any, *, unseen: str | None = None) -> torch.Tensor:
        """Features of every row of ``source`` as a float32 tensor of shape ``(rows, len(feature_names_))``.

        The table must hold the training feature columns (in any order; target columns and dropped constant
        columns may also be present and are ignored). An array or tensor without column names is matched by
        position. ``unseen`` overrides the fitted choice for categories not seen in training.
        """
        if not self.columns_:
            raise DataOptionError("this Preprocessor is not fitted; call fit() or load one with from_dict()")
        if unseen is not None:
            check_choice("unseen", unseen, UNSEEN)
        frame, origin = read_with_origin(source)
        frame = self._match_columns(frame, origin)
        for c in self.columns_:
            if c.kind != "dropped" and column_kind(frame[c.name], c.name, origin) != c.kind:
                example = frame[c.name].dropna().iloc[:1].tolist()
                raise ColumnMismatchError(
                    f"{origin}: column {c.name!r} was {c.kind} in training but here holds "
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
        """Rebuild a preprocessor saved with :meth:`to_dict`."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT or d.get("version") != 1:
            raise DataOptionError(
                f"not a saved descend preprocessor (expected format {_FORMAT!r}, version 1)"
            )
        pre = cls(**d["options"])
        pre.columns_ = [Column(**c) for c in d["columns"]]
        pre.target_ = TargetEncoding.from_dict(d["target"]) if d["target"] else None
        return pre

    def __repr__(self) -> str:
        return (
            f"Preprocessor(scale={self.scale!r}, impute={self.impute!r}, unseen={self.unseen!r}, "
            f"constant={self.constant!r}; {len(self.feature_names_)} features)"
        )


_NUMERIC = ("shift", "scale")
