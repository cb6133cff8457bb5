"""``lr="auto"``: the range test sized to the training run it serves.

``fit`` calls :func:`auto_lr` once, after building the model and the optimizer and before the first step. The
range test's length follows the planned run: ``sweeps`` = 3 sweeps of

.. math:: n = \\min\\left(100, \\max\\left(30, \\left\\lfloor 0.05 \\cdot S / 3 \\right\\rfloor\\right)\\right)

steps each over rates from ``LR_MIN`` = 1e-5 (``LR_MIN_ATTENTION`` = 1e-4 for an adaptive optimizer on a model with
self-attention) to 10, :math:`S` the planned steps (``epochs`` × batches per epoch,
or ``max_steps``), so the test costs about 5% of the planned steps (plus a probe forward per sweep step, which on small models
costs about as much as a step), and never fewer than 90 steps (a run planned shorter than about 1,800 steps
pays more than 5%). Sweeps stop early at divergence, so the real cost is usually lower. The chosen rate is written into every
param group of the optimizer. When the run's schedule warms up to its peak and anneals from it
(:func:`warms_up_and_anneals`), the rate found is that peak, and the range test divides the lowest-loss rate by
less (:data:`descend.tune.lr_find.WARMUP_ANNEAL_DIVISORS`).

Example:
    >>> import torch
    >>> from descend.tune.auto import sweep_steps
    >>> sweep_steps(100 * 45), sweep_steps(300)
    (75, 30)
    >>> from descend.schedules import named
    >>> [warms_up_and_anneals(named(k, 1.0, total_steps=2000), 2000) for k in ("warmup-cosine", "cosine")]
    [True, False]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from descend.tune.lr_find import LRFindResult, kind, lr_find

__all__ = ["LR_MIN", "LR_MIN_ATTENTION", "SWEEPS", "auto_lr", "sweep_steps", "warms_up_and_anneals"]

SWEEPS = 3
LR_MIN = 1e-5  # below this no optimizer in descend makes progress in a few hundred steps
# A transformer under Adam: its sweeps end in a spiky region (on the character LM, above about 2.7e-3 the probe loss
# jumps between 3.2 and 6.4 from one step to the next), and where the smoothed lowest point lands at its edge depends
# on how densely the sweep samples the rates below. From 1e-5 (5.5 steps a decade) the character LM's sweeps put
# it anywhere from 1.2e-3 to 2.7e-3 between seeds, and the run's loss followed; from 1e-4 (6.6 a decade), at
# 3.65e-3 on five seeds of six (2.55e-3 on the sixth). Other models keep 1e-5, where the divisors were measured.
LR_MIN_ATTENTION = 1e-4
_SHARE = 0.05


def sweep_steps(planned: int) -> int:
    """Steps per sweep for a run planned to take ``planned`` steps (see the module docstring)."""
    return min(100, max(30, int(_SHARE * planned / SWEEPS)))


def warms_up_and_anneals(schedule: Callable[[int], float], planned: int, *, points: int = 2000) -> bool:
    """Whether ``schedule`` starts at or below half its peak and falls to half of it for good within ``planned``
    updates (warm-up-cosine, one-cycle; not a constant, a cosine without warm-up, a step decay, or a schedule
    driven by a metric). Sampled at ``points`` evenly spaced updates at most."""
    from descend.schedules import annealing_start

    if hasattr(schedule, "step") or planned < 2:
        return False
    stride = max(1, planned // points)
    peak = max(float(schedule(t)) for t in range(0, planned, stride))
    return math.isfinite(peak) and peak > 0 and float(schedule(0)) <= 0.5 * peak and annealing_start(schedule, planned) > 0


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
    schedule: Callable[[int], float] | None = None,
) -> LRFindResult:
    """Run the range test for a run of ``planned`` steps and set the chosen lr on every param group.

    ``schedule``: the run's schedule shape (any peak), when the rate found will be its peak.
    """
    shaped = schedule is not None and warms_up_and_anneals(schedule, planned)
    lr_min = LR_MIN_ATTENTION if kind(model, optimizer) == "transformer" else LR_MIN
    found = lr_find(model, optimizer, loss_fn, X, y, batch_size=batch_size, steps=sweep_steps(planned), lr_min=lr_min,
                    sweeps=SWEEPS, seed=seed, penalty=penalty, warmup_anneal=shaped)  # fmt: skip
    for group in optimizer.param_groups:
        group["lr"] = found.lr
    return found
