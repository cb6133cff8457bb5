"""One input column as learned from the training rows, and how it is learned.

For a numeric column with training values :math:`x_1..x_m`, the feature is :math:`(x - a) / b` where

- ``scale="standard"``: :math:`a = \\bar x`, :math:`b = \\sqrt{\\tfrac1m \\sum_i (x_i - \\bar x)^2}` (the population
  standard deviation, as scikit-learn's ``StandardScaler``);
- ``scale="minmax"``: :math:`a = \\min_i x_i`, :math:`b = \\max_i x_i - \\min_i x_i`, so training values land in [0, 1];
- ``scale="none"``: :math:`a = 0`, :math:`b = 1`.

A gap is filled with the training median (``impute="median"``) or mean before scaling, and a column with gaps in
training gains a 0/1 "was missing" feature ``name.missing`` (as scikit-learn's ``SimpleImputer(add_indicator=True)``).
A boolean column is 0/1, unscaled. A date column is its parts (:mod:`descend.data.dates`), each filled and scaled
like a numeric column; parts constant over the training rows are left out. A categorical column becomes one 0/1
column per category (:mod:`descend.data.categories`). A column constant over the training rows carries no
information: it is dropped (``constant="drop"``) unless named in ``keep``, or refused (``constant="error"``).

Example:
    >>> Column("age", "numeric", fill=28.0, indicator=True).feature_names
    ['age', 'age.missing']
    >>> Column("when", "date", parts=["year", "month"]).width
    2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from descend.data.categories import fit_categories, normalise, text_of
from descend.data.columns import numeric_values
from descend.data.dates import PARTS, date_parts, has_time, parse_dates
from descend.data.encode import boolean_values
from descend.data.errors import ConstantColumnError, MissingValueError, shown
from descend.data.read import Origin

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Column", "Fitting", "constant_column", "fit_column"]


@dataclass
class Column:
    """One input column as learned from training.

    ``kind`` is ``numeric`` (``fill``, ``shift``, ``scale``), ``boolean`` (0/1, ``fill``), ``date`` (``parts`` with
    ``fills``, ``shifts``, ``scales``, read with ``format``), ``categorical`` (``categories``, ``aliases`` for case
    slips) or ``dropped`` (``reason``). ``indicator`` adds a 0/1 "was missing" feature.
    """

    name: str
    kind: str
    fill: float | str | None = None
    shift: float = 0.0
    scale: float = 1.0
    categories: list[str] | None = None
    indicator: bool = False
    parts: list[str] | None = None
    fills: list[float | None] | None = None
    shifts: list[float] | None = None
    scales: list[float] | None = None
    format: str | None = None
    aliases: dict[str, str] | None = None
    reason: str | None = None
    gaps: int | None = None  # training rows with a gap (reported, not used)
    pooled: list[str] | None = None  # categories pooled into "(infrequent)": still known, never "unseen"

    @property
    def width(self) -> int:
        if self.kind == "dropped":
            return 0
        if self.kind == "categorical":
            return len(self.categories or [])
        return (len(self.parts or []) if self.kind == "date" else 1) + int(self.indicator)

    @property
    def feature_names(self) -> list[str]:
        if self.kind == "categorical":
            return [f"{self.name}={k}" for k in self.categories or []]
        if self.kind == "dropped":
            return []
        names = [f"{self.name}.{p}" for p in self.parts or []] if self.kind == "date" else [self.name]
        return names + ([f"{self.name}.missing"] if self.indicator else [])

    def stats(self) -> list[tuple[Any, float, float]]:
        """(fill, shift, scale) of each value feature (a date has one per part)."""
        if self.kind == "date":
            fills = self.fills or [None] * len(self.parts or [])
            return list(zip(fills, self.shifts or [], self.scales or []))
        return [(self.fill, self.shift, self.scale)]


@dataclass
class Fitting:
    """The options a column is fitted under."""

    scale: str
    impute: str
    min_frequency: int
    constant: str
    strict: bool


def fit_column(
    series: pd.Series, name: str, use: str, rows: np.ndarray, origin: Origin, how: Fitting, *,
    keep: bool = False, fmt: str | None = None,
) -> Column:
    """Learn one column of kind ``use`` from the training ``rows`` of ``series``."""
    if use == "categorical":
        t = text_of(series) if how.strict else normalise(text_of(series))
        learned = fit_categories(t[rows], how.min_frequency, strict=how.strict)
        if learned.gaps and (how.strict or how.impute == "error"):
            i = int(rows[np.flatnonzero(t[rows] == None)[0]])  # noqa: E711 (elementwise on an object array)
            raise MissingValueError(
                f"{origin}: column {shown(name)}, {origin.at(i)}: value is missing; fill it in, or leave strict "
                "off with impute='median' (a gap is then a category of its own)"
            )
        if not learned.categories:
            raise MissingValueError(f"{origin}: column {shown(name)} has no values in the training rows")
        col = Column(name, "categorical", categories=learned.categories, aliases=learned.aliases or None,
                     gaps=learned.gaps or None, pooled=learned.pooled or None)
        if len(learned.categories) == 1 and not keep:
            return constant_column(col, origin, learned.categories[0], how)
        return col
    if use == "date":
        dates = parse_dates(series, fmt)
        parts = [*PARTS[:-1], "hour", PARTS[-1]] if has_time(dates.iloc[rows]) else list(PARTS)
        values = [v[rows] for v in date_parts(dates, parts)]
    elif use == "boolean":
        values = [boolean_values(series)[rows]]
    else:
        allow = not how.strict and how.impute != "error"
        values = [numeric_values(series, name, origin, allow_missing=allow, rows=rows)[rows]]
    gaps = np.isnan(values[0])
    if gaps.any() and not gaps.all() and use != "numeric" and (how.strict or how.impute == "error"):
        i = int(rows[np.flatnonzero(gaps)[0]])
        raise MissingValueError(
            f"{origin}: column {shown(name)}, {origin.at(i)}: value is missing or not a {use} value "
            f"({shown(series.iloc[i])}); fill it in, or choose impute='median', 'mean' or 'drop'"
        )
    if gaps.all():
        if how.strict:
            raise MissingValueError(f"{origin}: column {shown(name)} has no values in the training rows")
        return Column(name, "dropped", reason="empty")
    stats = [_stats(v, how, boolean=use == "boolean") for v in values]
    indicator = bool(gaps.any()) and how.impute in ("median", "mean")
    if use == "date":
        live = [j for j, s in enumerate(stats) if s is not None]
        if not live:
            return constant_column(Column(name, "date"), origin, str(dates.iloc[rows].dropna().iloc[0]), how)
        return Column(
            name, "date", parts=[parts[j] for j in live], fills=[stats[j][0] for j in live],  # type: ignore[index]
            shifts=[stats[j][1] for j in live], scales=[stats[j][2] for j in live],  # type: ignore[index]
            format=fmt, indicator=indicator, gaps=int(gaps.sum()) or None,
        )  # fmt: skip
    s = stats[0]
    if s is None:
        present = values[0][~gaps]
        if not keep:
            return constant_column(Column(name, use), origin, float(present[0]), how)
        s = (_fill(values[0], how), float(present[0]) if use == "numeric" else 0.0, 1.0)
    return Column(name, use, fill=s[0], shift=s[1], scale=s[2], indicator=indicator, gaps=int(gaps.sum()) or None)


def _fill(v: np.ndarray, how: Fitting) -> float | None:
    """The value a gap takes: the training median (``impute`` median or drop) or mean; None in strict mode."""
    if how.strict or how.impute == "error":
        return None
    return float(np.nanmean(v, dtype=np.float64) if how.impute == "mean" else np.nanmedian(v.astype(np.float64)))


def _stats(v: np.ndarray, how: Fitting, *, boolean: bool = False) -> tuple[float | None, float, float] | None:
    """(fill, shift, scale) of one value feature, or None when its present values are all the same."""
    present = v[~np.isnan(v)]
    lo, hi = float(present.min()), float(present.max())
    if lo == hi:
        return None
    fill = _fill(v, how)
    if boolean or how.scale == "none":
        return fill, 0.0, 1.0
    if how.scale == "minmax":
        return fill, lo, hi - lo
    filled = np.where(np.isnan(v), fill if fill is not None else 0.0, v)
    return fill, float(np.mean(filled, dtype=np.float64)), float(np.std(filled, dtype=np.float64))


def constant_column(col: Column, origin: Origin, value: Any, how: Fitting) -> Column:
    if how.constant == "error":
        raise ConstantColumnError(
            f"{origin}: column {shown(col.name)} has the same value ({shown(value)}) in every training row, so it "
            "cannot inform the model; remove it, or pass constant='drop'"
        )
    return Column(col.name, "dropped", reason="constant")
