"""What the training loop shows its callbacks, and the interface a callback implements.

A callback observes; it never owns the loop. It may read :class:`TrainState`, write files, keep its own state
(returned by :meth:`Callback.state_dict`, saved in every checkpoint and restored on resume), and ask the loop to
stop by setting ``state.stop`` to a reason. The hooks, in the order the loop calls them:

=================== ======================================================================================
hook                when
=================== ======================================================================================
``on_fit_start``    once, after the model, optimizer and data are ready (and after a resume has loaded)
``on_epoch_start``  before the first batch of each epoch
``on_step_end``     after each optimizer step (only called when a callback defines it, so it costs nothing
                    otherwise); ``state.loss`` is the step's loss tensor
``on_epoch_end``    after the epoch's row is in ``state.history`` (``state.row``)
``on_fit_end``      once, when the loop has stopped, before the final model is saved
=================== ======================================================================================

Example:
    >>> from descend.train import Callback
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, state):
    ...         print(state.epoch, round(state.row["loss"], 3))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Callback", "TrainState", "clone_state"]


@dataclass
class TrainState:
    """The loop's state. Epochs and batches count from 0; ``step`` counts optimizer steps taken so far."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: str
    epochs: int
    n_batches: int
    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss: Tensor | None = None
    batch_rows: int = 0  #: rows in the latest step's batch (set by the loop before ``on_step_end``)
    #: the latest step's rows, as positions in the training set (set with ``loss``); None for a full batch or a
    #: loader's batches. The loop's own index tensor, shared, not a copy: read it, do not change it.
    batch_index: Tensor | None = None
    #: under precision="16-mixed": whether the gradient scaler skipped the latest step (its scaled gradients
    #: overflowed float16; nothing moved), and then the loss scale it lowered to
    scaler_skipped: bool = False
    loss_scale: float | None = None
    row: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    stop: str | None = None
    run_dir: Any = None
    log_event: Callable[..., None] = field(default=lambda kind, **data: None)
    save_checkpoint: Callable[..., Any] = field(default=lambda **options: None)


class Callback:
    """Base class: every hook does nothing. Override the ones you need; keep ``state_dict`` JSON/tensor-only."""

    def on_fit_start(self, state: TrainState) -> None:
        pass

    def on_epoch_start(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass

    def on_fit_end(self, state: TrainState) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """The callback's state to save in a checkpoint: tensors, numbers, strings, lists and dicts only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def defines(callback: Callback, hook: str) -> bool:
    """Whether ``callback``'s class overrides ``hook`` (the loop calls per-step hooks only when defined)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def clone_state(value: Any) -> Any:
    """A copy of a state dict: tensors cloned (detached), containers rebuilt, other values shared
    (``copy.deepcopy`` is ~30x slower on tensors)."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: clone_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clone_state(v) for v in value)
    return value
