"""Argument checks for descend.inspect, with the project's one message template.

``"top_eigenvalues: invalid k=0; expected an int >= 1"``. Errors are :class:`~descend.errors.ConfigError`, a
``ValueError``, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import math
from typing import Any

from descend.errors import ConfigError

__all__ = ["check_int", "check_number"]


def check_number(
    owner: str, name: str, value: Any, lo: float = 0.0, hi: float = math.inf, *, lo_open: bool = False
) -> float:
    """Return ``value`` as a float if it is a real number in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        value_f = float(value)
        ok = not math.isnan(value_f) and lo <= value_f <= hi and not (lo_open and value_f == lo)
    if not ok:
        left = "(" if lo_open else "["
        expected = f"a number in {left}{lo:g}, {hi:g}]" if hi < math.inf else f"a number {'>' if lo_open else '>='} {lo:g}"
        raise ConfigError(f"{owner}: invalid {name}={value!r}; expected {expected}")
    return float(value)


def check_int(owner: str, name: str, value: Any, lo: int = 1) -> int:
    """Return ``value`` if it is an int >= ``lo``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{owner}: invalid {name}={value!r}; expected an int >= {lo}")
    return value
