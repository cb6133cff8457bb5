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
from typing import TYPE_CHECKING

import numpy as np
import torch

from descend.data.columns import numeric_values, text_values
from descend.data.errors import CategoryError, MissingValueError, shown
from descend.data.read import Origin, shown_names

if TYPE_CHECKING:
    import pandas as pd

    from descend.data.preprocess import Column

__all__ = ["GROUP_WIDTH", "category_codes", "encode_splits"]

GROUP_WIDTH = 16  # features per group: 64 bytes of float32, one cache line per row written
_BLOCK_VALUES = 1 << 18  # values per buffer: 1 MiB of float32, about an L2 cache


def encode_splits(
    frame: pd.DataFrame,
    columns: Sequence[Column],
    origin: Origin,
    splits: Sequence[np.ndarray | None],
    unseen: str,
    *,
    release: bool = False,
) -> list[torch.Tensor]:
    """One float32 tensor ``(len(rows), width)`` per entry of ``splits`` (``None`` means every row).

    Values are checked (missing, infinite, unseen categories) on the rows each split takes.
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
        for out, rows in zip(outs, splits):
            sources = [_source(frame[c.name], c, origin, rows, unseen) for c in group]
            _fill(out[:, j : j + w], group, sources, rows)
        if release:
            for c in group:
                del frame[c.name]
        j += w
    return [torch.from_numpy(o) for o in outs]


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


def _source(series: pd.Series, c: Column, origin: Origin, rows: np.ndarray | None, unseen: str) -> np.ndarray:
    if c.kind == "numeric":
        return numeric_values(series, c.name, origin, allow_missing=c.fill is not None, rows=rows)
    return category_codes(series, c, origin, rows, unseen)


def _fill(
    out: np.ndarray, group: Sequence[Column], sources: Sequence[np.ndarray], rows: np.ndarray | None
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
            if c.kind == "numeric":
                row = b[j]
                if at is None:
                    row[:] = src[start:stop]
                elif src.dtype == np.float32:
                    np.take(src, at, out=row)
                else:
                    row[:] = src[at]
                if c.fill is not None:
                    np.copyto(row, np.float32(c.fill), where=np.isnan(row))
                row -= np.float32(c.shift)
                row /= np.float32(c.scale)
            else:  # src holds the category index of each selected row, -1 for all zeros
                b[j : j + c.width] = 0.0
                codes = src[start:stop]
                ok = np.flatnonzero(codes >= 0)
                b[j + codes[ok], ok] = 1.0
            j += c.width
        out[start:stop] = b.T


def category_codes(
    series: pd.Series, c: Column, origin: Origin, rows: np.ndarray | None, unseen: str
) -> np.ndarray:
    """Category index of each selected row; -1 for an unseen category when ``unseen="ignore"``."""
    import pandas as pd

    t = text_values(series)
    at = np.arange(len(t)) if rows is None else rows
    t = t if rows is None else t[rows]
    missing = t == None  # noqa: E711 (elementwise on an object array)
    if missing.any():
        if c.fill is None:
            i = int(at[np.flatnonzero(missing)[0]])
            raise MissingValueError(
                f"{origin}: column {shown(c.name)}, {origin.at(i)}: value is missing; fill it in, or prepare with "
                "impute='mean' or 'median' (the most frequent category is used)"
            )
        t = np.where(missing, c.fill, t)
    codes = pd.Index(c.categories).get_indexer(t)
    bad = np.flatnonzero(codes < 0)
    if len(bad) and unseen == "error":
        i = int(bad[0])
        raise CategoryError(
            f"{origin}: column {shown(c.name)}, {origin.at(int(at[i]))}: category {shown(t[i])} was not seen in "
            f"training (known: {shown_names(c.categories or [])}); pass unseen='ignore' to encode it as all zeros"
        )
    return codes
