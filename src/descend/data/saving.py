"""A fitted :class:`~descend.data.Preprocessor` as JSON, and back, with every field checked on the way in.

Version 2 adds booleans, dates, "was missing" indicators, case aliases, the reason a column was left out, the
options of messy-table handling and the decisions. A version 1 preprocessor (saved before) still loads and
transforms as it did: gaps in its categorical columns take its most frequent category.

Example:
    >>> import json, pandas as pd
    >>> from descend.data import Preprocessor
    >>> pre = Preprocessor().fit(pd.DataFrame({"a": [1.0, None, 3.0], "y": [0, 1, 0]}), target="y")
    >>> again = preprocessor_from_dict(Preprocessor, json.loads(json.dumps(preprocessor_dict(pre))))
    >>> again.feature_names_, again.describe() == pre.describe()
    (['a', 'a.missing'], True)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from descend.data.errors import DataOptionError, shown
from descend.data.fitting import Column
from descend.data.target import TargetEncoding

if TYPE_CHECKING:
    from descend.data.preprocess import Preprocessor

__all__ = ["preprocessor_dict", "preprocessor_from_dict"]

FORMAT = "descend.data.Preprocessor"
VERSION = 2
_OPTIONS = ("scale", "impute", "unseen", "constant", "min_frequency", "strict", "drop", "keep", "dates", "categorical")
_KINDS = ("numeric", "boolean", "date", "categorical", "dropped")
_FIELDS = ("name", "kind", "fill", "shift", "scale", "categories", "indicator", "parts", "fills", "shifts", "scales",
           "format", "aliases", "reason", "gaps", "pooled")  # fmt: skip


def preprocessor_dict(pre: Preprocessor) -> dict[str, Any]:
    """Everything needed to rebuild ``pre``, as JSON-ready lists, strings and numbers."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "options": {k: getattr(pre, k) for k in _OPTIONS},
        "columns": [_column_dict(c) for c in pre.columns_],
        "target": pre.target_.to_dict() if pre.target_ else None,
        "decisions": list(pre.decisions_),
    }


def _column_dict(c: Column) -> dict[str, Any]:
    keep: dict[str, Any] = {}
    for k in _FIELDS:
        v = getattr(c, k)
        if v is None or v is False or (k in ("shift", "scale") and c.kind not in ("numeric", "boolean")):
            continue
        keep[k] = v
    return keep


def preprocessor_from_dict(cls: type[Preprocessor], d: Any) -> Preprocessor:
    """Rebuild a preprocessor saved by :func:`preprocessor_dict` (or version 1), checking every field."""
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") not in (1, VERSION):
        raise DataOptionError(f"not a saved descend preprocessor (expected format {FORMAT!r}, version 1 or 2)")
    options = dict(_field(d, "options", dict))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise DataOptionError(f"options: unknown option {shown(unknown[0])}")
    if d["version"] == 1:  # then an unseen category was refused unless "ignore", and impute None refused gaps
        options.setdefault("unseen", "error")
        options.setdefault("impute", None)
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
    decisions = d.get("decisions", [])
    if not isinstance(decisions, list) or not all(isinstance(s, str) for s in decisions):
        raise DataOptionError(f"decisions is {shown(decisions)}; expected a list of strings")
    pre.decisions_ = list(decisions)
    return pre


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


def _numbers(c: dict[str, Any], key: str, where: str, n: int, *, positive: bool = False, gaps: bool = False) -> Any:
    values = _field(c, key, list, where)
    if len(values) != n:
        raise DataOptionError(f"{where}.{key} has {len(values)} entries; expected {n}, one per part")
    return [None if gaps and v is None else _number(v, f"{where}.{key}[{j}]", positive=positive)
            for j, v in enumerate(values)]  # fmt: skip


def _column(c: Any, where: str) -> Column:
    """One saved column, checked: a name, a kind, and the numbers or categories that kind needs."""
    col = _column_of_kind(c, where)
    gaps, pooled = c.get("gaps"), c.get("pooled")
    if gaps is not None and (isinstance(gaps, bool) or not isinstance(gaps, int) or gaps < 0):
        raise DataOptionError(f"{where}.gaps is {shown(gaps)}; expected a count")
    if pooled is not None and not (isinstance(pooled, list) and all(isinstance(p, str) for p in pooled)):
        raise DataOptionError(f"{where}.pooled is {shown(pooled)}; expected a list of categories")
    col.gaps, col.pooled = gaps, pooled
    return col


def _column_of_kind(c: Any, where: str) -> Column:
    if not isinstance(c, dict):
        raise DataOptionError(f"{where} is {shown(c)}; expected an object with name and kind")
    unknown = sorted(set(c) - set(_FIELDS))
    if unknown:
        raise DataOptionError(f"{where}: unknown field {shown(unknown[0])}")
    name = _field(c, "name", str, where)
    where = f"{where} ({shown(name)})"
    kind = _field(c, "kind", str, where)
    if kind not in _KINDS:
        raise DataOptionError(f"{where}.kind is {shown(kind)}; expected one of {', '.join(map(repr, _KINDS))}")
    indicator = c.get("indicator", False)
    if not isinstance(indicator, bool):
        raise DataOptionError(f"{where}.indicator is {shown(indicator)}; expected true or false")
    fill = c.get("fill")
    if kind in ("numeric", "boolean"):
        shift = _number(c.get("shift", 0.0), f"{where}.shift")
        scale = _number(c.get("scale", 1.0), f"{where}.scale", positive=True)
        value = None if fill is None else _number(fill, f"{where}.fill")
        return Column(name, kind, value, shift, scale, indicator=indicator)
    if kind == "dropped":
        reason = c.get("reason")
        return Column(name, kind, reason=reason if isinstance(reason, str) else None)
    if kind == "date":
        parts = _field(c, "parts", list, where)
        if not parts or not all(isinstance(p, str) for p in parts):
            raise DataOptionError(f"{where}.parts must be a non-empty list of part names")
        n = len(parts)
        fmt = c.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise DataOptionError(f"{where}.format is {shown(fmt)}; expected a date format string or null")
        return Column(
            name, kind, parts=list(parts), fills=_numbers(c, "fills", where, n, gaps=True) if "fills" in c else None,
            shifts=_numbers(c, "shifts", where, n), scales=_numbers(c, "scales", where, n, positive=True),
            format=fmt, indicator=indicator,
        )  # fmt: skip
    cats = _field(c, "categories", list, where)
    if not cats or not all(isinstance(k, str) for k in cats) or len(set(cats)) < len(cats):
        raise DataOptionError(f"{where}.categories must be a non-empty list of distinct strings")
    if fill is not None and fill not in cats:
        raise DataOptionError(f"{where}.fill is {shown(fill)}; expected one of its categories")
    aliases = c.get("aliases")
    if aliases is not None and not (
        isinstance(aliases, dict) and all(isinstance(v, str) and v in cats for v in aliases.values())
    ):
        raise DataOptionError(f"{where}.aliases must map spellings to its categories")
    return Column(name, kind, fill, categories=list(cats), aliases=aliases)


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
