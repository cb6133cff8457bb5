"""Combinators: run schedules one after another, or put a linear warm-up in front of one."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from descend.schedules._base import Schedule, check_float, check_int, fail

__all__ = ["join", "warmup"]


def join(schedules: Sequence[Callable[[int], float]], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]`` until ``boundaries[1]``, and so on.

    :math:`\\eta_t = s_i(t - b_{i-1})` for :math:`b_{i-1} \\le t < b_i`, with :math:`s_i` = ``schedules[i]``,
    :math:`b_i` = ``boundaries[i]`` and :math:`b_{-1} = 0`: each schedule sees its own step count, starting at 0.

    ``schedules`` non-empty; ``boundaries`` strictly increasing ints >= 1, one fewer than ``schedules``.

    >>> from descend.schedules import constant, exponential_decay
    >>> s = join([constant(1.0), exponential_decay(1.0, gamma=0.5)], boundaries=[2])
    >>> [s(t) for t in range(5)]
    [1.0, 1.0, 1.0, 0.5, 0.25]
    """
    name = "join"
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence) or not schedules:
        fail(name, "schedules", schedules, "a non-empty sequence of schedules")
    parts = list(schedules)
    for i, s in enumerate(parts):
        if not callable(s):
            fail(name, f"schedules[{i}]", s, "a schedule (a callable step -> learning rate)")
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
        fail(name, "boundaries", boundaries, "a sequence of strictly increasing ints >= 1")
    if len(boundaries) != len(parts) - 1:
        fail(name, "boundaries", boundaries, f"{len(parts) - 1} boundaries for {len(parts)} schedules")
    bs = [check_int(name, f"boundaries[{i}]", b, minimum=1) for i, b in enumerate(boundaries)]
    for i in range(1, len(bs)):
        if bs[i] <= bs[i - 1]:
            fail(name, f"boundaries[{i}]", bs[i], f"an int > boundaries[{i - 1}]={bs[i - 1]}")
    starts = [0, *bs]

    def rate(t: int) -> float:
        i = bisect.bisect_right(bs, t)
        return parts[i](t - starts[i])

    return Schedule(name, rate, {"schedules": parts, "boundaries": bs})


def warmup(schedule: Callable[[int], float], steps: int, *, start_lr: float = 0.0) -> Schedule:
    """Put a linear warm-up of ``steps`` updates in front of ``schedule``.

    :math:`\\eta_t = a + (s(0) - a)\\, t / W` for :math:`t < W`, and :math:`\\eta_t = s(t - W)` after, with
    :math:`s` = ``schedule``, :math:`W` = ``steps`` and :math:`a` = ``start_lr``. The ramp ends where the schedule
    starts, so there is no jump.

    ``steps`` an int >= 0 (0 returns the schedule unchanged), ``start_lr`` >= 0.

    >>> from descend.schedules import constant
    >>> [warmup(constant(1.0), steps=4)(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    name = "warmup"
    if not callable(schedule):
        fail(name, "schedule", schedule, "a schedule (a callable step -> learning rate)")
    w = check_int(name, "steps", steps, minimum=0)
    a = check_float(name, "start_lr", start_lr, low=0.0)
    top = float(schedule(0))

    def rate(t: int) -> float:
        return a + (top - a) * t / w if t < w else schedule(t - w)

    return Schedule(name, rate, {"schedule": schedule, "steps": w, "start_lr": a})
