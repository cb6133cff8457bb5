"""Fill row-major float32 feature tensors from the columns of a table, fast and without a second copy of it.

A table is columnar and a feature tensor row-major. Writing one column at a time straight into the tensor strides
one row per value and is several times slower than memory bandwidth on a large table, so columns are taken in
groups of about :data:`GROUP_WIDTH` features: for each block of rows, the group's values are gathered (and scaled)
into a small column-major buffer that stays in cache, then transposed into place, one cache line per row.

With ``release=True`` (a table read from a file, owned by :func:`prepare`) each group's source columns are deleted
from the table once every split has taken its rows, so the table shrinks as the tensors grow: peak memory stays
near the size of the tensors plus one table, not two tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.data.categories import INFREQUENT, MISSING, normalise, text_of
from descend.data.columns import numeric_values
from descend.data.dates import date_parts, parse_dates
from descend.data.errors import CategoryError, MissingValueError, shown
from descend.data.kinds import FALSE, TRUE
from descend.data.read import Origin, shown_names

if TYPE_CHECKING:
    import pandas as pd

    from descend.data.preprocess import Column

__all__ = ["GROUP_WIDTH", "Notes", "boolean_values", "category_codes", "encode_splits", "value_columns"]

#: What encoding met in one split, per column: ``"gaps"`` filled, ``"unseen"`` categories (with an example),
#: ``"unread"`` values that were not numbers, booleans or dates (read as gaps).
Notes = dict[str, dict[str, Any]]

GROUP_WIDTH = 16  # features per group: 64 bytes of float32, one cache line per row written
_BLOCK_VALUES = 1 << 18  # values per buffer: 1 MiB of float32, about an L2 cache


def encode_splits(
    frame: pd.DataFrame,
    columns: Sequence[Column],
    origin: Origin,
    splits: Sequence[np.ndarray | None],
    unseen: str,
    *,
    strict: bool = False,
    release: bool = False,
    notes: Sequence[Notes] | None = None,
) -> list[torch.Tensor]:
    """One float32 tensor ``(len(rows), width)`` per entry of ``splits`` (``None`` means every row).

    Values are checked (missing, infinite, unseen categories) on the rows each split takes; what was filled or
    pooled is counted in ``notes`` (one dict per split) when given.
    """
    live = [c for c in columns if c.kind != "dropped"]
    width = sum(c.width for c in live)
    outs = [np.empty((len(frame) if r is None else len(r), width), dtype=np.float32) for r in splits]
    if release:
        for c in columns:
            if c.kind == "dropped" and c.name in frame.columns:
                del frame[c.name]
    j = 0
    for group in _groups(live):
        w = sum(c.width for c in group)
        values = {c.name: value_columns(frame[c.name], c, origin) for c in group if c.kind != "categorical"}
        for k, (out, rows) in enumerate(zip(outs, splits)):
            note = notes[k] if notes is not None else None
            sources = [
                category_codes(frame[c.name], c, origin, rows, unseen, strict=strict, notes=note)
                if c.kind == "categorical"
                else _checked(values[c.name], frame[c.name], c, origin, rows, note)
                for c in group
            ]
            _fill(out[:, j : j + w], group, sources, rows)
        if release:
            for c in group:
                del frame[c.name]
        j += w
    return [torch.from_numpy(o) for o in outs]


def value_columns(series: pd.Series, c: Column, origin: Origin) -> list[np.ndarray]:
    """The raw values of a numeric, boolean or date column over every row (NaN for a gap), one array per feature
    before the "was missing" indicator."""
    if c.kind == "numeric":
        return [numeric_values(series, c.name, origin, allow_missing=True, rows=np.arange(0))]
    if c.kind == "boolean":
        return [boolean_values(series)]
    return date_parts(parse_dates(series, c.format), list(c.parts or []))


def boolean_values(series: pd.Series) -> np.ndarray:
    """1.0 for true (``True``, ``yes``, ``y``, ``t``, 1), 0.0 for false, NaN for a gap or another value."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        v = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where((v == 0) | (v == 1), v, np.nan)
    words = series.map(lambda x: str(x).strip().casefold(), na_action="ignore")
    return np.where(words.isin(TRUE), 1.0, np.where(words.isin(FALSE), 0.0, np.nan))


def _checked(
    values: list[np.ndarray], series: pd.Series, c: Column, origin: Origin, rows: np.ndarray | None,
    notes: Notes | None,
) -> list[np.ndarray]:
    """``values``, after refusing what the column cannot take on ``rows``: infinities always, gaps without a fill
    (strict), and values that are not numbers where the column would read them as gaps (strict)."""
    first = values[0] if rows is None else values[0][rows]
    gaps = np.isnan(first)
    if c.kind == "numeric" and (np.isinf(first).any() or (gaps.any() and c.fill is None)):
        numeric_values(series, c.name, origin, allow_missing=False, rows=rows)  # raises, naming the row
    if not gaps.any():
        return values
    present = series.notna().to_numpy()
    unread = gaps & (present if rows is None else present[rows])
    if c.fill is None and c.fills is None:
        i = int(np.flatnonzero(gaps)[0])
        at = int(rows[i]) if rows is not None else i
        what = f"{shown(series.iloc[at])} is not a {c.kind} value" if unread[i] else "value is missing"
        raise MissingValueError(
            f"{origin}: column {shown(c.name)}, {origin.at(at)}: {what}; fill it in, or leave strict off (gaps are "
            "then filled with the training median)"
        )
    if notes is not None:
        note = notes.setdefault(c.name, {})
        note["gaps"] = note.get("gaps", 0) + int(gaps.sum() - unread.sum())
        if unread.any():
            note["unread"] = note.get("unread", 0) + int(unread.sum())
            i = int(np.flatnonzero(unread)[0])
            note.setdefault("example", series.iloc[int(rows[i]) if rows is not None else i])
    return values


