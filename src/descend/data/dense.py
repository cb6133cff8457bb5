"""Clean numeric tables from Arrow straight to split tensors, in one pass over the parsed blocks.

pyarrow parses a CSV into record batches of about a megabyte. When every feature is a float column without missing
values, :func:`~descend.data.prepare` needs no DataFrame: :func:`fill_splits` makes each batch one array
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

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from descend.data.preprocess import Column

__all__ = ["BATCH_VALUES", "Moments", "dense_columns", "fill_splits", "medians", "scale_in_place"]

T = TypeVar("T")

#: Values per batch at most (a Parquet row group can be the whole table): 1 MiB of float64, a block kept in cache.
BATCH_VALUES = 1 << 17
_SCALE_ROWS = 1 << 14  # rows scaled (or transposed) at a time, so the second operation finds them in cache
_RELEASE_EVERY = 8  # batches between hand-backs of freed pages: 8 MiB of a CSV's blocks


def dense_columns(table: pa.Table, names: Sequence[str]) -> bool:
    """Whether the columns ``names`` of ``table`` are float32/float64 with no missing (null) values."""
    import pyarrow as pa

    return all(
        table.schema.field(n).type in (pa.float32(), pa.float64()) and table.column(n).null_count == 0
        for n in names
    )


@dataclass
class Moments:
    """Per-column count, mean, sum of squared deviations, minimum and maximum, merged part by part.

    Example:
        >>> x = np.array([[1.0, 10.0], [2.0, 10.0], [4.0, 40.0], [9.0, 20.0]])
        >>> m = Moments.of(x[:1])
        >>> m.merge(Moments.of(x[1:]))
        >>> m.mean.tolist(), bool(np.allclose(m.std, x.std(axis=0))), m.lo.tolist(), m.hi.tolist()
        ([4.0, 20.0], True, [1.0, 10.0], [9.0, 40.0])
    """

    m: int
    mean: np.ndarray
    m2: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def empty(cls, width: int) -> Moments:
        return cls(0, np.zeros(width), np.zeros(width), np.full(width, np.inf), np.full(width, -np.inf))

    @classmethod
    def of(cls, part: np.ndarray) -> Moments:
        """The moments of the rows of ``part`` (rows x columns, at least one row)."""
        # Reduced along contiguous columns (one transposed copy): down the short rows of a row-major block NumPy's
        # reductions run at a fraction of the speed (2.5x for the five figures together), with the same pairwise sums.
        columns = np.ascontiguousarray(part.T)
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN or inf shows in lo/hi; see finite()
            d = columns.astype(np.float64)
            mean = d.sum(axis=1) / len(part)
            d -= mean[:, None]
            m2 = np.einsum("ij,ij->i", d, d)
        return cls(len(part), mean, m2, columns.min(axis=1).astype(np.float64), columns.max(axis=1).astype(np.float64))

    def merge(self, other: Moments) -> None:
        """Add the rows ``other`` describes."""
        if other.m == 0:
            return
        m = self.m + other.m
        with np.errstate(invalid="ignore", over="ignore"):
            delta = other.mean - self.mean
            self.mean = self.mean + delta * (other.m / m)
            self.m2 = self.m2 + other.m2 + delta * delta * (self.m * other.m / m)
        self.m = m
        np.minimum(self.lo, other.lo, out=self.lo)
        np.maximum(self.hi, other.hi, out=self.hi)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.m)

    def finite(self) -> bool:
        # min and max carry a NaN through, so finite bounds mean every value was finite.
        return bool(np.isfinite(self.lo).all() and np.isfinite(self.hi).all())


def fill_splits(
    batches: list[Any], splits: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], Moments] | None:
    """Row-major float32 ``(len(rows), columns)`` arrays of the rows in ``splits``, and the moments of ``splits[0]``.

    A batch is an Arrow record batch of float columns, or a row-major float array (a block of rows of an array).

    Each split is sorted row positions (as :func:`~descend.data.split.split_indices` gives); the first is the
    training split. ``batches`` is emptied as it is read, so each batch's memory is free for the tensors once its
    rows are in them, and every few batches the pages pyarrow's default pool keeps after a free go back to the
    system (the peak is then about the parsed table, not the table and the tensors). Consecutive runs of batches
    fill in parallel (as many threads as pyarrow parses with) and their moments merge in table order. Returns None
    if any selected value is NaN or infinite.
    """
    import pyarrow as pa

    arrow = not isinstance(batches[0], np.ndarray)  # an array's blocks are views: no pages of pyarrow's to free
    width = batches[0].num_columns if arrow else batches[0].shape[1]
    outs = [np.empty((len(rows), width), dtype=np.float32) for rows in splits]
    starts = np.cumsum([0] + [len(b) for b in batches]).tolist()
    finite = [True]

    def fill(first: int, last: int) -> Moments:
        moments = Moments.empty(width)
        for i in range(first, last):
            batch, batches[i] = batches[i], None
            # Column-major: three times faster a copy out of Arrow's columns than row-major, and the gather below
            # writes row-major tensors from either layout.
            block = np.asarray(batch.to_tensor(row_major=False)) if arrow else batch
            del batch
            for s, (out, rows) in enumerate(zip(outs, splits)):
                k0, k1 = np.searchsorted(rows, starts[i : i + 2]).tolist()
                if k1 == k0:
                    continue
                at = rows[k0:k1] - starts[i]
                if k1 - k0 == len(block):  # every row of the batch (sorted, distinct): a copy, not a gather
                    part = out[k0:k1]
                    part[...] = block
                    if block.dtype != np.float32:
                        part = block  # statistics from the float64 values, as the general path computes them
                elif block.dtype == np.float32:
                    part = np.take(block, at, axis=0, out=out[k0:k1])
                else:  # statistics from the float64 values, as the general path computes them
                    part = np.take(block, at, axis=0)
                    out[k0:k1] = part
                if s == 0:
                    moments.merge(Moments.of(part))
                elif not np.isfinite(part).all():
                    finite[0] = False
            if arrow and (i - first) % _RELEASE_EVERY == _RELEASE_EVERY - 1:
                pa.default_memory_pool().release_unused()
        return moments

    moments = Moments.empty(width)
    for part in _in_parallel(fill, len(batches)):
        moments.merge(part)
    if not (finite[0] and moments.finite()):
        return None
    return outs, moments


def medians(x: np.ndarray) -> list[float]:
    """Each column's median, equal to ``np.median`` of its float64 values (the general path's gap fill).

    Partitioned in float32, a column's middle values are the same numbers as in float64 (the widening is exact
    and keeps the order), and the mean of the two middle ones is taken in float64 as ``np.median`` takes it: the
    same figure at half the memory traffic and without a float64 copy, columns in parallel. One selection per
    column (NumPy's vectorised one for a single position), the lower middle value then the maximum below it.
    """
    n = len(x)
    mid = n // 2

    def work(first: int, last: int) -> list[float]:
        # The columns copied out in blocks of rows that stay in cache: a strided copy of a column of a row-major
        # array reads a cache line per value, twice the time of the selections themselves.
        columns = np.empty((last - first, n), dtype=np.float32)
        for start in range(0, n, _SCALE_ROWS):
            columns[:, start : start + _SCALE_ROWS] = x[start : start + _SCALE_ROWS, first:last].T
        out = []
        for column in columns:
            if n == 0:
                out.append(float("nan"))
            elif n % 2:
                column.partition(mid)
                out.append(float(column[mid]))
            else:  # the lower middle value is the largest below the upper one: one selection, not two
                column.partition(mid)
                pair = np.array([column[:mid].max(), column[mid]], dtype=np.float64)
                out.append(float(np.mean(pair)))
        return out

    return [m for part in _in_parallel(work, x.shape[1]) for m in part]


def _in_parallel(work: Callable[[int, int], T], n: int) -> list[T]:
    """``work(first, last)`` over consecutive ranges splitting ``0..n``, one per thread, results in order."""
    import pyarrow as pa

    threads = max(1, min(pa.cpu_count(), n))
    bounds = np.linspace(0, n, threads + 1).astype(int).tolist()
    if threads == 1:
        return [work(0, n)]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, bounds[:-1], bounds[1:]))


def scale_in_place(outs: Sequence[np.ndarray], columns: Sequence[Column]) -> None:
    """``(x - shift) / scale`` per column, in float32 as :mod:`descend.data.encode` computes it."""
    shift = np.array([c.shift for c in columns], dtype=np.float32)
    scale = np.array([c.scale for c in columns], dtype=np.float32)
    if not shift.any() and (scale == 1).all():  # scale="none": (x - 0) / 1 is x exactly, NaN and -0.0 included
        return
    for out in outs:

        def scale_rows(first: int, last: int, out: np.ndarray = out) -> None:
            for start in range(first * _SCALE_ROWS, min(last * _SCALE_ROWS, len(out)), _SCALE_ROWS):
                block = out[start : start + _SCALE_ROWS]
                block -= shift
                block /= scale

        _in_parallel(scale_rows, -(-len(out) // _SCALE_ROWS))
