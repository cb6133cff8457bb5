"""Date and datetime columns: recognise the format, then expand each date into numeric parts.

A text column is a date column when one format reads at least :data:`DATE_SHARE` of its values. The formats are
tried in the order of :data:`FORMATS`: ISO 8601 first (``2024-03-05``, ``2024-03-05T10:30``), then month-first
``03/05/2024`` before day-first ``05/03/2024`` (a column that both read, with no day above 12, is read month-first,
as pandas reads it), then written months (``5 Mar 2024``, ``March 5, 2024``). Columns already of a datetime type
(Parquet timestamps, pandas datetimes, Arrow dates) need no format.

Each date becomes :data:`PARTS` (``hour`` too when some training value has a time of day): ``year``, ``month``
(1-12), ``weekday`` (0 = Monday), ``yearday`` (1-366) and ``days`` (days since 1970-01-01, fractional with a time),
scaled like numeric columns. No part is one-hot: a date seen once is still a point on a line.

Example:
    >>> import pandas as pd
    >>> [date_format(pd.Series(v)) for v in (["2024-03-05"], ["03/05/2024", "12/31/2024"], ["5 Mar 2024"], ["red"])]
    ['ISO8601', '%m/%d/%Y', '%d %b %Y', None]
    >>> [a.tolist() for a in date_parts(parse_dates(pd.Series(["03/05/2024"]), "%m/%d/%Y"), ["year", "month", "weekday"])]
    [[2024.0], [3.0], [1.0]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DATE_SHARE", "FORMATS", "PARTS", "date_format", "date_parts", "has_time", "is_datetime", "parse_dates"]

FORMATS = (
    "ISO8601",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d-%b-%Y",
)
#: Share of a column's present values one format must read for the column to be taken as dates.
DATE_SHARE = 0.9
PARTS = ("year", "month", "weekday", "yearday", "days")
_SAMPLE = 200  # distinct values tried per format before the whole column is parsed


def is_datetime(series: pd.Series) -> bool:
    """Whether the column already holds dates or datetimes (a datetime dtype, or Python ``date`` objects)."""
    import datetime

    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return True
    if series.dtype != object:
        return False
    present = series.dropna()
    return len(present) > 0 and all(isinstance(v, datetime.date) for v in present.iloc[:_SAMPLE])


def date_format(series: pd.Series, *, share: float = DATE_SHARE) -> str | None:
    """The first format of :data:`FORMATS` that reads at least ``share`` of the column's present values (checked
    on up to 200 distinct values, then on the whole column), or None."""
    import pandas as pd

    present = series.dropna()
    if len(present) == 0:
        return None
    text = present.astype("str").str.strip()
    if not text.str.contains(r"\d", regex=True).all() or pd.to_numeric(text, errors="coerce").notna().all():
        return None  # dates hold digits, and plain numbers are not dates
    sample = pd.Series(text.unique()[:_SAMPLE])
    for fmt in FORMATS:
        sample_share = pd.to_datetime(sample, format=fmt, errors="coerce").notna().mean()
        if sample_share >= share and pd.to_datetime(text, format=fmt, errors="coerce").notna().mean() >= share:
            return fmt
    return None


def parse_dates(series: pd.Series, fmt: str | None) -> pd.Series:
    """The column as datetime64 (timezone dropped, in UTC); values the format cannot read become NaT."""
    import pandas as pd

    if is_datetime(series) or fmt is None:
        out = pd.to_datetime(series, errors="coerce")
    else:
        out = pd.to_datetime(series.astype("str").str.strip().where(series.notna()), format=fmt, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def has_time(dates: pd.Series) -> bool:
    """Whether some date carries a time of day (then ``hour`` is a part too)."""
    present = dates.dropna()
    return bool(len(present)) and bool((present != present.dt.normalize()).any())


def date_parts(dates: pd.Series, parts: list[str]) -> list[np.ndarray]:
    """One float64 array per part, NaN where the date is missing."""
    d = dates.dt
    columns = {
        "year": lambda: d.year,
        "month": lambda: d.month,
        "weekday": lambda: d.day_of_week,
        "yearday": lambda: d.day_of_year,
        "hour": lambda: d.hour + d.minute / 60.0,
        "days": lambda: (dates - np.datetime64("1970-01-01")).dt.total_seconds() / 86400.0,
    }
    return [columns[p]().to_numpy(dtype=np.float64, na_value=np.nan) for p in parts]