def _groups(live: Sequence[Column]) -> list[list[Column]]:
    groups: list[list[Column]] = [[]]
    used = 0
    for c in live:
        if groups[-1] and used + c.width > GROUP_WIDTH:
            groups.append([])
            used = 0
        groups[-1].append(c)
        used += c.width
    return [g for g in groups if g]


def _fill(
    out: np.ndarray, group: Sequence[Column], sources: Sequence[Any], rows: np.ndarray | None
) -> None:
    m, w = out.shape
    block = max(1, min(m, _BLOCK_VALUES // max(w, 1)))
    buf = np.empty((w, block), dtype=np.float32)
    for start in range(0, m, block):
        stop = min(start + block, m)
        at = rows[start:stop] if rows is not None else None
        b = buf[:, : stop - start]
        j = 0
        for c, src in zip(group, sources):
            if c.kind == "categorical":  # src holds the category index of each selected row, -1 for all zeros
                b[j : j + c.width] = 0.0
                codes = src[start:stop]
                ok = np.flatnonzero(codes >= 0)
                b[j + codes[ok], ok] = 1.0
                j += c.width
                continue
            for k, (values, (fill, shift, scale)) in enumerate(zip(src, c.stats())):
                row = b[j + k]
                if at is None:
                    row[:] = values[start:stop]
                elif values.dtype == np.float32:
                    np.take(values, at, out=row)
                else:
                    row[:] = values[at]
                if c.indicator and k == 0:
                    b[j + len(src)] = np.isnan(row)
                if fill is not None:
                    np.copyto(row, np.float32(fill), where=np.isnan(row))
                row -= np.float32(shift)
                row /= np.float32(scale)
            j += c.width
        out[start:stop] = b.T


def category_codes(
    series: pd.Series,
    c: Column,
    origin: Origin,
    rows: np.ndarray | None,
    unseen: str,
    *,
    strict: bool = False,
    notes: Notes | None = None,
) -> np.ndarray:
    """Category index of each selected row; -1 for all zeros (``unseen="ignore"``, or no infrequent pool).

    Outside strict mode text is trimmed, case slips map to their category (see :mod:`descend.data.categories`),
    a gap is the ``(missing)`` category, and anything unknown goes to the ``(infrequent)`` pool with
    ``unseen="infrequent"``.
    """
    import pandas as pd

    t = text_of(series) if strict else normalise(text_of(series))
    at = np.arange(len(t)) if rows is None else rows
    t = t if rows is None else t[rows]
    cats = list(c.categories or [])
    missing = t == None  # noqa: E711 (elementwise on an object array)
    if missing.any():
        if c.fill is not None:  # a preprocessor saved before gaps were a category: its most frequent one
            t = np.where(missing, c.fill, t)
        elif MISSING in cats:
            t = np.where(missing, MISSING, t)
        elif strict or unseen == "error":
            i = int(at[np.flatnonzero(missing)[0]])
            raise MissingValueError(
                f"{origin}: column {shown(c.name)}, {origin.at(i)}: value is missing; fill it in, or leave strict "
                "off (a gap is then a category of its own)"
            )
    if c.aliases:
        t = np.array([c.aliases.get(v, v) if v is not None else None for v in t], dtype=object)
    codes = pd.Index(cats).get_indexer(t)
    bad = np.flatnonzero(codes < 0)
    if len(bad) and not strict:
        folded: dict[str, int] = {}
        for j, k in enumerate(cats):  # a spelling shared by two categories in case ("A", "a") maps to neither
            folded[k.casefold()] = -1 if k.casefold() in folded else j
        codes[bad] = [folded.get(v.casefold(), -1) if v is not None else -1 for v in t[bad]]
        bad = np.flatnonzero(codes < 0)
        if len(bad) and INFREQUENT in cats and c.pooled:  # rare in training: pooled, whatever ``unseen`` says
            pooled = set(c.pooled)
            known = np.array([(MISSING if v is None else v) in pooled for v in t[bad]], dtype=bool)
            codes[bad[known]] = cats.index(INFREQUENT)
            bad = bad[~known]
    if len(bad) and (unseen == "error" or strict):
        i = int(bad[0])
        raise CategoryError(
            f"{origin}: column {shown(c.name)}, {origin.at(int(at[i]))}: category {shown(t[i])} was not seen in "
            f"training (known: {shown_names(cats)}); pass unseen='infrequent' to pool it with the rare categories "
            "or unseen='ignore' to encode it as all zeros"
        )
    if len(bad):
        if unseen == "infrequent" and INFREQUENT in cats:
            codes[bad] = cats.index(INFREQUENT)
        if notes is not None:
            note = notes.setdefault(c.name, {})
            note["unseen"] = note.get("unseen", 0) + len(bad)
            note.setdefault("example", t[bad[0]])
            note["to"] = INFREQUENT if unseen == "infrequent" and INFREQUENT in cats else "all zeros"
    return codes
