"""The target: infer the task, encode labels as tensors, decode class indices back to labels.

Task inference (``task="auto"``):

- text, categorical or boolean target: classification;
- numbers that are all whole and take at most :data:`MAX_AUTO_CLASSES` distinct values: classification;
- any other numbers (or a target of several columns): regression.

Two classes make a ``binary`` task (``y`` is float 0/1, for a logistic output), more make ``multiclass`` (``y`` is
the int64 index into :attr:`TargetEncoding.classes`, for a softmax output). Classes are sorted, so the encoding
does not depend on row order. Pass ``task=`` to override the inference, e.g. ``task="regression"`` for a 1..10
rating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from descend.data.columns import numeric_values
from descend.data.errors import MissingValueError, TargetError, listed, shown
from descend.data.read import Origin

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_AUTO_CLASSES", "TASKS", "TargetEncoding", "Task", "fit_target"]

Task = Literal["regression", "binary", "multiclass"]
TASKS = ("auto", "regression", "binary", "multiclass")
#: With task="auto", whole numbers with at most this many distinct values are class labels.
MAX_AUTO_CLASSES = 20


@dataclass
class TargetEncoding:
    """How the target column(s) map to ``y``: the task, the column names and (for classification) the classes."""

    names: list[str]
    task: Task
    classes: list[Any] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.task != "regression" else 0

    def encode(self, frame: pd.DataFrame, origin: Origin) -> torch.Tensor:
        """``y`` for every row of ``frame`` (which must have no missing target values)."""
        import pandas as pd

        if self.task == "regression":
            cols = [
                numeric_values(frame[n], n, origin, allow_missing=False, role="target") for n in self.names
            ]
            y = np.stack(cols, axis=1) if len(cols) > 1 else cols[0]
            return torch.from_numpy(np.array(y, dtype=np.float32))  # a copy: pandas arrays are read-only
        labels = _labels(frame[self.names[0]])
        codes = pd.Index(self.classes).get_indexer(labels)
        if (codes < 0).any():
            i = int(np.flatnonzero(codes < 0)[0])
            raise TargetError(
                f"{origin}: target {shown(self.names[0])}, {origin.at(i)}: label {shown(labels[i])} is not one of "
                f"the {len(self.classes)} classes ({listed(self.classes)})"
            )
        if self.task == "binary":
            return torch.from_numpy(codes.astype(np.float32))
        return torch.from_numpy(codes.astype(np.int64))

    def decode(self, indices: Any) -> np.ndarray:
        """Original labels for class indices (a tensor, array or list; binary 0./1. floats are accepted)."""
        if self.task == "regression":
            raise TargetError("decode() applies to classification; this target is a regression target")
        idx = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
        if idx.dtype.kind == "f":
            if not np.all(idx == np.round(idx)):
                raise TargetError(
                    "decode() takes class indices; got fractional values (threshold probabilities first, "
                    "e.g. (p > 0.5).long())"
                )
            idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.classes)):
            raise TargetError(
                f"decode(): class index {int(idx.max() if idx.max() >= len(self.classes) else idx.min())} is "
                f"out of range; there are {len(self.classes)} classes (0 to {len(self.classes) - 1})"
            )
        return np.asarray(self.classes, dtype=object if _mixed(self.classes) else None)[idx]

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "task": self.task, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetEncoding:
        return cls(names=list(d["names"]), task=d["task"], classes=list(d["classes"]))


def fit_target(frame: pd.DataFrame, names: Sequence[str], task: str, origin: Origin) -> TargetEncoding:
    """Infer (or check) the task from the target column(s) of ``frame``; rows with missing targets are gone."""
    import pandas as pd

    names = list(names)
    if len(names) > 1:
        if task not in ("auto", "regression"):
            raise TargetError(
                f"{origin}: a target of several columns {names} is regression; got task={task!r}"
            )
        return TargetEncoding(names, "regression")
    name = names[0]
    series = frame[name]
    numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    if task == "regression" or (task == "auto" and numeric and _looks_continuous(series)):
        if not numeric:
            example = series.dropna().iloc[0]
            raise TargetError(
                f"{origin}: task='regression' needs a numeric target, but {name!r} holds labels such as "
                f"{example!r}; use task='auto' for classification"
            )
        values = numeric_values(series, name, origin, allow_missing=False, role="target")
        if values.min() == values.max():
            raise TargetError(f"{origin}: target {name!r} has the same value ({values[0]}) in every row")
        return TargetEncoding(names, "regression")
    labels = _labels(series)
    classes = sorted(set(labels.tolist()), key=_sort_key)
    if len(classes) < 2:
        raise TargetError(
            f"{origin}: target {name!r} has one class ({classes[0]!r}) in all {len(labels)} rows; "
            "classification needs at least two"
        )
    if task == "binary" and len(classes) != 2:
        raise TargetError(
            f"{origin}: task='binary' needs two classes, target {name!r} has {len(classes)}: {_head(classes)}; "
            "use task='multiclass'"
        )
    kind: Task = "binary" if task == "binary" or (task == "auto" and len(classes) == 2) else "multiclass"
    return TargetEncoding(names, kind, classes)


def check_target_present(series: pd.Series, name: str, origin: Origin) -> np.ndarray:
    """Mask of rows whose target is present; an all-missing target is an error."""
    present = series.notna().to_numpy()
    if not present.any():
        raise MissingValueError(f"{origin}: target {name!r} has no values (all {len(series)} are missing)")
    return present


def _looks_continuous(series: pd.Series) -> bool:
    v = series.to_numpy(dtype=np.float64, na_value=np.nan)
    v = v[np.isfinite(v)]
    return not (np.all(v == np.round(v)) and len(np.unique(v)) <= MAX_AUTO_CLASSES)


def _labels(series: pd.Series) -> np.ndarray:
    """Labels as plain Python-friendly values: whole floats become ints, text stays text."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(series.dtype):
        v = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return v.astype(np.int64) if np.all(v == np.round(v)) else v
    return series.astype("str").to_numpy(dtype=object)


def _sort_key(label: Any) -> tuple[str, Any]:
    return (type(label).__name__, label)


def _mixed(classes: Sequence[Any]) -> bool:
    return len({type(c) for c in classes}) > 1


def _head(values: Sequence[Any], k: int = 5) -> str:
    return ", ".join(repr(v) for v in values[:k]) + (", ..." if len(values) > k else "")
