"""The callbacks that come with descend: early stopping, checkpoints, the recorder and a progress bar.

``fit`` adds a :class:`ProgressBar` (when stderr is a terminal), an :class:`EarlyStopping` (when there is a
validation set, unless told otherwise), and, when it writes a run folder, a :class:`Recorder` and a
:class:`Checkpoint`. Pass your own instances to change their settings.
"""

from __future__ import annotations

import math
import sys
from typing import Any

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
        self._first_step = 0

    def on_epoch_start(self, state: TrainState) -> None:
        self._losses, self._lrs = [], []
        self._first_step = state.step

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
            import torch

            values = torch.stack(self._losses).tolist()
            first = state.step - len(values)
            run.append_steps([(first + i + 1, state.epoch, v, lr) for i, (v, lr) in enumerate(zip(values, self._lrs))])
        self._losses, self._lrs = [], []

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint inside an epoch holds the steps not yet written, so a resumed run writes each row once.
        return {"losses": [float(v) for v in self._losses], "lrs": list(self._lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        self._losses = [torch.tensor(v) for v in state.get("losses", [])]
        self._lrs = [float(v) for v in state.get("lrs", [])]


class ProgressBar(Callback):
    """A rich progress bar over epochs on stderr, showing the latest losses; silent when stderr is not a
    terminal (unless ``force``). Updated once per epoch so it does not slow the steps."""

    def __init__(self, *, force: bool = False) -> None:
        self.force = force
        self._progress: Any = None
        self._task: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        if not (self.force or sys.stderr.isatty()):
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True, force_terminal=self.force or None),
            transient=False,
        )
        self._task = self._progress.add_task("", total=state.epochs, completed=state.epoch)
        self._progress.start()

    def on_epoch_end(self, state: TrainState) -> None:
        if self._progress is None:
            return
        shown = "  ".join(f"{k} {v:.4g}" for k, v in state.row.items() if k.endswith(("loss", "accuracy", "r2")))
        self._progress.update(self._task, completed=state.epoch + 1, description=shown)

    def on_fit_end(self, state: TrainState) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
