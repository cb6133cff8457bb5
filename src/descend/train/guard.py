"""The divergence guard: tell a diverging descent from mini-batch noise and from bad batches, and act on each.

Each step the guard reads the step's loss :math:`\\ell_t` (computed with the parameters before the step; for a
closure optimizer such as L-BFGS, the objective after the step) and, before the optimizer moves, checks that the
gradient is finite. The loss of a small batch is a noisy estimate of the training loss, so the guard judges
*blocks* of :math:`B = \\lceil \\text{rows} / b \\rceil` consecutive finite steps at batch size :math:`b` (the first
step's; :math:`B = 1` at ``rows`` (32) or more rows a step, and for full-batch descent), by their mean :math:`x_k`.
Over the normal blocks it keeps, with :math:`\\alpha = 2 / (\\text{window} + 1)`:

- the *level*, a moving average :math:`m_k = m_{k-1} + \\alpha (x_k - m_{k-1})`, and its lowest value
  :math:`m^*` (judged after the first 10 blocks in mini-batch descent, from the first step at full batch);
- the *spread* :math:`d_k`, the noise of one block: :math:`d_k^2` is the moving average (weight
  :math:`\\alpha / 4`) of :math:`\\tfrac12 (x_k - x_{k-1})^2`; successive differences leave out the trend of a
  healthy descent, which deviations from :math:`m` would count as noise. :math:`d^*` is :math:`d` when
  :math:`m^*` was reached: the noise of the run while it was healthy;
- (before the first 10 blocks, a block above ``spike`` times the running mean of those before it is a spike);
- the *floor* :math:`f = 10^{-3} \\bar x_0` (:math:`\\bar x_0` the mean of the first 10 blocks): differences of loss
  below it are not judged; relative rules near zero loss are meaningless, so every rule asks both for a factor
  and for a number of spreads.

A block is a *spike* when :math:`x_k > s \\max(m, f)` and :math:`x_k - m > s \\max(d, f)` (:math:`s` = ``spike``;
at full batch, with no sampling noise, the first condition alone). The level is *rising* when
:math:`m > r \\max(m^*, f)` and :math:`m - m^* > n \\max(d^*, f)` (:math:`r` = ``rise``, :math:`n` = ``noise``):
at near-zero loss a batch loss going from 0.02 to 0.04 is noise a few spreads wide, not divergence. At full
batch, *growth* is two steps in a row each multiplying the loss by more than 2, to its highest in ``window`` steps.

A step is *bad* when its loss or its gradient is not finite (or the gradient's norm overflows): the update is
then prevented (every ``p.grad`` is set to None before ``optimizer.step()`` runs, so nothing changes). The guard
separates three causes, named in each event's ``cause``:

==================================================== ==================================================================
situation                                            action
==================================================== ==================================================================
*bad batch*: a bad step with finite parameters,      *skip*: nothing moved, a ``guard_skip`` event (``reason``,
after normal blocks                                  ``loss``, the batch's ``rows`` when the data is in memory); the
                                                     learning rate is unchanged. If the check missed the gradient and
                                                     the update went through, the model goes back to the last good
                                                     state, at the same learning rate
*bad data*: two or more bad batches in a row         each skipped as above; when the run of them ends, one
                                                     ``guard_bad_data`` event with the ``count``, ``first_step`` and
                                                     their ``rows``; the learning rate is unchanged
*divergence*: a spike in ``patience`` blocks in a    *rollback*: model and optimizer go back to the last good state,
row (one at full batch), a level rising for          every learning rate is multiplied by ``factor``, a
``patience`` blocks, full-batch growth, or a bad     ``guard_rollback`` event (``reason``: spike, rising, growth,
step that the update caused: non-finite parameters,  non_finite_params, non_finite_after_abnormal,
a bad step while a spike or rise is pending, a       non_finite_full_batch, non_finite_streak, non_finite_repeated)
non-finite full batch after a finite one, bad
steps for a whole epoch (at least 10), or an
update undone twice since the good state
more than ``max_retries`` rollbacks                  *stop*: the model keeps the last good state, ``stop_reason`` is
                                                     ``"diverged"``, a ``guard_stop`` event says why
==================================================== ==================================================================

The last good state is kept in memory on a cadence: every ``every`` normal blocks the guard copies the model and
the optimizer (a *candidate*); a candidate becomes the *good* state once ``every`` further normal blocks have
passed, if the level is within :math:`\\max(1.5\\,m^*, m^* + d)`, so a state taken while the loss was starting to
climb is not trusted. The guard holds at most two copies of the model and optimizer state. A rollback restores
the optimizer's state too, so its step count (and a schedule driven by it) go back with it, and the statistics
above; the data order moves on, so the batches since the good state are not replayed. With a schedule the factor
multiplies the schedule's values.

An epoch in which the guard only skipped batches (or left out spiking blocks) reports as its ``loss`` the mean over
its other steps; an epoch with a rollback or the stop, or without any other step, keeps the loss the loop saw (the
mean over every step, non-finite if one was), so the history shows that the descent blew up there. Either way the
run does not stop as "diverged" for a loss the guard handled. The guard's counters, learning-rate scale, statistics,
block and saved states are part of checkpoints, so a resumed run behaves as the uninterrupted one.

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
    >>> r.stop_reason, guard.skips, guard.rollbacks, guard.diverged
    ('max_epochs', 3, 0, False)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from descend.errors import ConfigError
from descend.train.state import Callback, TrainState, clone_state

__all__ = ["DivergenceGuard"]

_FLOOR_FRACTION = 1e-3  # of the initial loss: below it, differences of loss are not judged
_FIRST = 10  # normal blocks that set the initial loss; mini-batch rules are judged after them
_GROWTH = 2.0  # full batch: two steps in a row growing the loss by this factor, to its highest, are divergence
_SLOWER = 4  # the spread's average is this many times slower than the level's
_LONG_STREAK = 10  # bad steps in a row (at least an epoch's) that are no longer taken for bad data
_MAX_ROWS = 1024  # row indices kept for a run of bad batches


class _ScaledSchedule:
    """``step -> scale * schedule(step)``; other attributes (``step``, ``state_dict``...) reach the schedule."""

    def __init__(self, schedule: Any, scale: float) -> None:
        self.schedule, self.scale = schedule, scale

    def __call__(self, step: int) -> float:
        return self.scale * float(self.schedule(step))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["schedule"], name)


def _check(name: str, value: Any, ok: Callable[[float], bool], accepted: str) -> None:
    """Refuse ``value`` unless it is a number (not a bool) for which ``ok`` holds: the type first, so that text
    is refused with the template instead of failing inside the comparison."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ConfigError(f"DivergenceGuard: invalid {name}={value!r}; expected {accepted}")


