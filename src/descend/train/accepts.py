"""What an option of the table accepts (:mod:`descend.train.options`): a :class:`Kind` tests a value from
Python, reads a word from the command line or a config file, and names itself for the message and the help.

Example:
    >>> kind = number(open_low=True) | choice("auto")
    >>> kind.text, kind.ok(0.1), kind.ok(0), kind.parse("AUTO")
    ('a number > 0 or auto', True, False, 'auto')
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BOOLEAN", "NONE", "PATH", "SETTINGS", "SIZE", "Kind", "choice", "columns", "integer", "names", "number",
           "python", "setting", "text"]


@dataclass(frozen=True)
class Kind:
    """``ok(value)``: whether Python's value is one; ``read(word)``: the value a word says (ValueError or
    KeyError if none; None where no word can say it); ``metavar``: how ``--help`` shows the word."""

    text: str
    ok: Callable[[Any], bool]
    read: Callable[[str], Any] | None = None
    metavar: str = ""
    parts: tuple[Kind, ...] = ()

    def parse(self, word: str) -> Any:
        if self.read is None:
            raise ValueError(word)
        value = self.read(word)
        if not self.ok(value):
            raise ValueError(word)
        return value

    def __or__(self, other: Kind) -> Kind:
        parts = (*(self.parts or (self,)), *(other.parts or (other,)))
        texts = [t for p in parts for t in (("True", "False") if p.text == "True or False" else (p.text,))]
        worded = [p for p in parts if p.read is not None]

        def read(word: str) -> Any:
            for p in worded:
                try:
                    return p.parse(word)
                except (ValueError, KeyError):
                    pass
            raise ValueError(word)

        return Kind(", ".join(texts[:-1]) + " or " + texts[-1], lambda v: any(p.ok(v) for p in parts),
                    read if worded else None, "|".join(p.metavar for p in worded if p.metavar), parts)  # fmt: skip


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def number(low: float = 0.0, high: float = math.inf, *, open_low: bool = False, open_high: bool = False) -> Kind:
    """A real number (not a bool, not NaN) in a range."""
    if high == math.inf:
        text = "a number" if low == -math.inf else f"a number {'>' if open_low else '>='} {low:g}"
    else:
        text = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def ok(v: Any) -> bool:
        return _real(v) and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)

    return Kind(text, ok, float, "X")


def integer(low: int = 1) -> Kind:
    return Kind(f"an int >= {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, int, "N")


def choice(*options: str) -> Kind:
    """One of a few names (a word may write them in any case)."""
    text = options[0] if len(options) == 1 else f"one of {', '.join(options)}"
    return Kind(text, lambda v: isinstance(v, str) and v in options, lambda w: w.strip().lower(), "|".join(options))


def text(what: str) -> Kind:
    return Kind(what, lambda v: isinstance(v, str) and bool(v.strip()), str, "TEXT")


def names(what: str) -> Kind:
    """A list of names; a word separates them with commas."""
    return Kind(what, lambda v: isinstance(v, (list, tuple)) and all(isinstance(n, str) and n for n in v),
                lambda w: [n.strip() for n in w.split(",") if n.strip()] or None, "NAMES")  # fmt: skip


def columns(what: str) -> Kind:
    """A column name, or a list of them (a word with commas)."""
    many = names(what)
    return Kind(what, lambda v: text(what).ok(v) or (bool(v) and many.ok(v)),
                lambda w: many.parse(w) if "," in w else w.strip(), "COL")  # fmt: skip


def python(what: str, test: Callable[[Any], bool]) -> Kind:
    """Objects only Python can give (a callable, a module, a callback): never a word."""
    return Kind(what, test)


def setting(word: str) -> Any:
    """A settings value from its word: ``0.9`` a float, ``3`` an int, ``true`` a bool, ``none``, ``0.9,0.99`` a
    tuple, anything else the text itself."""
    word = word.strip()
    if "," in word:
        return tuple(setting(t) for t in word.split(","))
    low = word.lower()
    if low in ("true", "false", "none", "null"):
        return {"true": True, "false": False}.get(low)
    for kind in (int, float):
        try:
            return kind(word)
        except ValueError:
            pass
    return word


def _settings(word: str) -> dict[str, Any]:
    key, eq, value = word.partition("=")
    if not eq:
        raise ValueError(word)
    return {key.strip(): setting(value)}


_TRUTH = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
BOOLEAN = Kind("True or False", lambda v: isinstance(v, bool), lambda w: _TRUTH[w.strip().lower()], "true|false")
NONE = Kind("None", lambda v: v is None, lambda w: {"none": None, "null": None}[w.strip().lower()])
PATH = Kind("a path", lambda v: isinstance(v, (str, os.PathLike)) and bool(str(v).strip()), str, "PATH")
SETTINGS = Kind("a dict of settings (KEY=VALUE on the command line)",
                lambda v: isinstance(v, Mapping) and all(isinstance(k, str) and k.isidentifier() for k in v),
                _settings, "KEY=VALUE")  # fmt: skip


def _size(v: Any) -> bool:
    one = integer(1).ok
    return one(v) or (isinstance(v, (list, tuple)) and len(v) == 2 and all(one(n) for n in v))


def _read_size(word: str) -> Any:
    parts = [int(t) for t in word.lower().replace("x", ",").split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


SIZE = Kind("an int >= 1 or a pair (H, W) of them", _size, _read_size, "N|HxW")
