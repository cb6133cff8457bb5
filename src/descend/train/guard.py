"""The divergence guard: roll back to the last good state when the loss blows up, and try again more gently.

Each step the guard reads the step's loss :math:`\\ell_t` (computed with the parameters before the step) and,
before the optimizer moves, checks that the gradient is finite. The loss of a small batch is a noisy estimate of
the training loss: with one row per step, one row's cross-entropy is routinely 100 times the median row's. So the
guard judges losses over *blocks* of :math:`B = \\lceil \\text{rows} / b \\rceil` consecutive finite steps at batch
size :math:`b` (the first step's; :math:`B = 1` at ``rows`` or more rows a step, and for
full-batch descent), whose mean :math:`\\bar\\ell` covers at least ``rows`` (32) rows, as one step of fit's default
batch size does. Every rule below counts blocks, so the guard behaves the same per row seen at any batch size;
at :math:`B = 1` a block is a step. A step or block is *abnormal* when

- the step's gradient or loss is not finite (the optimizer's update is then prevented: every ``p.grad`` is set to
  None before ``optimizer.step()`` runs, so nothing changes; the step is left out of its block), or
- the block is a *spike*: :math:`\\bar\\ell > s \\cdot \\max(m, f)`, with :math:`m` the median of the last ``window``
  normal block means (the *level*), :math:`s` = ``spike``, and the floor :math:`f = 10^{-4}\\,\\bar\\ell_0` (the mean
  of the run's first 10 normal blocks), so that noise on a loss near zero does not count as a spike.

The loss is *rising* when its level climbs above ``rise`` times the lowest level seen, :math:`m > r \\cdot
\\max(\\min m, f)`: a learning rate a few times too large makes the loss hover well above where it was without
single blocks standing out, and the median needs half the window to be high before it moves. Judged on single
rows (batch size 1), the median of 20 losses swings by far more than ``rise`` from noise alone (iris with Adam:
five rollbacks in a healthy run); on blocks of 32 rows it does not.

What it does:

==================================================== ==================================================================
situation                                            action
==================================================== ==================================================================
an isolated non-finite step (no abnormal step or     *skip*: the update was prevented, the batch is skipped, a
block since the last normal block), e.g. a batch     ``guard_skip`` event is recorded; the learning rate is unchanged
holding a NaN
a non-finite step after an abnormal one,             *rollback*: model and optimizer go back to the last good
``patience`` abnormal steps or blocks in a row, or   state, every learning rate is multiplied by ``factor``, a
a rising loss                                        ``guard_rollback`` event is recorded
more than ``max_retries`` rollbacks                  *stop*: the model keeps the last good state, ``stop_reason`` is
                                                     ``"diverged"``, a ``guard_stop`` event says why
==================================================== ==================================================================

The last good state is kept in memory on a cadence: every ``every`` normal blocks the guard copies the model and
the optimizer (a *candidate*); a candidate becomes the *good* state once ``every`` further normal blocks have
passed, if the level is within 1.5 times the lowest level, so a state taken while the loss was starting to climb
is not trusted. The guard holds at most two copies of the model and optimizer state. A rollback restores the
optimizer's state too, so its step count (and a schedule driven by it) go back with it; the data order moves on,
so the batches since the good state are not replayed. With a schedule the factor multiplies the schedule's values.

An epoch in which the guard only skipped batches (or left out spiking blocks) reports as its ``loss`` the mean over
its other steps; an epoch with a rollback or the stop, or without any other step, keeps the loss the loop saw (the
mean over every step, non-finite if one was), so the history shows that the descent blew up there. Either way the
run does not stop as "diverged" for a loss the guard handled. The guard's counters, learning-rate scale, block
and saved states are part of checkpoints, so a resumed run behaves as the uninterrupted one.

``descend.fit`` adds a guard by default (``guard=True``); pass ``guard=False`` to train without one, or a
``DivergenceGuard(...)`` to change its settings.

Example:
    >>> import torch, descend
    >>> from types import SimpleNamespace
    >>> X = torch.randn(256, 3); y = X @ torch.tensor([1.0, -2.0, 0.5])
    >>> X[7, 0] = float("nan")                           # one bad row: one bad batch per epoch
    >>> data = SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task="regression")
    >>> guard = DivergenceGuard()
    >>> r = descend.fit("linear", data, optimizer="sgd", lr=0.05, epochs=3, guard=guard, tol=None)
    >>> r.stop_reason, guard.skips, guard.rollbacks
    ('max_epochs', 3, 0)
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch
from torch import Tensor

from descend.errors import ConfigError
from descend.train.state import Callback, TrainState

__all__ = ["DivergenceGuard"]

_FLOOR_FRACTION = 1e-4
_FIRST = 10  # normal blocks needed before spikes are judged, and that set the floor


class _ScaledSchedule:
    """``step -> scale * schedule(step)``; other attributes (``step``, ``state_dict``...) reach the schedule."""

    def __init__(self, schedule: Any, scale: float) -> None:
        self.schedule, self.scale = schedule, scale

    def __call__(self, step: int) -> float:
        return self.scale * float(self.schedule(step))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["schedule"], name)


def _clone(value: Any) -> Any:
    """A copy of a state dict: tensors cloned, containers rebuilt, other values shared (``copy.deepcopy`` is ~30x
    slower on tensors)."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


