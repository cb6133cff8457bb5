"""The schedule type, sampling, and the argument checks every factory shares.

A schedule maps the 0-based index ``t`` of an update to the learning rate used by that update. It holds no
mutable state, so ``schedule(t)`` is the same number whenever and however often it is asked, and a resumed run
only needs ``t``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from descend.errors import ConfigError

__all__ = ["Schedule", "sample"]


def fail(name: str, arg: str, value: object, expected: str) -> NoReturn:
    """Raise the one error every schedule reports: which argument, which value, and what is accepted."""
    raise ConfigError(f"{name}: invalid {arg}={value!r}; expected {expected}")


def check_int(name: str, arg: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        fail(name, arg, value, f"an int >= {minimum}")
    return int(value)


def _fmt(x: float) -> str:
    return "inf" if x == math.inf else repr(x)


def check_float(
    name: str,
    arg: str,
    value: object,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real number in the interval from ``low`` to ``high``."""
    interval = f"{'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if high_open or high == math.inf else ']'}"
    expected = f"a finite number in {interval}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, arg, value, expected)
    v = float(value)
    if not math.isfinite(v) or v < low or v > high or (low_open and v == low) or (high_open and v == high):
        fail(name, arg, value, expected)
    return v


def check_choice(name: str, arg: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        fail(name, arg, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def check_step(name: str, step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        fail(name, "step", step, "an int >= 0 (the number of updates already applied)")
    return int(step)


class Schedule:
    """A learning rate as a pure function of the update index.

    ``schedule(t)`` is the learning rate :math:`\\eta_t` of the update with 0-based index ``t`` (``t`` updates have
    already been applied). Build schedules with the factories of :mod:`descend.schedules`; they check their
    arguments, so a ``Schedule`` in hand is valid.

    Every schedule yields an absolute learning rate. A *multiplier* is a schedule built with ``lr=1.0``; scale it
    with ``*`` (``0.1 * cosine_annealing(1.0, 100)``) to give groups with different base rates the same shape.

    ``name`` and ``params`` are the factory and the arguments that built it, so a run's config can re-create it.

    >>> from descend.schedules import step_decay
    >>> s = step_decay(0.1, step_size=2, gamma=0.5)
    >>> [s(t) for t in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    __slots__ = ("_rate", "name", "params")

    def __init__(self, name: str, rate: Callable[[int], float], params: dict[str, Any]) -> None:
        self.name = name
        self.params = params
        self._rate = rate

    def __call__(self, step: int) -> float:
        return self._rate(check_step(self.name, step))

    def sample(self, steps: int, *, start: int = 0) -> list[float]:
        """The learning rates of updates ``start, start + 1, ..., start + steps - 1`` (for plotting)."""
        return sample(self, steps, start=start)

    def __mul__(self, factor: float) -> Schedule:
        """``factor * schedule``: the same shape, every rate multiplied by ``factor`` (>= 0)."""
        k = check_float("Schedule.__mul__", "factor", factor, low=0.0)
        rate = self._rate
        return Schedule("scale", lambda t: k * rate(t), {"factor": k, "schedule": self})

    __rmul__ = __mul__

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


def sample(schedule: Callable[[int], float], steps: int, *, start: int = 0) -> list[float]:
    """Evaluate ``schedule`` at ``t = start, ..., start + steps - 1`` and return the values as floats.

    >>> from descend.schedules import cosine_annealing, sample
    >>> [round(x, 3) for x in sample(cosine_annealing(1.0, total_steps=4), 5)]
    [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    n = check_int("sample", "steps", steps, minimum=0)
    t0 = check_int("sample", "start", start, minimum=0)
    return [float(schedule(t)) for t in range(t0, t0 + n)]
