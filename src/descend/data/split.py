"""Seeded train / validation / test split, stratified by class for classification.

The split sizes are ``n_val = round(validation * n)`` and ``n_test = round(test * n)``; training keeps the rest.
Stratified, each class ``c`` with ``n_c`` rows gives ``n_val * n_c / n`` rows to validation, rounded by largest
remainder so the totals are exact and every class is within one row of its proportional share; every class keeps at
least one training row. Within a split, rows keep their order in the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from descend.data.errors import DataOptionError, SplitError, listed

__all__ = ["check_fractions", "split_indices"]


def check_fractions(validation: float, test: float) -> None:
    """Validate split fractions: each in [0, 1), and together below 1 (some rows must be left to train on)."""
    for name, value in (("validation", validation), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise DataOptionError(f"{name} must be a fraction in [0, 1); got {value!r}")
    if validation + test >= 1.0:
        raise DataOptionError(
            f"validation + test must be below 1 so rows are left for training; got {validation} + {test}"
        )


def _count(fraction: float, n: int) -> int:
    return math.floor(fraction * n + 0.5)


def split_indices(
    n: int, *, validation: float, test: float, seed: int, labels: np.ndarray | None = None, origin: str = "",
    permutation: Callable[[], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (sorted, int64) of the training, validation and test rows of a table of ``n`` rows.

    ``labels`` (class indices, one per row) makes the split stratified. Without them the rows are cut from
    ``np.random.default_rng(seed).permutation(n)``; ``permutation``, if given, returns that same array drawn
    ahead (on another thread while the caller did other work).

    Example:
        >>> tr, va, te = split_indices(10, validation=0.2, test=0.0, seed=0)
        >>> len(tr), len(va), len(te)
        (8, 2, 0)
    """
    check_fractions(validation, test)
    n_val, n_test = _count(validation, n), _count(test, n)
    n_train = n - n_val - n_test
    where = f"{origin}: " if origin else ""
    for name, fraction, count in (("validation", validation, n_val), ("test", test, n_test)):
        if fraction > 0 and count == 0:
            need = math.ceil(0.5 / fraction)
            raise SplitError(
                f"{where}{n} rows are too few for {name}={fraction}: it would get 0 rows; give at least {need} "
                f"rows, or {name}=0"
            )
    if n_train < 2:
        raise SplitError(
            f"{where}{n} rows are too few: {n_val} validation + {n_test} test rows leave {n_train} for "
            "training, and training needs at least 2"
        )
    if n_train == n:  # nothing held out: every row trains, in order (the permutation would only be sorted back)
        return np.arange(n), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n) if permutation is None else permutation()
        parts = np.split(perm, [n_val, n_val + n_test])
        # The training rows are the rest: marked off, they come out sorted without sorting the larger part.
        keep = np.ones(n, dtype=bool)
        keep[perm[: n_val + n_test]] = False
        return np.flatnonzero(keep), np.sort(parts[0]), np.sort(parts[1])
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    val_take = _allocate(n_val, counts, counts - 1, where)
    test_take = _allocate(n_test, counts, counts - 1 - val_take, where)
    train, val, te = [], [], []
    for c in range(len(classes)):
        rows = rng.permutation(np.flatnonzero(inverse == c))
        v, t = int(val_take[c]), int(test_take[c])
        val.append(rows[:v])
        te.append(rows[v : v + t])
        train.append(rows[v + t :])
    return (np.sort(np.concatenate(train)), np.sort(np.concatenate(val)), np.sort(np.concatenate(te)))


def _allocate(total: int, counts: np.ndarray, cap: np.ndarray, where: str) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder), each at most ``cap``."""
    if total > cap.sum():
        raise SplitError(
            f"{where}too few rows per class for a stratified split: {total} held-out rows needed, {int(cap.sum())} "
            f"spare if every class keeps a training row ({len(counts)} classes, sizes {listed(counts.tolist(), 3)}); "
            "lower validation/test or give more rows"
        )
    quota = total * counts / counts.sum()
    take = np.minimum(np.floor(quota).astype(np.int64), cap)
    order = np.argsort(-(quota - take), kind="stable")
    while take.sum() < total:
        for c in order:
            if take.sum() == total:
                break
            if take[c] < cap[c]:
                take[c] += 1
    return take
