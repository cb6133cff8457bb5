"""What the command line prints: progress and summaries for a person, or one JSON object with ``--json``.

``--quiet`` prints nothing but errors; ``--json`` prints only the JSON summary on stdout; colour is used only
on a terminal and never when the ``NO_COLOR`` environment variable is set (https://no-color.org).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

__all__ = ["Out", "from_descend", "output_options", "shown_warnings"]

F = TypeVar("F", bound=Callable[..., Any])


def output_options(f: F) -> F:
    """Add ``--quiet`` and ``--json`` to a command."""
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the summary) and nothing else.")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")(f)
    return f


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Out:
    """Printing for one command: ``line`` for a person, ``result`` for the final JSON summary."""

    def __init__(self, *, quiet: bool = False, as_json: bool = False) -> None:
        self.quiet = quiet
        self.as_json = as_json
        self.color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    @property
    def talking(self) -> bool:
        return not (self.quiet or self.as_json)

    def line(self, text: str = "", *, bold: bool = False, err: bool = False) -> None:
        if self.talking:
            click.echo(click.style(text, bold=True) if bold and self.color else text, err=err, color=self.color)

    def result(self, summary: dict[str, Any]) -> None:
        if self.as_json:
            click.echo(json.dumps(_plain(summary), indent=2))

    def warn(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"warning: {text}", err=True)


@contextlib.contextmanager
def shown_warnings(out: Out, show: Callable[[Any], bool] = lambda w: True) -> Iterator[list[Any]]:
    """Catch the Python warnings of the block; when it ends without an error, print those ``show`` picks as
    ``warning: ...`` lines on stderr. The caught list is given to the block, for what is shown sooner."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:
        if show(w):
            out.warn(str(w.message))


def from_descend(w: Any) -> bool:
    """Whether a caught warning is one of descend's own (a UserWarning raised by descend's code)."""
    return issubclass(w.category, UserWarning) and w.category.__module__.startswith("descend")