def _finite_params(model: torch.nn.Module) -> bool:
    sums = [p.detach().sum() for p in model.parameters()]
    return not sums or math.isfinite(torch.stack(sums).sum().item())


class DivergenceGuard(Callback):
    """Tell a diverging descent from noise and from bad batches: skip bad batches, roll back divergence.

    Args:
        factor: multiplies every learning rate at each rollback, in (0, 1). Default 0.1.
        spike: a block mean above ``spike`` times its level, and ``spike`` spreads above it, is abnormal, > 1.
            Default 10.
        rise: the level must exceed ``rise`` times its lowest value to be rising, > 1. Default 3.
        noise: ... and exceed its lowest value by ``noise`` spreads, > 0. Default 4.
        patience: abnormal blocks (spikes, or a rising level) in a row that trigger a rollback, int >= 1. Default 3.
        window: the level's average spans about ``window`` blocks (its weight is ``2 / (window + 1)``), int >= 1.
            Default 20.
        every: normal blocks between copies of the state (the candidate good state), int >= 1. Default 20.
        max_retries: rollbacks allowed before the run stops, int >= 0. Default 5.
        rows: the fewest rows a judged loss covers, int >= 1. Default 32: at batch size ``b`` the guard judges the
            mean of ``ceil(rows / b)`` consecutive steps (``block`` after the first step).
        check_grads: before each step, check that the gradient is finite and prevent the update if not.
            ``"ends"`` (default) checks the step's loss (a NaN or an infinity in a batch reaches it: free, the
            guard reads it anyway) and, for a batch whose loss is over ``spike`` times the level or while the
            level is not known yet, the first parameter's gradient (usually the first layer's weight, which meets
            the raw features: an overflow shows there first, and only features that also lift the loss make
            one); ``"last"`` the loss and, every step, the last parameter's gradient (one sum: about 2% of a
            small MLP's step); ``"all"`` the loss and every gradient (one fused norm: about 7% of that step,
            measured in ``docs/benchmarks.md``); False none. A non-finite gradient the check misses (a gradient
            hook that makes one on a normal batch, say) shows after the update as non-finite parameters, which
            count as divergence: a rollback.

    After the run: ``rollbacks``, ``skips`` and ``scale`` (the product of the factors applied) tell what it did;
    ``diverged`` whether it saw the descent diverge (a rollback or the stop), ``diverged_steps`` the steps at which
    it did; ``events`` lists the same records as events.jsonl. Under ``precision="16-mixed"`` a step the gradient
    scaler skipped (its *scaled* gradient overflowed float16 and it lowered the scale) is no bad batch and no
    divergence: a ``guard_skip`` event with ``reason="loss_scale_overflow"``, counted in ``scaler_skips``, its
    finite loss judged as any other; no rollback and the learning rate unchanged.

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
        noise: float = 4.0,
        patience: int = 3,
        window: int = 20,
        every: int = 20,
        max_retries: int = 5,
        rows: int = 32,
        check_grads: str | bool = "ends",
    ) -> None:
        _check("factor", factor, lambda v: 0 < v < 1, "a number in (0, 1)")
        _check("spike", spike, lambda v: v > 1, "a number > 1")
        _check("rise", rise, lambda v: v > 1, "a number > 1")
        _check("noise", noise, lambda v: v > 0, "a number > 0")
        for name, value, low in (("patience", patience, 1), ("window", window, 1), ("every", every, 1),
                                 ("max_retries", max_retries, 0), ("rows", rows, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"DivergenceGuard: invalid {name}={value!r}; expected an int >= {low}")
        if check_grads not in ("ends", "last", "all", False):
            raise ConfigError(
                f"DivergenceGuard: invalid check_grads={check_grads!r}; expected 'ends', 'last', 'all' or False"
            )
        self.factor, self.spike, self.rise, self.noise = float(factor), float(spike), float(rise), float(noise)
        self.patience, self.window, self.rows = patience, window, rows
        self.every, self.max_retries, self.check_grads = every, max_retries, check_grads
        self.rollbacks = 0
        self.skips = 0
        self.scaler_skips = 0  # steps the gradient scaler skipped on an overflow of its scaled gradient
        self.scale = 1.0
        self.block = 1  # steps per judged block: ceil(rows / batch size), set at the first step
        self.diverged_steps: list[int] = []
        self.events: list[dict[str, Any]] = []
        self._alpha = 2.0 / (window + 1)
        # the loss statistics, over normal blocks
        self._n = 0  # normal blocks seen
        self._level = 0.0  # m: moving average of block means
        self._var = 0.0  # slower moving average of half the squared change of block mean
        self._last = 0.0  # the last normal block's mean
        self._spread = 0.0  # d: its square root
        self._best = math.inf  # m*: the lowest level
        self._best_spread = 0.0  # the spread when the level was lowest
        self._first: list[float] = []
        self._floor = 0.0
        self._recent: deque[float] = deque(maxlen=window)  # full batch: the last losses (the growth rule)
        self._strikes = 0  # spiking blocks in a row
        self._high = 0  # blocks in a row with a rising level
        self._blocks = 0  # normal blocks so far: the candidate cadence
        self._block_sum, self._block_steps = 0.0, 0
        # bad batches in a row: count, first step, their rows
        self._streak, self._streak_step, self._streak_rows = 0, 0, list[int]()
        self._good: dict[str, Any] | None = None
        self._candidate: dict[str, Any] | None = None
        self._spare: dict[str, Any] | None = None  # a discarded copy, written over by the next candidate
        # The model's state-dict names and tensors (its parameters and buffers themselves), listed at the fit's
        # start; None when the state dict holds something else (then every copy is made afresh).
        self._live: tuple[tuple[str, ...], list[Tensor]] | None = None
        self._prevented = False  # the check before the update found a non-finite gradient and prevented it
        self._read: Tensor | None = None  # the loss the check read, its version and value: read once a step
        self._read_version, self._read_value = 0, 0.0
        # the rules' thresholds for the next block, set by ``_refresh`` whenever the statistics change
        self._judging, self._rising = False, False
        self._spike_at, self._spike_gap = math.inf, -math.inf
        self._undone = False  # whether an update was undone at the same rate since the good state was taken
        self._handle: Any = None
        self._state: TrainState | None = None
        self._full = False  # full-batch descent: no sampling noise
        self._epoch_steps = 1  # steps per epoch
        self._sized = False  # whether ``block`` has been set from the batch size
        self._epoch_sum, self._epoch_count, self._intervened = 0.0, 0, False
        self._pending_sum, self._pending_count = 0.0, 0  # the open block's steps in this epoch
        self._rolled_back = False
        self._gave_up = False

    @property
    def diverged(self) -> bool:
        """Whether the guard saw the descent diverge: it rolled back at least once, or stopped the run."""
        return bool(self.diverged_steps)

    # -- hooks ---------------------------------------------------------------------------------------------

    def on_fit_start(self, state: TrainState) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._state = state  # the step's loss, for the check before the update (the loop sets it first)
        if self.check_grads:
            self._handle = state.optimizer.register_step_pre_hook(self._before_step)
        # Full batch: the loss is the training loss itself, without sampling noise. Else the first step's
        # batch size sets the block (``state.batch_rows``, read in on_step_end).
        self._full = state.n_batches <= 1
        self._sized = self._full
        if self._full:
            self.block = 1
        self._epoch_steps = max(state.n_batches, 1)
        self._refresh()  # the thresholds depend on whether the descent is full-batch
        if self.scale != 1.0:  # resumed after rollbacks: fixed rates come scaled from the checkpoint, schedules not
            self._apply_scale(state.optimizer, 1.0, self.scale)
        live = state.model.state_dict(keep_vars=True)
        tensors = list(live.values())
        self._live = (tuple(live), tensors) if all(isinstance(t, Tensor) for t in tensors) else None
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
        loss = state.loss
        # The check before the update read this loss already (the same tensor, unchanged since): reuse its value.
        if loss is self._read and loss._version == self._read_version:
            value = self._read_value
        else:
            value = loss.item()
        self._read = None
        prevented, self._prevented = self._prevented, False
        if state.scaler_skipped:  # the gradient scaler (precision="16-mixed") skipped the step: nothing moved
            if math.isfinite(value):  # the scaled gradient overflowed float16; the scaler lowered its scale
                self.scaler_skips += 1
                self._log(state, "guard_skip", reason="loss_scale_overflow", cause="loss_scale", loss=value,
                          loss_scale=state.loss_scale)  # fmt: skip
            else:
                prevented = True  # a bad batch, judged as any other
        if not prevented and math.isfinite(value):
            if self._streak:
                self._end_streak(state)
            self._block_sum += value
            self._block_steps += 1
            self._pending_sum += value
            self._pending_count += 1
            if self._block_steps >= self.block:
                self._end_block(state, value if self.block == 1 else self._block_sum / self._block_steps)
            return
        self._intervened = True
        seen = "non_finite_grad" if math.isfinite(value) else "non_finite_loss"
        reason = self._diverging(state, prevented, value)
        if reason is not None:
            self._rollback(state, reason, value, seen=seen)
            return
        self.skips += 1
        if self._streak == 0:
            self._streak_step = state.step
        self._streak += 1
        rows = self._rows(state)
        if rows is not None and len(self._streak_rows) < _MAX_ROWS:
            self._streak_rows.extend(rows[: _MAX_ROWS - len(self._streak_rows)])
        extra: dict[str, Any] = {} if rows is None else {"rows": rows}
        if prevented:  # nothing moved: the batch is simply skipped
            self._log(state, "guard_skip", reason=seen, cause="bad_batch", loss=value, **extra)
        else:  # the update already happened (the check missed it): undo it, keep the learning rate
            self._log(state, "guard_skip", reason=seen, cause="bad_batch", loss=value,
                      rolled_back_to=self._good_step(), **extra)  # fmt: skip
            self._restore(state, reduce=False)

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
        if self._streak:
            self._end_streak(state)
        if self._handle is not None:
            self._handle.remove()
        self._handle = None

    # -- the rules -----------------------------------------------------------------------------------------

    def _end_block(self, state: TrainState, mean: float) -> None:
        """Judge the block just completed, of mean loss ``mean`` (events report it as their ``loss``)."""
        pending_sum, pending_count = self._pending_sum, self._pending_count
        self._block_sum, self._block_steps, self._pending_sum, self._pending_count = 0.0, 0, 0.0, 0
        if mean > self._spike_at and mean - self._level > self._spike_gap:  # a spike (thresholds: ``_refresh``)
            self._intervened = True
            self._strikes += 1
            if self._full or self._strikes >= self.patience:
                self._rollback(state, "spike", mean)
            return
        if self._full and self._is_growing(mean):
            self._intervened = True
            self._rollback(state, "growth", mean)
            return
        self._strikes = 0
        self._epoch_sum += pending_sum
        self._epoch_count += pending_count
        self._add(mean)
        self._blocks += 1
        self._high = self._high + 1 if self._rising else 0
        if self._high >= self.patience:
            self._rollback(state, "rising", mean)
        elif self._blocks % self.every == 0:
            self._take_candidate(state)

    def _add(self, value: float) -> None:
        self._update(value)
        self._refresh()

    def _update(self, value: float) -> None:
        n = self._n = self._n + 1
        if n > 1:  # running means at first, then moving averages
            # half the squared difference of successive block means: the noise's variance, which a trend in the
            # loss (the descent itself) hardly adds to, unlike deviations from the moving average
            weight = max(self._alpha / _SLOWER, 1 / (n - 1))
            self._var += weight * (0.5 * (value - self._last) ** 2 - self._var)
            self._spread = math.sqrt(self._var)
        self._last = value
        self._level += max(self._alpha, 1 / n) * (value - self._level)
        if self._full:
            self._recent.append(value)
        if len(self._first) < _FIRST:
            self._first.append(value)
            self._floor = _FLOOR_FRACTION * sum(self._first) / len(self._first)
        if n >= (1 if self._full else _FIRST) and self._level <= self._best:
            self._best, self._best_spread = self._level, self._spread

    def _refresh(self) -> None:
        """Set the rules' thresholds from the statistics (after each normal block, a restore or a load).

        The statistics are judged after the first full-batch loss, after ``_FIRST`` normal blocks else. A block
        of mean ``x`` is a spike when ``x > _spike_at`` and ``x - m > _spike_gap``: before the statistics are
        judged, a jump by ``spike`` times the running mean of the blocks before it (none for the first block); at
        full batch, with no sampling noise, a jump by ``spike`` times the level; else both the factor and
        ``spike`` spreads. ``_rising``: the level is over ``rise`` times its lowest and ``noise`` spreads above it.
        """
        floor, level, n = self._floor, self._level, self._n
        self._judging = judging = n >= (1 if self._full else _FIRST)
        self._spike_at = self.spike * max(level, floor) if n else math.inf
        self._spike_gap = self.spike * max(self._spread, floor) if judging and not self._full else -math.inf
        self._rising = False
        if judging and self._best != math.inf:
            best, spread = max(self._best, floor), max(self._best_spread, floor)
            self._rising = level > self.rise * best and level - best > self.noise * spread

    def _is_growing(self, value: float) -> bool:
        """Full batch: the last two steps each multiplied the loss by more than ``_GROWTH``, to its highest."""
        if len(self._recent) < 2:
            return False
        before, last = self._recent[-2], self._recent[-1]
        return value > _GROWTH * last and last > _GROWTH * before and value > max(self._recent)

    def _diverging(self, state: TrainState, prevented: bool, value: float) -> str | None:
        """Why a bad step is divergence rather than a bad batch (None: a bad batch)."""
        if self._strikes or self._high:
            return "non_finite_after_abnormal"
        if self._full and self._streak == 0 and self._n:  # the same rows gave a finite loss a step ago
            return "non_finite_full_batch"
        if self._streak + 1 >= max(self._epoch_steps, _LONG_STREAK):
            return "non_finite_streak"
        if not prevented and not math.isfinite(value):
            if self._undone:  # undone once already since the good state: the descent itself keeps doing it
                return "non_finite_repeated"
            self._undone = True
            return None  # the batch's own loss, taken before the update: the update it made is undone
        if not _finite_params(state.model):
            return "non_finite_params"
        return None

    def _rows(self, state: TrainState) -> list[int] | None:
        index = getattr(state, "batch_index", None)
        return None if index is None else [int(i) for i in index.tolist()]

    def _end_streak(self, state: TrainState) -> None:
        """A run of bad batches ended: two or more in a row are reported as a data problem, in one event."""
        if self._streak >= 2:
            extra: dict[str, Any] = {"rows": list(self._streak_rows)} if self._streak_rows else {}
            message = (f"{self._streak} batches in a row gave a non-finite loss or gradient with finite parameters: "
                       "the data holds bad values (the batches were skipped, the learning rate kept)")  # fmt: skip
            self._log(state, "guard_bad_data", cause="bad_data", count=self._streak, first_step=self._streak_step,
                      message=message, **extra)  # fmt: skip
        self._streak, self._streak_rows = 0, []

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        loss = self._state.loss if self._state is not None else None
        value = math.nan
        if loss is not None:
            value = loss.item()
            self._read, self._read_version, self._read_value = loss, loss._version, value
        # The step's loss (one number, already computed): a NaN or an infinity anywhere in the batch reaches it.
        if loss is not None and not math.isfinite(value):
            pass
        elif self.check_grads == "ends":
            # A gradient that overflows while the loss stays finite takes features large enough to lift the loss
            # far above its level too: the first layer's weight (which meets the raw features) is summed only for
            # such a batch, or while the level is not known yet, so that a normal step costs one number.
            if loss is not None and self._judging and value <= self._spike_at:  # not a spike: the loss vouches
                return
            grad = optimizer.param_groups[0]["params"][0].grad
            if grad is None or math.isfinite(grad.sum().item()):
                return
        elif self.check_grads == "last":
            grad = optimizer.param_groups[-1]["params"][-1].grad
            if grad is None or math.isfinite(grad.sum().item()):
                return
        else:
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            # One norm per gradient (fused), their sum, one synchronisation: non-finite if any entry is, or if the
            # gradient is so large that its norm overflows.
            if not grads or math.isfinite(torch.stack(torch._foreach_norm(grads)).sum().item()):
                return
        self._prevented = True
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def _rollback(self, state: TrainState, reason: str, value: float, **extra: Any) -> None:
        self.diverged_steps.append(state.step)
        self._streak, self._streak_rows = 0, []
        if self.rollbacks >= self.max_retries:
            self._restore(state, reduce=False)
            self._gave_up = self._rolled_back = True
            message = (
                f"the loss kept diverging after {self.rollbacks} rollbacks (learning rates scaled by {self.scale:g}); "
                f"the model holds the last good state, from step {self._good_step()}; try a smaller lr"
            )
            self._log(state, "guard_stop", reason=reason, cause="divergence", loss=value, message=message, **extra)
            state.stop = "diverged"
            return
        good_step = self._good_step()
        self._rolled_back = True
        self._restore(state, reduce=True)
        self.rollbacks += 1
        self._log(state, "guard_rollback", reason=reason, cause="divergence", loss=value, rolled_back_to=good_step,
                  lr_scale=self.scale, lr=float(state.optimizer.param_groups[0]["lr"]),
                  retries_left=self.max_retries - self.rollbacks, **extra)  # fmt: skip

    def _restore(self, state: TrainState, *, reduce: bool) -> None:
        good = self._good
        assert good is not None
        state.model.load_state_dict(good["model"])
        state.optimizer.load_state_dict(clone_state(good["optimizer"]))
        if reduce:
            self.scale *= self.factor
        # The optimizer's learning rates are now those of the good state, taken at scale good["scale"].
        self._apply_scale(state.optimizer, self.scale / good["scale"], self.scale)
        self._spare, self._candidate = self._candidate, None
        self._strikes = self._high = 0
        # The open block's steps were finite: they stay in the epoch's loss, but the block starts again.
        self._epoch_sum += self._pending_sum
        self._epoch_count += self._pending_count
        self._block_sum, self._block_steps, self._pending_sum, self._pending_count = 0.0, 0, 0.0, 0
        self._n, self._level, self._var, self._best, self._best_spread, self._last = good["stats"]
        self._spread = math.sqrt(self._var)
        self._recent = deque(good["recent"], maxlen=self.window)
        self._refresh()

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

    def _snapshot(self, state: TrainState, spare: dict[str, Any] | None = None) -> dict[str, Any]:
        """A copy of the model and the optimizer, and the statistics that judged them. A discarded copy of the
        same layout (``spare``) is written over in place instead: one fused copy rather than a clone per tensor,
        and the model's tensors listed once a fit (``_live``), not by walking its modules each time."""
        optimizer = state.optimizer.state_dict()
        copies = None if spare is None or not isinstance(optimizer, dict) else self._refill(spare, optimizer)
        model, optimizer = copies or (clone_state(state.model.state_dict()), clone_state(optimizer))
        return {
            "step": state.step,
            "scale": self.scale,
            "model": model,
            "optimizer": optimizer,
            "stats": [self._n, self._level, self._var, self._best, self._best_spread, self._last],
            "recent": list(self._recent),
        }

    def _refill(self, spare: dict[str, Any], optimizer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``spare``'s model and optimizer state overwritten with the live ones, or None when its layout differs
        (other state keys or shapes, state that is not a tensor or a number: then the copy is made afresh)."""
        model, live = spare["model"], self._live
        if live is None or tuple(model) != live[0]:
            return None
        targets, sources = list(model.values()), list(live[1])
        saved, fresh = spare["optimizer"].get("state"), optimizer.get("state")
        if not isinstance(saved, dict) or not isinstance(fresh, dict) or saved.keys() != fresh.keys():
            return None  # an optimizer whose state dict is not torch's layout: copied afresh
        state: dict[Any, dict[str, Any]] = {}
        for key, values in fresh.items():
            kept = saved[key]
            if not isinstance(values, dict) or not isinstance(kept, dict) or kept.keys() != values.keys():
                return None
            entry = state[key] = {}
            for name, value in values.items():
                old = kept[name]
                if isinstance(value, Tensor):
                    if not isinstance(old, Tensor) or old.shape != value.shape or old.dtype != value.dtype \
                            or old.device != value.device:  # fmt: skip
                        return None
                    targets.append(old)
                    sources.append(value)
                    entry[name] = old
                elif isinstance(value, (bool, int, float, str)) or value is None:
                    entry[name] = value
                else:
                    return None
        with torch.no_grad():  # the model's entries are its parameters themselves (read, never recorded)
            torch._foreach_copy_(targets, sources)
        rest = {k: clone_state(v) for k, v in optimizer.items() if k != "state"}
        return model, {"state": state, **rest}

    def _take_candidate(self, state: TrainState) -> None:
        best = max(self._best, self._floor)
        if self._candidate is not None and self._level <= max(1.5 * best, best + self._spread):
            spare, self._good, self._undone = self._good, self._candidate, False
        else:
            spare = self._candidate or self._spare
        self._spare = None
        # The block just judged was normal: its loss, and the updates that followed it, were finite (the check
        # before each update prevents a non-finite one). Parameters made non-finite some other way give
        # non-finite losses, so the copy never sees the ``every`` normal blocks it needs to become the good state.
        self._candidate = self._snapshot(state, spare)

    def _good_step(self) -> int | None:
        return None if self._good is None else int(self._good["step"])

    def _log(self, state: TrainState, kind: str, **data: Any) -> None:
        record = {"step": state.step, "epoch": state.epoch, "batch": state.batch, **data}
        self.events.append({"event": kind, **record})
        state.log_event(kind, **record)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rollbacks": self.rollbacks, "skips": self.skips, "scale": self.scale, "block": self.block,
            "scaler_skips": self.scaler_skips,
            "diverged_steps": list(self.diverged_steps), "stats": [self._n, self._level, self._var, self._best, self._best_spread, self._last],
            "first": list(self._first), "floor": self._floor, "recent": list(self._recent),
            "strikes": self._strikes, "high": self._high, "blocks": self._blocks, "block_sum": self._block_sum,
            "block_steps": self._block_steps, "streak": [self._streak, self._streak_step, list(self._streak_rows)],
            "good": self._good, "candidate": self._candidate, "gave_up": self._gave_up, "undone": self._undone,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks, self.skips, self.scale = int(state["rollbacks"]), int(state["skips"]), float(state["scale"])
        self.scaler_skips = int(state.get("scaler_skips", 0))
        if "stats" not in state:  # a checkpoint of the median-based guard: its statistics start again
            self.block, self._good, self._gave_up = int(state.get("block", 1)), state["good"], bool(state["gave_up"])
            if self._good is not None:
                self._good.setdefault("stats", [0, 0.0, 0.0, math.inf, 0.0, 0.0])
            return
        self.block, self._blocks = int(state["block"]), int(state["blocks"])
        self.diverged_steps = [int(s) for s in state["diverged_steps"]]
        n, level, var, best, best_spread, self._last = state["stats"]
        self._n, self._level, self._var, self._spread = int(n), float(level), float(var), math.sqrt(float(var))
        self._best, self._best_spread = float(best), float(best_spread)
        self._first, self._floor = [float(v) for v in state["first"]], float(state["floor"])
        self._recent = deque(state["recent"], maxlen=self.window)
        self._strikes, self._high = int(state["strikes"]), int(state["high"])
        self._block_sum, self._block_steps = float(state["block_sum"]), int(state["block_steps"])
        streak, step, rows = state["streak"]
        self._streak, self._streak_step, self._streak_rows = int(streak), int(step), [int(r) for r in rows]
        self._good, self._candidate, self._gave_up = state["good"], state["candidate"], bool(state["gave_up"])
        self._spare = None
        self._undone = bool(state["undone"])
        for mean in state.get("group", ()):  # blocks an earlier version left for later: added as they were due
            self._update(float(mean))
            self._blocks += 1
        self._refresh()
