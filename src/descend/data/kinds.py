"""What each column of a table is: numeric, boolean, date, categorical, or left out (and why).

Rules, in order, for a feature column (each result is stated in the prepared data's decisions):

1. named in ``drop``: left out. Named in ``dates``: a date column. Named in ``categorical``: categories (integer
   codes included).
2. no value at all: left out (strict: refused).
3. booleans (``True``/``False``, or text that is only ``true``/``false``, ``yes``/``no``, ``y``/``n``,
   ``t``/``f`` in any case): 0/1. Strict mode reads such text as categories.
4. datetimes, or text that one date format reads (:mod:`descend.data.dates`): a date column. Strict: refused
   unless named in ``dates``.
5. numbers: numeric, unless the column is an integer index: its values are exactly 0..n-1 or 1..n (in any order)
   and its name says it is one (``id``, ``index``, ``row``, ``key``, ``PassengerId``, ``user_id``, pandas'
   ``Unnamed: 0``); then left out as an identifier.
6. text in which at least half the values are numbers: numeric, the other values read as gaps (strict: refused,
   naming the first).
7. other text: categorical, unless nearly unique (at least :data:`ID_SHARE` of :data:`ID_MIN_ROWS` or more
   present values distinct): left out as an identifier (names, ticket numbers, free text).

``keep`` overrides the identifier rules (and, later, the constant rule). Identifiers are judged on the whole table:
they describe what a column is, not a statistic that a model learns.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"id": range(1, 31), "when": ["2024-03-05"] * 30, "ok": ["yes", "no"] * 15,
    ...                       "colour": ["red", "blue", "green"] * 10})
    >>> plan = plan_columns(frame, list(frame.columns), Origin("DataFrame"), drop=[], keep=[], dates=[],
    ...                     categorical=[], strict=False)
    >>> plan.kinds, plan.left_out
    ({'when': 'date', 'ok': 'boolean', 'colour': 'categorical'}, {'id': ('identifier', 'values 1..30, one per row')})
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from descend.data.categories import normalise, text_of
from descend.data.columns import column_kind
from descend.data.dates import date_format, is_datetime
from descend.data.errors import ColumnError, MissingValueError, NonNumericError, shown
from descend.data.read import Origin

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FALSE", "ID_MIN_ROWS", "ID_SHARE", "TRUE", "Plan", "Use", "blanks_as_gaps", "plan_columns"]

Use = Literal["numeric", "boolean", "date", "categorical"]
TRUE = frozenset({"true", "yes", "y", "t"})
FALSE = frozenset({"false", "no", "n", "f"})
ID_SHARE = 0.95
ID_MIN_ROWS = 20
_ID_NAME = re.compile(r"(?i)^(unnamed: ?\d+|id|idx|index|key|row|rownum)$|(?i:[_\s.\-](id|idx|index|key|no))$|[a-z](Id|ID)$")


@dataclass
class Plan:
    """Each used column's kind, each date column's format, and the columns left out with the reason."""

    kinds: dict[str, Use] = field(default_factory=dict)
    formats: dict[str, str | None] = field(default_factory=dict)
    left_out: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (why: asked/identifier/empty, detail)


def blanks_as_gaps(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with empty or blank text cells as gaps (a CSV reader keeps an empty text field as ``""``); the
    caller's frame is not changed."""
    import pandas as pd

    out = frame
    for name in columns:
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
            continue
        blank = series.map(lambda v: isinstance(v, str) and not v.strip(), na_action="ignore").fillna(False)
        if blank.to_numpy(dtype=bool).any():
            if out is frame:
                out = frame.copy(deep=False)
            out[name] = series.mask(blank.to_numpy(dtype=bool))
    return out


