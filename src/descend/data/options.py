"""Checks on the arguments of the public data functions, with one message template.

``<name> must be one of <accepted>; got <value>``: the parameter, what would be accepted, what was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from descend.data.errors import DataOptionError

__all__ = ["check_choice"]


def check_choice(name: str, value: Any, accepted: Sequence[Any]) -> None:
    """Raise :class:`DataOptionError` unless ``value`` is one of ``accepted``."""
    if isinstance(value, bool) or value not in accepted:
        raise DataOptionError(f"{name} must be one of {', '.join(repr(a) for a in accepted)}; got {value!r}")
