"""``lr="auto"``: the range test sized to the training run it serves.

``fit`` calls :func:`auto_lr` once, after building the model and the optimizer and before the first step. The
range test's length follows the planned run: ``sweeps`` = 3 sweeps of

.. math:: n = \\min\\left(100, \\max\\left(30, \\left\\lfloor 0.05 \\cdot S / 3 \\right\\rfloor\\right)\\right)

steps each over rates from ``LR_MIN`` = 1e-5 to 10, :math:`S` the planned steps (``epochs`` × batches per epoch,
or ``max_steps``), so the test costs about 5% of the planned steps (plus a probe forward per sweep step, which on small models
costs about as much as a step), and never fewer than 90 steps (a run planned shorter than about 1,800 steps
pays more than 5%). Sweeps stop early at divergence, so the real cost is usually lower. The chosen rate is written into every
param group of the optimizer.

Example:
    >>> import torch
    >>> from descend.tune.auto import sweep_steps
    >>> sweep_steps(100 * 45), sweep_steps(300)
    (75, 30)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from descend.tune.lr_find import LRFindResult, lr_find

__all__ = ["LR_MIN", "SWEEPS", "auto_lr", "sweep_steps"]

SWEEPS = 3
LR_MIN = 1e-5  # below this no optimizer in descend makes progress in a few hundred steps
_SHARE = 0.05


def sweep_steps(planned: int) -> int:
    """Steps per sweep for a run planned to take ``planned`` steps (see the module docstring)."""
    return min(100, max(30, int(_SHARE * planned / SWEEPS)))


def auto_lr(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    X: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    planned: int,
    seed: int,
    penalty: Callable[[], Tensor] | None = None,
) -> LRFindResult:
    """Run the range test for a run of ``planned`` steps and set the chosen lr on every param group."""
    found = lr_find(model, optimizer, loss_fn, X, y, batch_size=batch_size, steps=sweep_steps(planned), lr_min=LR_MIN,
                    sweeps=SWEEPS, seed=seed, penalty=penalty)  # fmt: skip
    for group in optimizer.param_groups:
        group["lr"] = found.lr
    return found
