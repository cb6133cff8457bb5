"""The callbacks that come with descend: early stopping, checkpoints, the recorder and a progress bar.

``fit`` adds a :class:`ProgressBar` (when stderr is a terminal), an :class:`EarlyStopping` (when there is a
validation set, unless told otherwise), and, when it writes a run folder, a :class:`Recorder` and a
:class:`Checkpoint`. Pass your own instances to change their settings.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import torch

from descend.errors import ConfigError
from descend.metrics import greater_is_better
from descend.train.state import Callback, TrainState

__all__ = ["Checkpoint", "EarlyStopping", "ProgressBar", "Recorder"]


def _positive_int(owner: str, name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or None" if allow_none else ""
        raise ConfigError(f"{owner}: invalid {name}={value!r}; expected a positive int{extra}")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    An epoch improves on the best value :math:`b` when :math:`v < b - \\delta` (or :math:`v > b + \\delta` for
    metrics where larger is better: accuracy, r2), :math:`\\delta` = ``min_delta``. Patience counts epochs, not
    steps. With ``restore_best`` (the default) the model ends with the weights of the best epoch, whatever
    stopped the run. Its counters and the best weights are saved in checkpoints, so a resumed run stops where
    the uninterrupted one would.

    ``tie_break``: a second metric for epochs that tie the best value of ``monitor`` (by default, for a metric
    where larger is better, ``val_loss``, or ``loss`` for a training metric): such an epoch improves when the
    tie-break is lower than at the best epoch. On a small validation set accuracy moves in steps of one row and
    ties are the rule; without it the run keeps the first epoch to reach the best accuracy, while the loss is
    still falling (see ``docs/benchmarks.md``, the monitor measurement). None: ties never improve.

    ``start_epoch``: the run is not stopped before this many epochs have ended (the best epoch is tracked from the
    first). None (default): ``descend.fit`` sets it to the epoch in which its learning-rate schedule has annealed
    (fallen to half its peak; 0 without a schedule), so that a run is not cut at the schedule's peak, before the
    annealing that a schedule is for; outside fit, None is 0.

    Example:
        >>> EarlyStopping(monitor="val_accuracy", patience=5).mode
        'max'
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
        start_epoch: int | None = None,
        tie_break: str | None = "auto",
    ) -> None:
        _positive_int("EarlyStopping", "patience", patience)
        if start_epoch is not None and (isinstance(start_epoch, bool) or not isinstance(start_epoch, int)
                                        or start_epoch < 0):  # fmt: skip
            raise ConfigError(f"EarlyStopping: invalid start_epoch={start_epoch!r}; expected an int >= 0 or None")
        self.start_epoch = start_epoch
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ConfigError(f"EarlyStopping: invalid min_delta={min_delta!r}; expected a number >= 0")
        self.monitor = monitor
        self.mode = "max" if greater_is_better(monitor) else "min"
        if tie_break == "auto":
            tie_break = None if self.mode == "min" else ("val_loss" if monitor.startswith("val_") else "loss")
        self.tie_break = tie_break
        self.best_tie = math.inf
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best = restore_best
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_weights: dict[str, Any] | None = None

    def on_epoch_end(self, state: TrainState) -> None:
        if self.monitor not in state.row:
            raise ConfigError(
                f"EarlyStopping: monitor {self.monitor!r} is not recorded; expected one of {', '.join(state.row)}"
            )
        value = state.row[self.monitor]
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        tie = state.row.get(self.tie_break, math.inf) if self.tie_break else math.inf
        if better or (value == self.best and tie < self.best_tie):
            self.best, self.best_epoch, self.wait, self.best_tie = value, int(state.row["epoch"]), 0, tie
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience and state.stop is None and state.row["epoch"] >= (self.start_epoch or 0):
                state.stop = "early_stopping"
                state.log_event("early_stop", epoch=int(state.row["epoch"]), step=state.step, monitor=self.monitor,
                                best=self.best, best_epoch=self.best_epoch, lr=state.row.get("lr"),
                                planned_epochs=state.epochs)  # fmt: skip

    def on_fit_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)
            state.log_event("restore_best", epoch=self.best_epoch, monitor=self.monitor, value=self.best)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_weights": self.best_weights,
                "best_tie": self.best_tie}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_tie = state.get("best_tie", math.inf)
        self.best_weights = state["best_weights"]


class Checkpoint(Callback):
    """Write a checkpoint every ``every_steps`` optimizer steps and/or every ``every_epochs`` epochs.

    Checkpoints go to ``<run folder>/checkpoints/step-<step>.pt``, written to a temporary file and renamed, so a
    killed run leaves the last whole checkpoint. Only the newest ``keep`` are kept (None keeps all). A
    checkpoint holds the model, optimizer, schedule step, RNG states, data order and callback states; open
    one with ``torch.load(path, weights_only=True)``.
    """

    def __init__(self, *, every_steps: int | None = None, every_epochs: int | None = 1, keep: int | None = 2) -> None:
        _positive_int("Checkpoint", "every_steps", every_steps, allow_none=True)
        _positive_int("Checkpoint", "every_epochs", every_epochs, allow_none=True)
        _positive_int("Checkpoint", "keep", keep, allow_none=True)
        self.every_steps = every_steps
        self.every_epochs = every_epochs
        self.keep = keep

    def on_step_end(self, state: TrainState) -> None:
        if self.every_steps is not None and state.step % self.every_steps == 0:
            state.save_checkpoint(keep=self.keep)

    def on_epoch_end(self, state: TrainState) -> None:
        last = state.stop is not None or state.epoch + 1 >= state.epochs
        if self.every_epochs is not None and ((state.epoch + 1) % self.every_epochs == 0 or last):
            state.save_checkpoint(keep=self.keep)


class Recorder(Callback):
    """Append each epoch's row to ``metrics.csv`` in the run folder; with ``steps=True`` also the loss and
    learning rate of every step to ``steps.csv`` (collected as tensors, written once per epoch). The rate is the
    optimizer's after the step, read as ``metrics.csv``'s ``lr`` column is."""

    def __init__(self, *, steps: bool = False) -> None:
        self.steps = steps
        self._losses: list[Any] = []
        self._lrs: list[float] = []

    def on_epoch_start(self, state: TrainState) -> None:
        self._losses, self._lrs = [], []

    def on_step_end(self, state: TrainState) -> None:
        if self.steps and state.loss is not None:
            self._losses.append(state.loss.detach())
            self._lrs.append(float(state.optimizer.param_groups[0]["lr"]))  # after the step, as metrics.csv's lr

    def on_epoch_end(self, state: TrainState) -> None:
        run = state.run_dir
        if run is None:
            return
        run.append_metrics(state.row)
        if self.steps and self._losses:
            values = torch.stack(self._losses).tolist()
            first = state.step - len(values)
            run.append_steps([(first + i + 1, state.epoch, v, lr) for i, (v, lr) in enumerate(zip(values, self._lrs))])
        self._losses, self._lrs = [], []

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint inside an epoch holds the steps not yet written, so a resumed run writes each row once.
        return {"losses": [float(v) for v in self._losses], "lrs": list(self._lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._losses = [torch.tensor(v) for v in state.get("losses", [])]
        self._lrs = [float(v) for v in state.get("lrs", [])]


class ProgressBar(Callback):
    """Live progress on a terminal, drawn with rich: a bar over the epochs and one over the steps of the current
    epoch, each with the time left; the steps per second, the current loss and learning rate, and the latest
    validation metric; a line above the bars for each divergence-guard rollback and early stop as it happens.

    Silent when stderr is not a terminal, unless ``force`` or a ``console`` (a ``rich.console.Console``, to draw
    elsewhere or to capture it) is given. The step bar is redrawn at most every ``refresh`` seconds, and only then
    is the loss read from the device, so the display costs the steps nothing measurable.

    Example:
        >>> from rich.console import Console
        >>> bar = ProgressBar(console=Console(force_terminal=True, record=True, width=100))
        >>> bar.refresh
        0.1
    """

    def __init__(self, *, force: bool = False, console: Any = None, refresh: float = 0.1) -> None:
        self.force = force
        self.console = console
        self.refresh = refresh
        self._progress: Any = None
        self._epochs: Any = None
        self._steps: Any = None
        self._shown = 0.0
        self._started = 0.0
        self._first_step = 0
        self._epoch_step = 0
        self._metric = ""
        self._log: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        if self.console is None and not (self.force or sys.stderr.isatty()):
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Column

        console = self.console or Console(stderr=True, force_terminal=self.force or None)
        # On a narrow terminal the figures line is cut (with an ellipsis), never the bars and counts.
        figures = TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1))
        self._progress = Progress(
            TextColumn("{task.fields[name]:>5}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("eta"), TimeRemainingColumn(), figures, console=console, transient=False, auto_refresh=False,
            expand=True,
        )  # fmt: skip
        self._epochs = self._progress.add_task("", total=state.epochs, completed=state.epoch, name="epoch")
        self._steps = self._progress.add_task("", total=state.n_batches, name="step")
        self._started, self._first_step = time.perf_counter(), state.step
        self._progress.start()
        # Rollbacks and early stops are events: they are shown as they are logged, above the bars.
        self._log = state.log_event

        def log_event(kind: str, **data: Any) -> None:
            self._log(kind, **data)
            self._event(kind, data)

        state.log_event = log_event

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if self._progress is None:
            return
        if kind == "guard_rollback":
            self._progress.console.print(
                f"rollback at step {data.get('step')} ({data.get('reason')}): back to step "
                f"{data.get('rolled_back_to')}, learning rate now {_short(data.get('lr'))}", markup=False)
        elif kind == "guard_stop":
            self._progress.console.print(f"stopped at step {data.get('step')}: the descent diverged", markup=False)
        elif kind == "early_stop":
            self._progress.console.print(f"early stop after epoch {data.get('epoch')}: best epoch "
                                         f"{data.get('best_epoch')}", markup=False)

    def on_epoch_start(self, state: TrainState) -> None:
        self._epoch_step = state.step
        if self._progress is not None:
            self._progress.reset(self._steps, total=state.n_batches, description=self._metric)

    def on_step_end(self, state: TrainState) -> None:
        if self._progress is None:
            return
        now = time.perf_counter()
        if now - self._shown < self.refresh:
            return
        self._shown = now
        self._progress.update(self._steps, completed=min(state.step - self._epoch_step, state.n_batches),
                              description=self._line(state, now))
        self._progress.refresh()

    def _line(self, state: TrainState, now: float) -> str:
        rate = (state.step - self._first_step) / max(now - self._started, 1e-9)
        loss = float(state.loss.detach()) if state.loss is not None else math.nan
        lr = float(state.optimizer.param_groups[0]["lr"])
        return f"{rate:,.0f} steps/s  loss {loss:.4g}  lr {_short(lr)}" + (f"  {self._metric}" if self._metric else "")

    def on_epoch_end(self, state: TrainState) -> None:
        if self._progress is None:
            return
        row = state.row
        # the validation loss and the one metric a person reads first: accuracy, or R² (not every metric)
        wanted = [k for k in ("val_loss", "val_accuracy", "val_r2") if k in row]
        self._metric = "  ".join(f"{k} {row[k]:.4g}" for k in wanted)
        self._progress.update(self._steps, completed=state.n_batches, description=self._line(state, time.perf_counter()))
        self._progress.update(self._epochs, completed=state.epoch + 1,
                              description=f"loss {row.get('loss', math.nan):.4g}  {self._metric}".rstrip())
        self._progress.refresh()

    def on_fit_end(self, state: TrainState) -> None:
        if self._progress is not None:
            self._progress.refresh()
            self._progress.stop()
            self._progress = None
        if self._log is not None:
            state.log_event, self._log = self._log, None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