def _check(name: str, value: Any, ok: bool, accepted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        raise ConfigError(f"DivergenceGuard: invalid {name}={value!r}; expected {accepted}")


class DivergenceGuard(Callback):
    """Roll back to the last good state on a non-finite or spiking loss, reduce the learning rate, retry.

    Args:
        factor: multiplies every learning rate at each rollback, in (0, 1). Default 0.1.
        spike: a block mean above ``spike`` times its level is abnormal, > 1. Default 10.
        rise: a level above ``rise`` times the lowest level triggers a rollback, > 1. Default 3.
        patience: abnormal steps or blocks in a row that trigger a rollback, int >= 1. Default 3.
        window: how many recent normal block means make the level (their median), int >= 1. Default 20.
        every: normal blocks between copies of the state (the candidate good state), int >= 1. Default 20.
        max_retries: rollbacks allowed before the run stops, int >= 0. Default 5.
        rows: the fewest rows a judged loss covers, int >= 1. Default 32: at batch size ``b`` the guard judges the
            mean of ``ceil(rows / b)`` consecutive steps (``block`` after the first step).
        check_grads: before each step, check that the gradient is finite and prevent the update if not.
            ``"last"`` (default) checks the last parameter's gradient (usually the output layer's bias, which
            every example's loss reaches, so a NaN in a batch shows there) for a few microseconds a step;
            ``"all"`` checks every gradient (one fused norm: costs about 15% of a small model's step); False
            checks none. What the check misses shows as a non-finite loss on the next step, after the update,
            and costs a rollback instead of a skip.

    After the run, ``rollbacks``, ``skips`` and ``scale`` (the product of the factors applied) tell what it did;
    ``events`` lists the same records as events.jsonl.

    Example:
        >>> DivergenceGuard(factor=0.5, max_retries=10).factor
        0.5
    """

    def __init__(
        self,
        *,
        factor: float = 0.1,
        spike: float = 10.0,
        rise: float = 3.0,
        patience: int = 3,
        window: int = 20,
        every: int = 20,
        max_retries: int = 5,
        rows: int = 32,
        check_grads: str | bool = "last",
    ) -> None:
        _check("factor", factor, 0 < factor < 1, "a number in (0, 1)")
        _check("spike", spike, spike > 1, "a number > 1")
        _check("rise", rise, rise > 1, "a number > 1")
        for name, value, low in (("patience", patience, 1), ("window", window, 1), ("every", every, 1),
                                 ("max_retries", max_retries, 0), ("rows", rows, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"DivergenceGuard: invalid {name}={value!r}; expected an int >= {low}")
        self.factor, self.spike, self.rise = float(factor), float(spike), float(rise)
        self.patience, self.window, self.rows = patience, window, rows
        if check_grads not in ("last", "all", False):
            raise ConfigError(f"DivergenceGuard: invalid check_grads={check_grads!r}; expected 'last', 'all' or False")
        self.every, self.max_retries, self.check_grads = every, max_retries, check_grads
        self.rollbacks = 0
        self.skips = 0
        self.scale = 1.0
        self.block = 1  # steps per judged block: ceil(rows / batch size), set at the first step
        self.events: list[dict[str, Any]] = []
        self._recent: deque[float] = deque(maxlen=window)
        self._first: list[float] = []
        self._floor = 0.0
        self._level = math.inf
        self._best = math.inf
        self._strikes = 0
        self._blocks = 0  # normal blocks so far: the candidate cadence
        self._block_sum, self._block_steps = 0.0, 0
        self._good: dict[str, Any] | None = None
        self._candidate: dict[str, Any] | None = None
        self._prevented = False
        self._nonfinite_grad = False
        self._handle: Any = None
        self._sized = False  # whether ``block`` has been set from the batch size
        self._epoch_sum, self._epoch_count, self._intervened = 0.0, 0, False
        self._pending_sum, self._pending_count = 0.0, 0  # the open block's steps in this epoch
        self._rolled_back = False
        self._gave_up = False

    # -- hooks ---------------------------------------------------------------------------------------------

    def on_fit_start(self, state: TrainState) -> None:
        if self._handle is not None:
            self._handle.remove()
        if self.check_grads:
            self._handle = state.optimizer.register_step_pre_hook(self._before_step)
        # Full batch: the loss is the training loss itself, without sampling noise. Else the first step's
        # batch size sets the block (``state.batch_rows``, read in on_step_end).
        self._sized = state.n_batches <= 1
        if self._sized:
            self.block = 1
        if self.scale != 1.0:  # resumed after rollbacks: fixed rates come scaled from the checkpoint, schedules not
            self._apply_scale(state.optimizer, 1.0, self.scale)
        if self._good is None:
            self._good = self._snapshot(state)

    def on_epoch_start(self, state: TrainState) -> None:
        self._epoch_sum, self._epoch_count, self._intervened, self._rolled_back = 0.0, 0, False, False
        self._pending_sum, self._pending_count = 0.0, 0

    def on_step_end(self, state: TrainState) -> None:
        if state.loss is None:
            return
        if not self._sized and state.batch_rows > 0:
            self.block = max(1, math.ceil(self.rows / state.batch_rows))
            self._sized = True
        value = state.loss.item()
        prevented, self._prevented = self._prevented, False
        nonfinite_grad, self._nonfinite_grad = self._nonfinite_grad, False
        if math.isfinite(value) and not nonfinite_grad:
            self._block_sum += value
            self._block_steps += 1
            self._pending_sum += value
            self._pending_count += 1
            if self._block_steps >= self.block:
                self._end_block(state, value if self.block == 1 else self._block_sum / self._block_steps)
            return
        self._intervened = True
        reason = "non_finite_grad" if math.isfinite(value) else "non_finite_loss"
        if self._strikes == 0:
            self._strikes = 1
            self.skips += 1
            if prevented:  # nothing moved: the batch is simply skipped
                self._log(state, "guard_skip", reason=reason, loss=value)
            else:  # the update already happened (check_grads off): undo it, keep the learning rate
                self._log(state, "guard_skip", reason=reason, loss=value, rolled_back_to=self._good_step())
                self._restore(state, reduce=False)
            return
        self._strikes += 1
        self._rollback(state, reason, value)

    def on_epoch_end(self, state: TrainState) -> None:
        if self._intervened and state.row:
            count = self._epoch_count + self._pending_count  # the open block's steps count as normal for now
            if not self._rolled_back and count:  # else the loop's loss stays: the row shows what the loop saw
                state.row["loss"] = (self._epoch_sum + self._pending_sum) / count
            if state.stop == "diverged" and not self._gave_up:
                state.stop = None  # the loop saw the non-finite losses the guard already handled
        if self._gave_up:
            state.stop = "diverged"

    def on_fit_end(self, state: TrainState) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None

    # -- the rules -----------------------------------------------------------------------------------------

    def _end_block(self, state: TrainState, mean: float) -> None:
        """Judge the block just completed, of mean loss ``mean`` (events report it as their ``loss``)."""
        pending_sum, pending_count = self._pending_sum, self._pending_count
        self._block_sum, self._block_steps, self._pending_sum, self._pending_count = 0.0, 0, 0.0, 0
        if self._is_spike(mean):
            self._intervened = True
            self._strikes += 1
            if self._strikes >= self.patience:
                self._rollback(state, "spike", mean)
            return
        self._strikes = 0
        self._epoch_sum += pending_sum
        self._epoch_count += pending_count
        self._add(mean)
        self._blocks += 1
        if self._level > self.rise * max(self._best, self._floor):
            self._rollback(state, "rising", mean)
        elif self._blocks % self.every == 0:
            self._take_candidate(state)

    def _add(self, value: float) -> None:
        self._recent.append(value)
        if len(self._first) < _FIRST:
            self._first.append(value)
            if len(self._first) == _FIRST:
                self._floor = _FLOOR_FRACTION * sum(self._first) / _FIRST
        if len(self._recent) == self.window:
            ordered = sorted(self._recent)
            self._level = ordered[self.window // 2]
            self._best = min(self._best, self._level)

    def _is_spike(self, value: float) -> bool:
        if len(self._first) < _FIRST or not self._recent:
            return False
        level = self._level if self._level < math.inf else sorted(self._recent)[len(self._recent) // 2]
        return value > self.spike * max(level, self._floor)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.check_grads == "last":
            last = optimizer.param_groups[-1]["params"][-1].grad
            if last is None or math.isfinite(last.sum().item()):
                return
        else:
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads, foreach=True))):
                return
        self._nonfinite_grad = self._prevented = True
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def _rollback(self, state: TrainState, reason: str, value: float) -> None:
        if self.rollbacks >= self.max_retries:
            self._restore(state, reduce=False)
            self._gave_up = self._rolled_back = True
            message = (
                f"the loss kept diverging after {self.rollbacks} rollbacks (learning rates scaled by {self.scale:g}); "
                f"the model holds the last good state, from step {self._good_step()}; try a smaller lr"
            )
            self._log(state, "guard_stop", reason=reason, loss=value, message=message)
            state.stop = "diverged"
            return
        good_step = self._good_step()
        self._rolled_back = True
        self._restore(state, reduce=True)
        self.rollbacks += 1
        self._log(state, "guard_rollback", reason=reason, loss=value, rolled_back_to=good_step, lr_scale=self.scale,
                  lr=float(state.optimizer.param_groups[0]["lr"]), retries_left=self.max_retries - self.rollbacks)

    def _restore(self, state: TrainState, *, reduce: bool) -> None:
        good = self._good
        assert good is not None
        state.model.load_state_dict(good["model"])
        state.optimizer.load_state_dict(_clone(good["optimizer"]))
        if reduce:
            self.scale *= self.factor
        # The optimizer's learning rates are now those of the good state, taken at scale good["scale"].
        self._apply_scale(state.optimizer, self.scale / good["scale"], self.scale)
        self._candidate = None
        self._strikes = 0
        # The open block's steps were finite: they stay in the epoch's loss, but the block starts again.
        self._epoch_sum += self._pending_sum
        self._epoch_count += self._pending_count
        self._block_sum, self._block_steps, self._pending_sum, self._pending_count = 0.0, 0, 0.0, 0
        self._recent = deque(good["recent"], maxlen=self.window)
        self._level, self._best = float(good["level"]), float(good["best"])

    def _apply_scale(self, optimizer: torch.optim.Optimizer, ratio: float, total: float) -> None:
        """Multiply fixed learning rates by ``ratio``; make schedules' values ``total`` times their own."""
        for group in optimizer.param_groups:
            schedule = group.get("lr_schedule")
            if callable(schedule):
                if not isinstance(schedule, _ScaledSchedule):
                    schedule = group["lr_schedule"] = _ScaledSchedule(schedule, 1.0)
                schedule.scale = total
                group["lr"] = schedule(int(getattr(optimizer, "updates", 0)))
            elif isinstance(group["lr"], Tensor):
                group["lr"].mul_(ratio)
            else:
                group["lr"] = group["lr"] * ratio
            group["lr_scale"] = total  # read by fit when it sets a schedule's value on a torch optimizer

    # -- saved states --------------------------------------------------------------------------------------

    def _snapshot(self, state: TrainState) -> dict[str, Any]:
        return {
            "step": state.step,
            "scale": self.scale,
            "model": {k: v.detach().clone() for k, v in state.model.state_dict().items()},
            "optimizer": _clone(state.optimizer.state_dict()),
            "recent": list(self._recent),
            "level": self._level,
            "best": self._best,
        }

    def _take_candidate(self, state: TrainState) -> None:
        if self._candidate is not None and self._level <= 1.5 * max(self._best, self._floor):
            self._good = self._candidate
        self._candidate = None
        sums = [p.detach().sum() for p in state.model.parameters()]
        if sums and math.isfinite(torch.stack(sums).sum().item()):
            self._candidate = self._snapshot(state)

    def _good_step(self) -> int | None:
        return None if self._good is None else int(self._good["step"])

    def _log(self, state: TrainState, kind: str, **data: Any) -> None:
        record = {"step": state.step, "epoch": state.epoch, "batch": state.batch, **data}
        self.events.append({"event": kind, **record})
        state.log_event(kind, **record)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rollbacks": self.rollbacks, "skips": self.skips, "scale": self.scale, "block": self.block,
            "recent": list(self._recent), "first": list(self._first), "floor": self._floor, "level": self._level,
            "best": self._best, "strikes": self._strikes, "blocks": self._blocks, "block_sum": self._block_sum,
            "block_steps": self._block_steps, "good": self._good, "candidate": self._candidate,
            "gave_up": self._gave_up,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks, self.skips, self.scale = int(state["rollbacks"]), int(state["skips"]), float(state["scale"])
        self._recent = deque(state["recent"], maxlen=self.window)
        self._first, self._floor, self._strikes = list(state["first"]), float(state["floor"]), int(state["strikes"])
        self._level, self._best = float(state["level"]), float(state["best"])
        self._good, self._candidate, self._gave_up = state["good"], state["candidate"], bool(state["gave_up"])
        # checkpoints written before blocks existed judged every step
        self.block, self._blocks = int(state.get("block", 1)), int(state.get("blocks", 0))
        self._block_sum, self._block_steps = float(state.get("block_sum", 0.0)), int(state.get("block_steps", 0))
