"""Batches for the three gradient descents: full batch, one example at a time, and mini-batches.

For data in memory, :class:`Batches` yields index tensors and the loop gathers ``X[idx]``: one ``index_select``
per batch, no per-example Python calls and no collation. Each epoch is a permutation of ``0..n-1`` drawn from a
``torch.Generator`` seeded once; :meth:`Batches.state_dict` holds the epoch, the batches already given in it, and
the generator state at the start of the epoch, so a resumed run redraws the same permutation and continues with
the next batch.

For data that does not fit in memory, :class:`LoaderBatches` wraps any ``DataLoader`` or iterable of ``(X, y)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from descend.data.errors import DataOptionError

__all__ = ["BatchSize", "Batches", "LoaderBatches", "check_batch_size"]

BatchSize = int | str


def check_batch_size(batch_size: Any) -> int | str:
    """``"full"`` or an integer >= 1 (a size above the row count means one batch of every row)."""
    if batch_size == "full" or (
        isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
    ):
        return batch_size
    raise DataOptionError(
        f"batch_size must be 'full' (batch gradient descent), 1 (stochastic) or an integer >= 1 (mini-batch); "
        f"got {batch_size!r}"
    )


class Batches:
    """Index batches over ``n`` rows, reshuffled every epoch from a seeded generator.

    Args:
        n: number of rows (>= 1).
        batch_size: ``"full"``, or an integer >= 1. The last batch of an epoch may be smaller unless ``drop_last``.
        shuffle: draw a new permutation each epoch (otherwise ``0..n-1`` in order).
        seed: seeds the generator; the same seed gives the same batches epoch after epoch.
        drop_last: leave out a final batch smaller than ``batch_size``.

    Iterating gives the remaining batches of the current epoch (LongTensors of row indices); once an iteration
    has run to its end, the next one starts a new epoch. ``epoch`` counts from 0 and ``position`` is the number
    of batches already given in it, counted as each batch is handed out, so a checkpoint taken after a step
    resumes at the following batch. A checkpoint taken after the last step of an epoch but inside the loop
    resumes with that epoch's (empty) remainder, so a caller's own epoch count stays in step.

    Example:
        >>> b = Batches(5, batch_size=2, seed=0)
        >>> [len(i) for i in b]
        [2, 2, 1]
        >>> X = torch.arange(10.0).reshape(5, 2)
        >>> sum(len(xb) for (xb,) in b.over(X))
        5
    """

    def __init__(
        self,
        n: int,
        batch_size: BatchSize = "full",
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataOptionError(f"n (the number of rows) must be an integer >= 1; got {n!r}")
        size = check_batch_size(batch_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DataOptionError(f"seed must be an integer; got {seed!r}")
        self.n, self.shuffle, self.seed, self.drop_last = n, bool(shuffle), seed, bool(drop_last)
        self.batch_size: int | str = size
        self._size = n if size == "full" else min(int(size), n)
        self._generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position, self.epoch_done = 0, 0, False
        self._epoch_rng = self._generator.get_state()
        self._order: torch.Tensor | None = None

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.n // self._size if self.drop_last else -(-self.n // self._size)

    def _draw(self) -> torch.Tensor:
        self._epoch_rng = self._generator.get_state()
        if self.shuffle:
            return torch.randperm(self.n, generator=self._generator)
        return torch.arange(self.n)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.epoch_done:
            self.epoch, self.position, self.epoch_done, self._order = self.epoch + 1, 0, False, None
        if self._order is None:
            self._order = self._draw()
        order, size = self._order, self._size
        while self.position < len(self):
            start = self.position * size
            self.position += 1
            yield order[start : start + size]
        self.epoch_done = True

    def over(self, *tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """The remaining batches of the epoch as tuples ``(t[idx] for t in tensors)``."""
        for idx in self:
            yield tuple(t.index_select(0, idx) for t in tensors)

    def state_dict(self) -> dict[str, Any]:
        """Epoch, position and generator state, in types ``torch.load(weights_only=True)`` accepts."""
        return {
            "n": self.n,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "epoch_done": self.epoch_done,
            "rng_state": self._epoch_rng.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: same epoch permutation, next batch."""
        for key in ("n", "batch_size", "shuffle", "drop_last"):
            if state.get(key) != getattr(self, key):
                raise DataOptionError(
                    f"cannot resume: the saved batches have {key}={state.get(key)!r}, these have "
                    f"{key}={getattr(self, key)!r}; rebuild Batches with the saved settings"
                )
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self.epoch_done = bool(state["epoch_done"])
        self._generator.set_state(state["rng_state"])
        self._order = self._draw()

    def __repr__(self) -> str:
        return (
            f"Batches(n={self.n}, batch_size={self.batch_size!r}, shuffle={self.shuffle}, seed={self.seed}; "
            f"epoch {self.epoch}, batch {self.position}/{len(self)})"
        )


class LoaderBatches:
    """Batches from a ``torch.utils.data.DataLoader`` or any re-iterable of ``(X, y)`` batches.

    Iterating gives the remaining batches of the current epoch, as the loader yields them. ``state_dict`` holds
    the epoch and the batches already given in it. Resuming makes a fresh pass over the loader and skips that many
    batches (they are read, not trained on), so it continues with the same batches only if the loader yields the
    same order on every pass from the same start. Give ``seed`` to make a shuffling ``DataLoader`` do that: its
    ``generator`` (created if absent) is reseeded with ``seed + epoch`` at the start of each epoch. An iterator that
    can be consumed only once (a generator) cannot be resumed or run for a second epoch.

    Args:
        loader: a DataLoader or any iterable of batches.
        seed: reseed a DataLoader's generator per epoch (see above); None leaves the loader alone.
    """

    def __init__(self, loader: Iterable[Any], *, seed: int | None = None) -> None:
        if not isinstance(loader, Iterable):
            raise DataOptionError(
                f"loader must be a DataLoader or an iterable of batches; got {type(loader).__name__}"
            )
        if seed is not None and not isinstance(loader, torch.utils.data.DataLoader):
            raise DataOptionError("seed= applies to a torch DataLoader; seed other iterables yourself")
        self.loader, self.seed = loader, seed
        self.epoch, self.position, self.epoch_done = 0, 0, False
        if isinstance(loader, torch.utils.data.DataLoader) and seed is not None and loader.generator is None:
            loader.generator = torch.Generator()
            if isinstance(loader.sampler, torch.utils.data.RandomSampler):
                loader.sampler.generator = loader.generator

    def __len__(self) -> int:
        """Batches per epoch, when the loader knows it."""
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if self.epoch_done:
            self.epoch, self.position, self.epoch_done = self.epoch + 1, 0, False
        if isinstance(self.loader, torch.utils.data.DataLoader) and self.seed is not None:
            assert self.loader.generator is not None
            self.loader.generator.manual_seed(self.seed + self.epoch)
        skip = self.position
        for k, batch in enumerate(self.loader):
            if k < skip:
                continue
            self.position = k + 1
            yield batch
        self.epoch_done = True

    def state_dict(self) -> dict[str, Any]:
        """Epoch, batches given in it, and whether it is finished (plain ints and bools)."""
        return {"epoch": self.epoch, "position": self.position, "epoch_done": self.epoch_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after the saved position on the next iteration (see the class docstring for what that means)."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.epoch_done = bool(state["epoch_done"])

    def __repr__(self) -> str:
        return f"LoaderBatches({type(self.loader).__name__}, seed={self.seed}; epoch {self.epoch}, batch {self.position})"
