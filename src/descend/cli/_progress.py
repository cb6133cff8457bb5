"""The command line's progress: a live display on a terminal (:class:`descend.train.ProgressBar`: epoch and step
bars, time left, steps per second, loss, learning rate, validation metric, rollbacks as they happen), else one
plain line per epoch. Imported when a run starts, since a callback brings torch."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from descend.cli._output import Out
from descend.train.state import Callback, TrainState

__all__ = ["EchoProgress", "Header", "progress_callbacks"]


class Header(Callback):
    """At the start, once fit has accepted every argument (so a refused run prints only its error): the warnings
    caught so far in ``pending`` (the data's, emptied once shown), then ``header`` (a line, or a function of the
    state giving it)."""

    def __init__(self, out: Out, header: str | Callable[[TrainState], str] = "",
                 pending: list[Any] | None = None) -> None:  # fmt: skip
        self.out = out
        self.header = header
        self.pending = pending

    def on_fit_start(self, state: TrainState) -> None:
        if self.pending:
            for w in self.pending:
                if not issubclass(w.category, DeprecationWarning):
                    self.out.warn(str(w.message))
            del self.pending[:]
        header = self.header(state) if callable(self.header) else self.header
        if header:
            self.out.line(header)


class EchoProgress(Header):
    """The header, then one line every ``every`` epochs (and the first and last), for output that is not a
    terminal: ``epoch   3  loss 0.4120  val_loss 0.4511  val_accuracy 0.8750``."""

    def __init__(self, out: Out, every: int = 1, header: str | Callable[[TrainState], str] = "",
                 pending: list[Any] | None = None) -> None:  # fmt: skip
        super().__init__(out, header, pending)
        self.every = every

    def on_epoch_end(self, state: TrainState) -> None:
        row = state.row
        epoch = int(row["epoch"])
        if epoch % self.every and epoch != 1 and state.stop is None and epoch != state.epochs:
            return
        shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("loss", "accuracy", "r2")))
        self.out.line(f"epoch {epoch:>3}  {shown}")


def progress_callbacks(out: Out, header: str | Callable[[TrainState], str] = "", pending: list[Any] | None = None,
                       *, terminal: bool | None = None) -> list[Callback]:
    """What a training command shows while it runs: nothing with ``--quiet`` or ``--json``; on a terminal
    (``terminal``, by default whether stdout is one) the header and the live display, without colour when
    ``NO_COLOR`` is set; otherwise the header and a line per epoch."""
    if not out.talking:
        return []
    if terminal is None:
        terminal = sys.stdout.isatty()
    if not terminal:
        return [EchoProgress(out, header=header, pending=pending)]
    from rich.console import Console

    from descend.train.callbacks import ProgressBar

    console = Console(file=sys.stdout, force_terminal=True, no_color=bool(os.environ.get("NO_COLOR")))
    return [Header(out, header, pending), ProgressBar(console=console)]
