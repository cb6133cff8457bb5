"""Schedules by name, shaped over a planned run: what ``descend.fit(schedule=...)`` and ``--schedule`` accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from descend.schedules._base import fail
from descend.schedules._cosine import cosine_annealing, warmup_cosine
from descend.schedules._cyclical import one_cycle
from descend.schedules._decay import constant, exponential_decay, step_decay
from descend.schedules._plateau import ReduceOnPlateau

__all__ = ["NAMES", "annealing_start", "named"]

NAMES = ("constant", "cosine", "warmup-cosine", "step", "exponential", "one-cycle", "plateau")


def named(kind: str, peak: float, *, total_steps: int) -> Callable[[int], float]:
    """The schedule ``kind`` peaking at ``peak``, spread over ``total_steps`` updates.

    ============== =============================================================================
    kind           learning rate at update ``t`` of ``T`` = ``total_steps``
    ============== =============================================================================
    constant       ``peak``
    cosine         cosine annealing from ``peak`` to 0 at ``T``
    warmup-cosine  linear warm-up over ``T/20`` updates, then cosine to 0 at ``T``
    step           ``peak``, times 0.1 after each third of the run
    exponential    ``peak * 0.01 ** (t / T)``: ends at 1% of ``peak``
    one-cycle      one cycle (Smith & Topin, 2019): up from ``peak/25`` over 30%, down to ``peak/1e4``
    plateau        ``peak``, halved when the validation loss has not improved for 3 epochs
    ============== =============================================================================

    Example:
        >>> s = named("step", 0.1, total_steps=9)
        >>> [round(s(t), 4) for t in (0, 3, 6)]
        [0.1, 0.01, 0.001]
    """
    n = max(int(total_steps), 2)
    if kind == "constant":
        return constant(peak)
    if kind == "cosine":
        return cosine_annealing(peak, n)
    if kind == "warmup-cosine":
        return warmup_cosine(peak, n, warmup_steps=max(1, n // 20))
    if kind == "step":
        return step_decay(peak, max(1, n // 3), gamma=0.1)
    if kind == "exponential":
        return exponential_decay(peak, 0.01 ** (1 / n))
    if kind == "one-cycle":
        return one_cycle(peak, n)
    if kind == "plateau":
        return ReduceOnPlateau(peak, patience=3, factor=0.5)
    fail("schedule", "schedule", kind, f"one of {', '.join(NAMES)}, or a callable step -> multiplier")


def annealing_start(schedule: Any, total_steps: int, *, points: int = 2000) -> int:
    """The first update at which ``schedule`` has annealed: fallen to half its peak, after the peak, for good.

    0 for a schedule that never anneals over ``total_steps`` (constant, cyclical) or that is driven by a metric
    (``ReduceOnPlateau``); the schedule is sampled at ``points`` evenly spaced updates at most.

    Example:
        >>> annealing_start(named("cosine", 1.0, total_steps=100), 100)
        50
        >>> annealing_start(named("constant", 1.0, total_steps=100), 100)
        0
    """
    if hasattr(schedule, "step") or total_steps < 2:
        return 0
    stride = max(1, total_steps // points)
    ts = list(range(0, total_steps, stride))
    values = [float(schedule(t)) for t in ts]
    peak = max(values)
    top = values.index(peak)
    start = None
    for t, v in zip(ts[top:], values[top:]):
        if v > 0.5 * peak:
            start = None  # rises again (a restart): not annealed yet
        elif start is None:
            start = t
    return 0 if start is None else start
