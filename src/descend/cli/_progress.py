"""The command line's progress for output that is not a terminal: a line every few epochs (imported when a run
starts, since a callback brings torch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from descend.cli._output import Out
from descend.train.state import Callback, TrainState

__all__ = ["EchoProgress"]


class EchoProgress(Callback):
    """Print one line every ``every`` epochs (and the first and last), for output that is not a terminal.

    At the start: the warnings caught so far in ``pending`` (the data's, emptied once shown), then ``header``
    (a line, or a function of the state giving it)."""

    def __init__(self, out: Out, every: int = 5, header: str | Callable[[TrainState], str] = "",
                 pending: list[Any] | None = None) -> None:  # fmt: skip
        self.out = out
        self.every = every
        self.header = header
        self.pending = pending

    def on_fit_start(self, state: TrainState) -> None:
        # Printed once fit has accepted every argument, so a refused run prints only its error.
        if self.pending:
            for w in self.pending:
                if not issubclass(w.category, DeprecationWarning):
                    self.out.warn(str(w.message))
            del self.pending[:]
        header = self.header(state) if callable(self.header) else self.header
        if header:
            self.out.line(header)

    def on_epoch_end(self, state: TrainState) -> None:
        row = state.row
        epoch = int(row["epoch"])
        if epoch % self.every and epoch != 1 and state.stop is None and epoch != state.epochs:
            return
        shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("loss", "accuracy", "r2")))
        self.out.line(f"epoch {epoch:>3}  {shown}")
