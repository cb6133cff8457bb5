"""Checks on single columns: is it numeric or categorical, and are its values usable.

Each check looks at one column of a DataFrame and either returns its values as a NumPy array or raises an error
naming the table, the column, the first offending row (as :class:`~descend.data.read.Origin` counts it) and the
value. The checks are vectorised: a clean column of a million rows costs one pass of ``np.isfinite``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from descend.data.errors import ColumnTypeError, MissingValueError, NonFiniteError, NonNumericError, shown
from descend.data.read import Origin, first_non_number

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Kind", "column_kind", "numeric_values", "text_values"]

Kind = Literal["numeric", "categorical"]


def column_kind(series: pd.Series, name: str, origin: Origin) -> Kind:
    """``numeric`` for number and boolean columns, ``categorical`` for text.

    A text column in which at least half the values are numbers is taken to be a numeric column with a typo, and
    the first value that is not a number is reported; a column of dates is refused (convert dates to numbers).
    """
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise NonNumericError(
            f"{origin}: column {shown(name)} holds dates or durations; convert them to numbers (e.g. days since a "
            "start date) before training"
        )
    present = series.dropna()
    _check_scalars(series, present, name, origin)
    if len(present):
        numbers = pd.to_numeric(present.astype("str"), errors="coerce").notna().to_numpy()
        if numbers.sum() * 2 >= len(present):
            bad = first_non_number(series.astype("str").where(series.notna()))
            if bad is not None:
                raise NonNumericError(
                    f"{origin}: column {shown(name)}, {origin.at(bad)}: {shown(series.iloc[bad])} is not a number, and "
                    f"{int(numbers.sum())} of the column's {len(present)} values are numbers; fix the value, or "
                    "mark it missing (empty or NA)"
                )
    return "categorical"


def _check_scalars(series: pd.Series, present: pd.Series, name: str, origin: Origin) -> None:
    """Refuse a column of lists, dicts or arrays (a Parquet list column, a DataFrame cell holding a list): as text
    each would be one category, which is never what was meant."""
    import pandas as pd

    if pd.api.types.infer_dtype(present, skipna=True) in ("string", "empty", "boolean", "categorical"):
        return  # the common case, decided in one C pass
    nested = (list, tuple, dict, set, np.ndarray)
    for i, v in enumerate(present.to_numpy()):
        if isinstance(v, nested):
            row = int(np.flatnonzero(series.notna().to_numpy())[i])
            raise ColumnTypeError(
                f"{origin}: column {shown(name)}, {origin.at(row)}: holds a {type(v).__name__} ({shown(v)}); "
                "a column holds numbers, text or booleans: flatten it first"
            )


def numeric_values(
    series: pd.Series,
    name: str,
    origin: Origin,
    *,
    allow_missing: bool,
    role: str = "column",
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """The values of the whole column as a float array (a view when it can be one), after checking ``rows``.

    Only the given rows (all, by default) are checked. Infinite values are always an error. Missing values (NaN,
    NA) are an error unless ``allow_missing``; the message says how to choose an imputation. Rows are reported by
    their position in the whole table.
    """
    import pandas as pd

    if series.dtype.kind == "f" and isinstance(series.dtype, np.dtype):
        v = series.to_numpy()
    elif pd.api.types.is_numeric_dtype(series.dtype):
        v = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        v = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isfinite(v).all():  # one fast pass over a clean column; the rest runs only on bad data
        return v
    _check(v if rows is None else v[rows], name, origin, allow_missing, role, rows)
    return v


def _check(
    v: np.ndarray, name: str, origin: Origin, allow_missing: bool, role: str, rows: np.ndarray | None
) -> None:
    def at(i: int) -> str:
        return origin.at(int(rows[i]) if rows is not None else i)

    inf = np.flatnonzero(np.isinf(v))
    if len(inf):
        i = int(inf[0])
        raise NonFiniteError(
            f"{origin}: {role} {shown(name)}, {at(i)}: value {float(v[i])} is infinite "
            f"({len(inf)} infinite value{'s' if len(inf) > 1 else ''} in the column); replace with finite numbers"
        )
    missing = np.flatnonzero(np.isnan(v))
    if len(missing) == 0:
        return
    if len(missing) == len(v):
        raise MissingValueError(f"{origin}: {role} {shown(name)} has no values (all {len(v)} are missing)")
    if not allow_missing:
        i = int(missing[0])
        raise MissingValueError(
            f"{origin}: {role} {shown(name)}, {at(i)}: value is missing ({len(missing)} missing in the "
            "column); fill it in, or choose impute='median' or 'mean' (strict off) or 'drop' (drop the rows)"
        )


def text_values(series: pd.Series) -> np.ndarray:
    """A categorical column as an object array of ``str`` with ``None`` where missing."""
    present = series.notna().to_numpy()
    out = np.full(len(series), None, dtype=object)
    out[present] = series[present].astype("str").to_numpy(dtype=object)
    return out
