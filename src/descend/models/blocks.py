"""Gradient checkpointing of a network's blocks: keep each block's input, recompute the rest in the backward pass.

Training keeps every activation the backward pass needs until it runs. With checkpointing a block keeps only its
input; the backward pass runs the block's forward again (``torch.utils.checkpoint``, non-reentrant) to get the
rest. Memory for activations falls from the sum over blocks of everything a block keeps to the blocks' inputs
plus one block's worth, for one more forward pass of the blocks. The gradients are the same: the recomputation
replays the forward with the same random state (dropout draws the same mask), and batch norm's running
statistics are put back after it, so they are updated once per step as without checkpointing.

descend's block-structured models mark their blocks: the MLP's hidden layers (each affine map with its
activation, norm and dropout; the residual MLP's blocks), the CNNs' stages and the transformer blocks of the
GPT and the FT-Transformer. What saves memory is what a block keeps inside: a transformer block keeps about a
dozen tensors (a four-times-wide MLP among them) and so gains the most; a plain ReLU layer keeps one tensor, the
same as its checkpointed input, and gains nothing.

Example:
    >>> import torch
    >>> from descend.models import GPT
    >>> model = GPT(16, layers=2, dim=8, heads=2, block=4)
    >>> set_checkpointing(model, True)
    2
    >>> model(torch.zeros(1, 4, dtype=torch.long)).shape
    torch.Size([1, 4, 16])
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["BlockSequential", "Checkpointable", "set_checkpointing"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextlib.contextmanager
def _statistics_kept(norms: Sequence[nn.Module]) -> Iterator[None]:
    """Put batch norm's running statistics back as they were after the forward (the recomputation would count
    the batch twice)."""
    saved = [[b.clone() for b in m.buffers()] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for b, value in zip(m.buffers(), buffers):
                    b.copy_(value)


def _contexts(modules: Sequence[nn.Module]) -> tuple[Any, Any]:
    norms = [m for module in modules for m in module.modules()
             if isinstance(m, _NORMS) and m.training and m.track_running_stats]  # fmt: skip
    return contextlib.nullcontext(), (_statistics_kept(norms) if norms else contextlib.nullcontext())


def run_checkpointed(modules: Sequence[nn.Module], x: Tensor) -> Tensor:
    """``modules`` applied in turn to ``x``, keeping only ``x`` for the backward pass."""

    def forward(t: Tensor) -> Tensor:
        for m in modules:
            t = m(t)
        return t

    out: Tensor = checkpoint(forward, x, use_reentrant=False, context_fn=functools.partial(_contexts, modules))
    return out


class Checkpointable:
    """A network of blocks (mixin for an ``nn.Module``): with ``checkpointing`` set, :meth:`run_block` keeps
    only a block's input while the model trains with gradients."""

    checkpointing: bool = False

    def n_blocks(self) -> int:
        raise NotImplementedError

    def run_block(self, block: nn.Module, x: Tensor) -> Tensor:
        if self.checkpointing and block.training and torch.is_grad_enabled():
            return run_checkpointed((block,), x)
        out: Tensor = block(x)
        return out


class BlockSequential(nn.Sequential, Checkpointable):
    """An ``nn.Sequential`` whose layers ``spans`` (half-open index ranges) are blocks. Its state dict is the
    plain Sequential's, so checkpointing changes no saved model."""

    def __init__(self, *args: Any, spans: Sequence[tuple[int, int]] = ()) -> None:
        super().__init__(*args)
        self.spans = tuple(spans)

    def n_blocks(self) -> int:
        return len(self.spans)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.checkpointing and self.training and torch.is_grad_enabled()):
            return super().forward(x)
        layers, done = list(self), 0
        for start, stop in self.spans:
            for layer in layers[done:start]:
                x = layer(x)
            x = run_checkpointed(layers[start:stop], x)
            done = stop
        for layer in layers[done:]:
            x = layer(x)
        return x


def spans_of(names: Sequence[str], is_block: Callable[[str], bool]) -> list[tuple[int, int]]:
    """One span per layer whose name ``is_block``."""
    return [(i, i + 1) for i, name in enumerate(names) if is_block(name)]


def set_checkpointing(model: nn.Module, on: bool = True) -> int:
    """Switch gradient checkpointing of ``model``'s blocks on or off; return how many blocks it has (0: none,
    so nothing would be checkpointed).

    Only descend's networks mark their blocks (:class:`Checkpointable`); in a module of your own, call
    ``torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)`` in its ``forward``.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, Checkpointable):
            m.checkpointing = bool(on)
            n += m.n_blocks()
    return n
