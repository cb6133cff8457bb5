"""The training loop: forward, loss, backward, step, over index batches, with exact resume.

Per step the loop does only what a careful hand-written loop does (pick the batch's rows, forward, loss,
backward, step) plus one in-place add to sum the epoch's loss; everything else (validation, metrics, the grad
norm, callbacks' epoch hooks, checkpoints) happens once per epoch, or on the cadence a callback asks for.
With ``compile=True`` the forward, loss, backward and update of a step are one compiled call
(:mod:`descend.train.compiled`) whenever nothing needs to watch the step from inside.

The data order is :class:`descend.data.Batches`: a seeded permutation per epoch, split into index batches. A
checkpoint holds its state (epoch, position, generator), the torch RNG state, the model, the optimizer, the schedule, the partial sums of the epoch and
every callback's state, so a run resumed from a checkpoint written mid-epoch takes exactly the same steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from descend.data.batching import Batches
from descend.metrics import evaluate
from descend.train.devices import Precision, rng_state, set_rng_state
from descend.train.setup import TrainData
from descend.train.state import Callback, TrainState, defines

if TYPE_CHECKING:
    from descend.train.compiled import CompiledStep

__all__ = ["Loop", "closure_convention"]


def closure_convention(optimizer: torch.optim.Optimizer) -> str | None:
    """How ``optimizer.step`` wants its closure: None (no closure: the loop calls ``backward`` itself),
    ``"loss"`` (return the loss without ``backward``: descend's Newton differentiates it itself) or
    ``"backward"`` (zero the gradients, compute the loss, call ``backward``, return the loss: L-BFGS, torch's
    convention). Read from the optimizer's ``closure_convention`` attribute; torch.optim.LBFGS is "backward"."""
    kind = getattr(optimizer, "closure_convention", None)
    if kind is None and isinstance(optimizer, torch.optim.LBFGS):
        kind = "backward"
    return kind if kind in ("loss", "backward") else None


def plain_step(optimizer: torch.optim.Optimizer, inner: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """``optimizer.step`` without the profiler annotation torch wraps around it, unless a profiler is running.

    torch wraps every optimizer's ``step`` in a profiler ``record_function``, whose enter and exit cost on a small
    model about a tenth of a step. The returned callable does what the wrapper does (global and per-optimizer step
    pre-hooks, which may replace the arguments, then the step, then the post-hooks) without the annotation; while
    a profiler is running it calls ``optimizer.step`` itself, so profiles still show every step. An optimizer
    whose ``step`` was replaced on the instance (as torch's LR schedulers do) is called as it is. ``inner``, if
    given, runs in place of the optimizer's own step function (fit's compiled step passes torch's step compiled).
    """
    from itertools import chain

    from torch.autograd import profiler
    from torch.optim import optimizer as torch_optimizer

    func = getattr(type(optimizer).step, "__wrapped__", None)
    if func is None or "step" in vars(optimizer):
        return optimizer.step
    func = inner if inner is not None else func
    pre, post = torch_optimizer._global_optimizer_pre_hooks, torch_optimizer._global_optimizer_post_hooks

    def step(closure: Any = None) -> Any:
        if profiler._is_profiler_enabled:
            return optimizer.step(closure)
        args: tuple[Any, ...] = (optimizer,) if closure is None else (optimizer, closure)
        kwargs: dict[str, Any] = {}
        for hook in chain(pre.values(), optimizer._optimizer_step_pre_hooks.values()):
            result = hook(optimizer, args, kwargs)
            if result is not None:
                args, kwargs = result
        out = func(*args, **kwargs)
        optimizer._optimizer_step_code()
        for hook in chain(optimizer._optimizer_step_post_hooks.values(), post.values()):
            hook(optimizer, args, kwargs)
        return out

    return step


def plain_zero_grad(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """``optimizer.zero_grad(set_to_none=True)`` without torch's profiler annotation, for optimizers that do not
    override it: every gradient of every param group set to None, as torch's does. Under a running profiler, or
    for an optimizer with its own ``zero_grad``, the optimizer's method is called."""
    from torch.autograd import profiler

    if type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad:
        return lambda: optimizer.zero_grad(set_to_none=True)
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def zero_grad() -> None:
        if profiler._is_profiler_enabled:
            optimizer.zero_grad(set_to_none=True)
            return
        for p in params:
            p.grad = None

    return zero_grad


class Loop:
    """One run of the loop. ``run()`` trains until a stopping rule fires; the state is in ``self.state``."""

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: TrainData,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        y: Tensor,
        y_val: Tensor,
        metrics: tuple[str, ...],
        penalty: Callable[[], Tensor] | None,
        set_lr: Callable[[int], None] | None,
        plateau: Any,
        batch_size: int,
        epochs: int,
        max_steps: int | None,
        loss_threshold: float | None,
        tol: float | None,
        n_iter_no_change: int,
        callbacks: list[Callback],
        seed: int,
        compile: bool = False,
        augment: Callable[[Tensor, int], Tensor] | None = None,
        precision: Precision | None = None,
    ) -> None:
        self.model, self.optimizer, self.data = model, optimizer, data
        self.device = data.X.device  # where fit put the model and the data
        self.precision = precision if precision is not None else Precision("32", self.device)
        self.augment = augment  # (batch, step) -> batch: a function of the step, so resume redraws it
        self.loss_fn, self.y, self.y_val = loss_fn, y, y_val
        self.metrics, self.penalty, self.set_lr, self.plateau = metrics, penalty, set_lr, plateau
        self.max_steps = max_steps
        self.loss_threshold, self.tol, self.n_iter_no_change = loss_threshold, tol, n_iter_no_change
        self.callbacks = callbacks
        self.n = len(data.X)
        self.batches: Any
        if data.stream is not None:  # a loader: its batches, in its order (reseeded per epoch)
            self.full, n_batches, self.batches = False, len(data.stream), data.stream
        else:
            self.full = batch_size >= self.n
            n_batches = 1 if self.full else math.ceil(self.n / batch_size)
            self.batches = None if self.full else Batches(self.n, batch_size, seed=seed)
        self.state = TrainState(model=model, optimizer=optimizer, task=data.task, epochs=epochs, n_batches=n_batches)
        floats = next((t.dtype for t in (y, data.X) if t.is_floating_point()), torch.get_default_dtype())  # not ids
        self.loss_sum = torch.zeros((), dtype=floats, device=self.device)
        self.grad_norm = math.nan
        self.no_change = 0
        self.elapsed = 0.0
        self.ending_epoch = False
        self.distributed: Any = None  # under torchrun: descend.train.distributed.Distributed, set by fit
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.closure = self._closure(closure_convention(optimizer))
        self.step = plain_step(optimizer)
        self.zero_grad = plain_zero_grad(optimizer)
        self.compiled: CompiledStep | None = None
        if compile and self.closure is None:
            from descend.train.compiled import CompiledStep

            # A full batch's rows (an epoch's last batch may be short): batch_size, or a DataLoader's own.
            rows = batch_size if data.stream is None else getattr(data.stream.loader, "batch_size", None)
            self.compiled = CompiledStep(model, loss_fn, penalty, optimizer, self.step, rows)

    # -- checkpoints ---------------------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        s = self.state
        # At the end of an epoch (callbacks running) the epoch is complete: resume starts the next one.
        epoch, batch = (s.epoch + 1, 0) if self.ending_epoch else (s.epoch, s.batch)
        return {
            "epoch": epoch,
            "batch": batch,
            "step": s.step,
            "stop": s.stop,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": {"step": s.step, "plateau": self.plateau.state_dict() if self.plateau is not None else None},
            "rng": {"torch": torch.get_rng_state(), **rng_state(self.device)},
            "precision": self.precision.state_dict(),
            "order": self._order_state(),
            "epoch_sums": {"loss_sum": self.loss_sum.clone(), "grad_norm": self.grad_norm, "elapsed": self.elapsed},
            "stopping": {"no_change": self.no_change},
            "history": s.history,
            "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks().items()},
            **({"distributed": self.distributed.meta} if self.distributed is not None else {}),
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        s = self.state
        s.epoch, s.batch, s.step, s.stop = ckpt["epoch"], ckpt["batch"], ckpt["step"], ckpt["stop"]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.plateau is not None and ckpt["schedule"]["plateau"] is not None:
            self.plateau.load_state_dict(ckpt["schedule"]["plateau"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        set_rng_state(ckpt["rng"], self.device)
        self.precision.load_state_dict(ckpt.get("precision", {}))
        if self.batches is not None:
            self.batches.load_state_dict(ckpt["order"])
        sums = ckpt["epoch_sums"]
        self.loss_sum, self.grad_norm, self.elapsed = sums["loss_sum"], sums["grad_norm"], sums["elapsed"]
        self.loss_sum = self.loss_sum.to(self.device)
        self.no_change = ckpt["stopping"]["no_change"]
        s.history = list(ckpt["history"])
        s.row = dict(s.history[-1]) if s.history else {}
        saved = ckpt["callbacks"]
        for key, cb in self._keyed_callbacks().items():
            if key in saved:
                cb.load_state_dict(saved[key])

    def _order_state(self) -> dict[str, Any] | None:
        if self.batches is None:
            return None
        state = self.batches.state_dict()
        if self.ending_epoch:
            state["epoch_done"] = True
        return state

    def _keyed_callbacks(self) -> dict[str, Callback]:
        """Callbacks by class name (``EarlyStopping``, ``EarlyStopping#2``, ...), so a resume restores each
        state to the callback of the same kind even if other callbacks were added or removed."""
        keyed: dict[str, Callback] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            key, i = name, 1
            while key in keyed:
                i += 1
                key = f"{name}#{i}"
            keyed[key] = cb
        return keyed

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> None:
        s = self.state
        model, loss_fn, penalty, set_lr = self.model, self.loss_fn, self.penalty, self.set_lr
        step, zero_grad, compiled, augment = self.step, self.zero_grad, self.compiled, self.augment
        X, y = self.data.X, self.y
        stream = self.data.batch  # with a loader: raw batch -> (X, y)
        amp = self.precision
        mixed, scaled = amp.mixed, amp.scaler is not None
        on_cpu = self.device.type == "cpu"  # else the batch's index moves to the data's device
        step_hooks = [cb for cb in self.callbacks if defines(cb, "on_step_end")]
        distributed = self.distributed
        max_steps = self.max_steps if self.max_steps is not None else -1
        while s.stop is None and s.epoch < s.epochs:
            if s.batch == 0:
                self.loss_sum.zero_()
                self.elapsed = 0.0
                for cb in self.callbacks:
                    cb.on_epoch_start(s)
            batches: Any = (None,)[s.batch :] if self.batches is None else self.batches
            last = s.n_batches - 1
            model.train()
            start = time.perf_counter()
            for b, idx in enumerate(batches, start=s.batch):
                if self.closure is not None:  # full batch: the optimizer evaluates the loss where it needs to
                    if set_lr is not None:
                        set_lr(s.step)
                    step(self.closure)
                    rows = self.n
                    if b == last:
                        self.grad_norm = self._grad_norm()
                    loss = self._objective_after()
                else:
                    if idx is None:
                        xb, yb = X, y
                    elif stream is not None:
                        xb, yb, _ = stream(idx, f"batch {b} of epoch {s.epoch + 1}")
                    else:
                        at = idx if on_cpu else idx.to(self.device, non_blocking=True)
                        xb, yb = X.index_select(0, at), y.index_select(0, at)
                    if augment is not None and stream is None:
                        xb = augment(xb, s.step)
                    rows = len(xb)
                    done = None
                    if compiled is not None and compiled.usable(xb, yb):
                        if set_lr is not None:
                            set_lr(s.step)
                        done = compiled(xb, yb)  # None: this step runs eagerly after all
                    if done is not None:
                        loss = done
                        if b == last:
                            self.grad_norm = self._grad_norm()
                    else:
                        if distributed is not None:  # torchrun: this process's share of the batch, through DDP
                            loss = distributed.forward_backward(xb, yb, zero_grad)
                        else:
                            # under autocast the forward in 16 bits, the loss in float32
                            loss = loss_fn(amp.forward(model, xb) if mixed else model(xb), yb)
                            if penalty is not None:
                                loss = loss + penalty()
                            zero_grad()
                            if scaled:
                                amp.backward(loss, self.optimizer)  # unscaled again before anything reads them
                            else:
                                loss.backward()
                        if b == last:
                            self.grad_norm = self._grad_norm()
                        if set_lr is not None:
                            set_lr(s.step)
                        s.loss = loss  # the step's loss, for the divergence guard's check before the update
                        if scaled:
                            self._scaled_step(b == last)
                        else:
                            step()
                        if compiled is not None:
                            compiled.eager_step_done(xb)
                self.loss_sum += loss.detach()
                s.step += 1
                s.batch = b + 1
                if set_lr is not None:  # the rate of the next update, as a descend optimizer's groups hold it
                    set_lr(s.step)
                if step_hooks:
                    s.loss, s.batch_rows = loss, rows
                    s.batch_index = idx if stream is None else None
                    self.elapsed += time.perf_counter() - start
                    start = time.perf_counter()
                    for cb in step_hooks:
                        cb.on_step_end(s)
                if s.step == max_steps:
                    s.stop = "max_steps"
                if s.stop is not None:
                    break
            self.elapsed += time.perf_counter() - start
            self._end_epoch()
        if s.stop is None:
            s.stop = "max_epochs"

    def _closure(self, kind: str | None) -> Callable[[], Tensor] | None:
        """The full-batch objective as ``step``'s closure, in the optimizer's convention (None: no closure)."""
        if kind is None:
            return None
        objective, optimizer = self._objective, self.optimizer
        if kind == "loss":
            return objective

        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = objective()
            loss.backward()
            return loss

        return closure

    def _objective(self) -> Tensor:
        """The full-batch objective: the loss on every training row, plus the penalty."""
        loss = self.loss_fn(self.model(self.data.X), self.y)
        return loss + self.penalty() if self.penalty is not None else loss

    @torch.no_grad()
    def _objective_after(self) -> Tensor:
        """The full-batch objective after a closure optimizer's step. The value ``step`` returns is the one at the
        start of the step (torch's convention); the epoch's row and the step hooks see where the step went."""
        return self._objective()

    def _grad_norm(self) -> float:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return math.nan
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))

    def _end_epoch(self) -> None:
        s = self.state
        done = max(s.batch, 1)
        row: dict[str, float] = {"epoch": s.epoch + 1, "step": s.step, "loss": float(self.loss_sum) / done}
        if self.distributed is None or self.distributed.leader:  # under torchrun: process 0's row, broadcast
            row.update(self.validate())
        row["lr"] = float(self.optimizer.param_groups[0]["lr"])
        row["grad_norm"] = self.grad_norm
        row["time"] = self.elapsed
        if self.distributed is not None:
            row = self.distributed.broadcast(row)
        s.row = row
        s.history.append(row)
        self._stopping_rules(row)
        if self.plateau is not None:
            self.plateau.step(row.get("val_loss", row["loss"]))
        self.ending_epoch = True
        try:
            for cb in self.callbacks:
                cb.on_epoch_end(s)
        finally:
            self.ending_epoch = False
        s.epoch += 1
        s.batch = 0

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        d = self.data
        if d.val_stream is None and len(d.X_val) == 0:
            return {}
        self.model.eval()
        if d.val_stream is not None:  # a validation loader: every batch's outputs, then the same numbers
            parts = [d.batch(raw, f"validation batch {k}") for k, raw in enumerate(d.val_stream)]
            out = torch.cat([self.precision.forward(self.model, x) for x, _, _ in parts])
            target, metric_target = torch.cat([t for _, t, _ in parts]), torch.cat([m for _, _, m in parts])
        else:
            out = self.precision.forward(self.model, d.X_val)
            target, metric_target = self.y_val, d.y_val
        self.model.train()
        row = {"val_loss": float(self.loss_fn(out, target))}
        row.update({f"val_{k}": v for k, v in evaluate(out, metric_target, d.task, self.metrics).items()})
        return row

    def _scaled_step(self, last: bool) -> None:
        """The gradient scaler's step (``precision="16-mixed"``): it skips the update when the scaled gradient
        overflowed float16, which is the scaler finding its scale, not the descent diverging; the guard reads
        ``scaler_skipped``. A skipped epoch-end step has no gradient norm to report."""
        s, amp = self.state, self.precision
        s.scaler_skipped = amp.step(self.optimizer, self.step)
        if s.scaler_skipped:
            s.loss_scale = amp.scale
            self.zero_grad()
            if last:
                self.grad_norm = math.nan

    def _stopping_rules(self, row: dict[str, float]) -> None:
        s = self.state
        loss = row["loss"]
        if not math.isfinite(loss):
            s.stop = "diverged"
            return
        if self.loss_threshold is not None and loss <= self.loss_threshold:
            s.stop = "loss_threshold"
            return
        if self.tol is not None and len(s.history) >= 2:
            prev = s.history[-2]["loss"]
            change = abs(prev - loss) / max(abs(prev), 1e-300)
            self.no_change = self.no_change + 1 if change < self.tol else 0
            if self.no_change >= self.n_iter_no_change:
                s.stop = "tolerance"