def plan_columns(
    frame: pd.DataFrame,
    features: list[str],
    origin: Origin,
    *,
    drop: list[str],
    keep: list[str],
    dates: list[str],
    categorical: list[str],
    strict: bool,
) -> Plan:
    """Decide the kind of each feature column of ``frame`` (rules in the module docstring)."""
    plan = Plan()
    for name in features:
        series = frame[name]
        if name in drop:
            plan.left_out[name] = ("asked", "drop=")
        elif name in dates:
            fmt = None if is_datetime(series) else date_format(series, share=0.5)
            if fmt is None and not is_datetime(series):
                raise NonNumericError(
                    f"{origin}: column {shown(name)} is named in dates= but no date format reads its values (e.g. "
                    f"{shown(series.dropna().iloc[0]) if series.notna().any() else 'none'}); accepted formats are ISO "
                    "2024-03-05, 03/05/2024, 05/03/2024, 5 Mar 2024, March 5, 2024 and the like"
                )
            plan.kinds[name], plan.formats[name] = "date", fmt
        elif name in categorical:
            plan.kinds[name] = "categorical"
        elif not series.notna().any():
            if strict:
                raise MissingValueError(
                    f"{origin}: column {shown(name)} has no values (all {len(series)} are missing); remove the column"
                )
            plan.left_out[name] = ("empty", f"all {len(series)} missing")
        else:
            _plan_one(plan, series, name, origin, keep=name in keep, strict=strict)
    return plan


def _plan_one(plan: Plan, series: pd.Series, name: str, origin: Origin, *, keep: bool, strict: bool) -> None:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype) or (not strict and _is_boolean(series)):
        plan.kinds[name] = "boolean"
        return
    if is_datetime(series) or (
        not pd.api.types.is_numeric_dtype(series.dtype) and date_format(series) is not None
    ):
        if strict:
            raise NonNumericError(
                f"{origin}: column {shown(name)} holds dates (e.g. {shown(str(series.dropna().iloc[0]))}); pass "
                f"dates=[{name!r}] to expand them into numeric parts (year, month, ...), or convert them first"
            )
        plan.kinds[name], plan.formats[name] = "date", None if is_datetime(series) else date_format(series)
        return
    if pd.api.types.is_numeric_dtype(series.dtype):
        detail = None if keep else _index(series, name)
        if detail is not None:
            _identifier(plan, name, detail, origin, strict)
        else:
            plan.kinds[name] = "numeric"
        return
    if strict:
        kind = column_kind(series, name, origin)  # refuses a numeric column with a stray word, naming it
    else:
        present = series.dropna()
        numbers = pd.to_numeric(present.astype("str"), errors="coerce").notna()
        kind = "numeric" if numbers.sum() * 2 >= len(present) else column_kind(series, name, origin)
    if kind == "numeric":
        plan.kinds[name] = "numeric"
        return
    t = normalise(text_of(series))
    present_t = t[t != None]  # noqa: E711 (elementwise on an object array)
    distinct = len(set(present_t.tolist()))
    if not keep and len(present_t) >= ID_MIN_ROWS and distinct >= ID_SHARE * len(present_t):
        _identifier(plan, name, f"{distinct} distinct values in {len(present_t)} rows", origin, strict)
    else:
        plan.kinds[name] = "categorical"


def _identifier(plan: Plan, name: str, detail: str, origin: Origin, strict: bool) -> None:
    if strict:
        raise ColumnError(
            f"{origin}: column {shown(name)} looks like an identifier ({detail}); pass drop=[{name!r}] to leave "
            f"it out, or keep=[{name!r}] to use it"
        )
    plan.left_out[name] = ("identifier", detail)


def _is_boolean(series: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype):
        return False
    present = series.dropna()
    if len(present) == 0:
        return False
    if all(isinstance(v, (bool, np.bool_)) for v in present):
        return True
    values = {str(v).strip().casefold() for v in present.unique()}
    return values <= TRUE | FALSE and bool(values & TRUE) and bool(values & FALSE)


def _index(series: pd.Series, name: str) -> str | None:
    """``"values 1..n"`` when the column is an integer index named like one, else None."""
    if not _ID_NAME.search(name.strip()) or series.isna().any() or len(series) < 3:
        return None
    v = series.to_numpy(dtype=np.float64)
    lo = float(v.min())
    if lo not in (0.0, 1.0) or float(v.max()) != lo + len(v) - 1 or not np.all(v == np.round(v)):
        return None
    if len(np.unique(v)) != len(v):
        return None
    return f"values {int(lo)}..{int(lo) + len(v) - 1}, one per row"
