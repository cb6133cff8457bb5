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


#: the settings each named schedule takes (others are refused, so a setting is never silently ignored)
SETTINGS = {"warmup-cosine": ("warmup_steps",), "step": ("step_size", "gamma"), "exponential": ("gamma",),
            "plateau": ("gamma",)}


def named(kind: str, peak: float, *, total_steps: int, warmup_steps: int | None = None, step_size: int | None = None,
          gamma: float | None = None) -> Callable[[int], float]:
    """The schedule ``kind`` peaking at ``peak``, spread over ``total_steps`` updates.

    ============== =============================================================================
    kind           learning rate at update ``t`` of ``T`` = ``total_steps``
    ============== =============================================================================
    constant       ``peak``
    cosine         cosine annealing from ``peak`` to 0 at ``T``
    warmup-cosine  linear warm-up over ``warmup_steps`` updates (default ``T/20``), then cosine to 0 at ``T``
    step           ``peak``, times ``gamma`` (default 0.1) every ``step_size`` updates (default ``T/3``)
    exponential    ``peak * gamma ** t``; by default ``gamma = 0.01 ** (1/T)``: ends at 1% of ``peak``
    one-cycle      one cycle (Smith & Topin, 2019): up from ``peak/25`` over 30%, down to ``peak/1e4``
    plateau        ``peak``, times ``gamma`` (default 0.5) when the validation loss has not improved for 3 epochs
    ============== =============================================================================

    A setting given to a schedule that does not take it (:data:`SETTINGS`) is refused.

    Example:
        >>> s = named("step", 0.1, total_steps=9)
        >>> [round(s(t), 4) for t in (0, 3, 6)]
        [0.1, 0.01, 0.001]
        >>> s = named("step", 0.1, total_steps=9, step_size=2, gamma=0.5)
        >>> [round(s(t), 4) for t in (0, 2, 4)]
        [0.1, 0.05, 0.025]
    """
    given = {k: v for k, v in (("warmup_steps", warmup_steps), ("step_size", step_size), ("gamma", gamma))
             if v is not None}  # fmt: skip
    for key in given:
        if key not in SETTINGS.get(kind, ()):
            takes = [k for k, v in SETTINGS.items() if key in v]
            fail(key, key, given[key], f"None with schedule {kind!r} ({key} applies to {' and '.join(takes)})")
    n = max(int(total_steps), 2)
    if kind == "constant":
        return constant(peak)
    if kind == "cosine":
        return cosine_annealing(peak, n)
    if kind == "warmup-cosine":
        return warmup_cosine(peak, n, warmup_steps=warmup_steps or max(1, n // 20))
    if kind == "step":
        return step_decay(peak, step_size or max(1, n // 3), gamma=0.1 if gamma is None else gamma)
    if kind == "exponential":
        return exponential_decay(peak, 0.01 ** (1 / n) if gamma is None else gamma)
    if kind == "one-cycle":
        return one_cycle(peak, n)
    if kind == "plateau":
        return ReduceOnPlateau(peak, patience=3, factor=0.5 if gamma is None else gamma)
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
