"""Seeded augmentation of examples with spatial axes (signals N x C x L, images N x C x H x W): flips and crops.

``flip`` mirrors each example along its last axis (left-right for an image, time reversed for a signal) with
probability 1/2. ``crop`` pads each spatial axis with ``pad`` zeros on both sides (zero is the channel's mean once
standardised) and takes a window of the original size at a uniformly drawn offset in :math:`[0, 2\\,pad]`, so an
example moves by up to ``pad`` positions along each axis; ``pad`` defaults to an eighth of the axis (at least 1:
4 pixels of 32, 1 of 8). ``flip+crop`` does both.

The draws of a batch come from a generator seeded with the run's seed and the step's number, and nothing else:
the same step of the same run always sees the same augmented batch, so a resumed run continues bit for bit, and
the global torch RNG (dropout's) is left alone.

Example:
    >>> import torch
    >>> augment = Augment("flip+crop", seed=0)
    >>> x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    >>> out = augment(x, step=7)
    >>> out.shape, torch.equal(out, augment(x, step=7)), torch.equal(out, augment(x, step=8))
    (torch.Size([2, 1, 4, 4]), True, False)
"""

from __future__ import annotations

import torch
from torch import Tensor

from descend.data.errors import DataOptionError

__all__ = ["AUGMENTS", "Augment"]

AUGMENTS = ("none", "flip", "crop", "flip+crop")


class Augment:
    """Random flips and/or crops of a batch ``N x C x ...`` (at least one spatial axis), seeded per step."""

    def __init__(self, kind: str, *, seed: int, pad: int | None = None) -> None:
        if kind not in AUGMENTS:
            raise DataOptionError(f"augment must be one of {', '.join(AUGMENTS)}; got {kind!r}")
        if pad is not None and (isinstance(pad, bool) or not isinstance(pad, int) or pad < 1):
            raise DataOptionError(f"pad must be an int >= 1 or None; got {pad!r}")
        self.kind, self.seed, self.pad = kind, int(seed), pad
        self.flip, self.crop = "flip" in kind, "crop" in kind

    def __bool__(self) -> bool:
        return self.kind != "none"

    def generator(self, step: int) -> torch.Generator:
        """The step's generator: a function of (seed, step) only. torch's CPU generator keeps 32 bits of its seed,
        so the pair is hashed into 32 well-mixed bits (numpy's SeedSequence) rather than packed side by side."""
        import numpy as np

        return torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, int(step)]).generate_state(1)[0]))

    def __call__(self, x: Tensor, step: int) -> Tensor:
        if not self or x.dim() < 3:
            return x
        g = self.generator(step)
        n = len(x)
        if self.flip:
            mirrored = torch.rand(n, generator=g) < 0.5
            shape = (n,) + (1,) * (x.dim() - 1)
            x = torch.where(mirrored.reshape(shape).to(x.device), x.flip(-1), x)  # drawn on the CPU on any device
        if self.crop:
            for axis in range(2, x.dim()):
                x = self._shift(x, axis, g)
        return x

    def _shift(self, x: Tensor, axis: int, g: torch.Generator) -> Tensor:
        size = x.shape[axis]
        pad = self.pad if self.pad is not None else max(1, size // 8)
        widths = [0, 0] * (x.dim() - 1 - axis) + [pad, pad]  # F.pad lists the last axis first
        padded = torch.nn.functional.pad(x, widths)
        offset = torch.randint(0, 2 * pad + 1, (len(x),), generator=g)
        index = (offset[:, None] + torch.arange(size)).to(x.device)  # N x size: the window each example keeps
        view = [len(x)] + [1] * (x.dim() - 1)
        view[axis] = size
        return padded.gather(axis, index.reshape(view).expand(*x.shape[:axis], size, *x.shape[axis + 1 :]))
