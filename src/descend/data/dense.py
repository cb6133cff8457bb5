"""Clean numeric tables from Arrow straight to split tensors, in one pass over the parsed blocks.

pyarrow parses a CSV into record batches of about a megabyte. When every feature is a float column without missing
values, :func:`~descend.data.prepare` needs no DataFrame: :func:`fill_splits` makes each batch row-major once
(``RecordBatch.to_tensor``, in C++), gathers its training, validation and test rows into their tensors while the
batch is in cache, and accumulates over the training rows the count :math:`m`, mean :math:`\\bar x`, sum of squared
deviations :math:`M_2 = \\sum_i (x_i - \\bar x)^2`, minimum and maximum of each column. Batches merge as Chan, Golub and
LeVeque's pairwise update does (for parts :math:`a, b` with :math:`\\delta = \\bar x_b - \\bar x_a`):

.. math:: \\bar x = \\bar x_a + \\delta \\frac{m_b}{m},\\quad M_2 = M_{2,a} + M_{2,b} + \\delta^2 \\frac{m_a m_b}{m}

so the standard deviation :math:`\\sqrt{M_2 / m}` is as accurate as NumPy's two passes. The tensors are then scaled
in place with the :class:`~descend.data.preprocess.Column` those statistics give, exactly as the general path scales.

Anything this pass does not handle returns None, and the table takes the general path, whose checks name the column,
row and value: a missing, NaN or infinite value anywhere, or a column constant over the training rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from descend.data.preprocess import Column

__all__ = ["Moments", "dense_columns", "fill_splits", "scale_in_place"]

_SCALE_ROWS = 1 << 14  # rows scaled at a time, so the second operation finds them in cache


def dense_columns(table: pa.Table, names: Sequence[str]) -> bool:
    """Whether the columns ``names`` of ``table`` are float32/float64 with no missing (null) values."""
    import pyarrow as pa

    return all(
        table.schema.field(n).type in (pa.float32(), pa.float64()) and table.column(n).null_count == 0
        for n in names
    )


@dataclass
class Moments:
    """Per-column count, mean, sum of squared deviations, minimum and maximum, merged part by part."""

    m: int
    mean: np.ndarray
    m2: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def empty(cls, width: int) -> Moments:
        return cls(0, np.zeros(width), np.zeros(width), np.full(width, np.inf), np.full(width, -np.inf))

    def add(self, part: np.ndarray) -> None:
        """Merge the rows of ``part`` (rows x columns)."""
        mb = len(part)
        if mb == 0:
            return
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN or inf shows in lo/hi; see finite()
            mean_b = part.sum(axis=0, dtype=np.float64) / mb
            d = part - mean_b
            m2_b = np.einsum("ij,ij->j", d, d)
            m = self.m + mb
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (mb / m)
            self.m2 = self.m2 + m2_b + delta * delta * (self.m * mb / m)
        self.m = m
        np.minimum(self.lo, part.min(axis=0), out=self.lo)
        np.maximum(self.hi, part.max(axis=0), out=self.hi)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.m)

    def finite(self) -> bool:
        # min and max carry a NaN through, so finite bounds mean every value was finite.
        return bool(np.isfinite(self.lo).all() and np.isfinite(self.hi).all())


def fill_splits(
    batches: list[pa.RecordBatch], splits: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], Moments] | None:
    """Row-major float32 ``(len(rows), columns)`` arrays of the rows in ``splits``, and the moments of ``splits[0]``.

    Each split is sorted row positions (as :func:`~descend.data.split.split_indices` gives); the first is the
    training split. ``batches`` is emptied as it is read, so each batch's memory is free for the tensors once its
    rows are in them. Returns None if any selected value is NaN or infinite.
    """
    width = batches[0].num_columns
    outs = [np.empty((len(rows), width), dtype=np.float32) for rows in splits]
    taken = [0] * len(splits)
    moments = Moments.empty(width)
    start = 0
    batches.reverse()
    while batches:
        batch = batches.pop()
        if batch.num_rows == 0:
            continue
        block = np.asarray(batch.to_tensor(row_major=True))
        del batch
        stop = start + len(block)
        for s, (out, rows) in enumerate(zip(outs, splits)):
            k0, k1 = taken[s], int(np.searchsorted(rows, stop))
            if k1 > k0:
                at = rows[k0:k1] - start
                if block.dtype == np.float32:
                    part = np.take(block, at, axis=0, out=out[k0:k1])
                else:  # statistics from the float64 values, as the general path computes them
                    part = np.take(block, at, axis=0)
                    out[k0:k1] = part
                if s == 0:
                    moments.add(part)
            taken[s] = k1
        start = stop
    if not moments.finite() or not all(np.isfinite(out).all() for out in outs[1:]):
        return None
    return outs, moments


def scale_in_place(outs: Sequence[np.ndarray], columns: Sequence[Column]) -> None:
    """``(x - shift) / scale`` per column, in float32 as :mod:`descend.data.encode` computes it."""
    shift = np.array([c.shift for c in columns], dtype=np.float32)
    scale = np.array([c.scale for c in columns], dtype=np.float32)
    for out in outs:
        for start in range(0, len(out), _SCALE_ROWS):
            block = out[start : start + _SCALE_ROWS]
            block -= shift
            block /= scale
