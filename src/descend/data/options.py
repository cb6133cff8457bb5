"""Checks on the arguments of the public data functions, with one message template.

``<name> must be one of <accepted>; got <value>``: the parameter, what would be accepted, what was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from descend.data.errors import DataOptionError

__all__ = ["IMPUTE", "UNSEEN", "check_choice", "check_count", "check_names", "impute_choice"]

#: ``impute``: training median (or mean) plus a "was missing" column, drop the rows, or refuse gaps.
IMPUTE = ("median", "mean", "drop", "error")
#: ``unseen``: the "infrequent" category (all zeros when training had none), all zeros, or refuse.
UNSEEN = ("infrequent", "ignore", "error")


def check_choice(name: str, value: Any, accepted: Sequence[Any]) -> None:
    """Raise :class:`DataOptionError` unless ``value`` is one of ``accepted``."""
    if isinstance(value, bool) or value not in accepted:
        raise DataOptionError(f"{name} must be one of {', '.join(repr(a) for a in accepted)}; got {value!r}")


def impute_choice(value: Any) -> str:
    """``impute`` checked; None (the old spelling of "refuse gaps") is read as ``"error"``."""
    if value is None:
        return "error"
    check_choice("impute", value, IMPUTE)
    return str(value)


def check_count(name: str, value: Any, low: int = 1) -> int:
    """An integer of at least ``low`` (a bool is refused: ``True`` is not a count)."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataOptionError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def check_names(name: str, value: Any) -> list[str]:
    """A list of column names: None (none), one name, or a list/tuple of names."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DataOptionError(f"{name} must be a list of column names; got {value!r}")
