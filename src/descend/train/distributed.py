"""Training one model in several processes, on one machine or several, with torch.distributed (started by torchrun).

Under ``torchrun`` (its environment sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``) ``fit`` joins the process
group torchrun describes (``gloo`` for the CPU, NCCL for CUDA tensors; a group the caller initialised is used as
it is) and trains the model wrapped in :class:`torch.nn.parallel.DistributedDataParallel`. A group fit created
lives until the process exits (then fit destroys it), and later fits in the process train in it: creating a group
again on torchrun's store after destroying one hangs now and then (gloo reads the old group's addresses), which
a script fitting twice, or an estimator's refit, must not risk. Nothing to set: the same ``descend train`` command, or the same script calling
``descend.fit``, runs under ``torchrun --nproc-per-node P`` (and ``--nnodes N`` with a c10d rendezvous).

The trajectory. ``batch_size`` is each process's: with :math:`P` processes the loop draws the global batches of
:math:`B = P b` rows (at most every row) from the same seeded order as one process with ``batch_size`` :math:`P b`,
and process :math:`r` takes the rows :math:`[\\lfloor rB/P \\rfloor, \\lfloor (r+1)B/P \\rfloor)` of each. Its loss
on its :math:`b_r` rows is weighted by :math:`w_r = P b_r / B` before the backward pass, and DDP averages the
gradients, so every process steps with

.. math:: \\frac1P \\sum_r w_r \\nabla \\bar\\ell_r = \\frac1B \\sum_{i \\in \\text{batch}} \\nabla \\ell_i,

the gradient of one process's batch of :math:`B` rows, also for an uneven last batch (:math:`w_r = 1` whenever
:math:`P` divides :math:`B`). A process whose share is empty (a last batch of fewer than :math:`P` rows) runs
the batch's first row with weight 0. The equality needs a loss that is the mean over rows (every named loss; a
custom loss must be one) and a forward pass in which rows do not meet: batch normalisation normalises each
process's rows, and dropout draws each process's masks from its own generator, so such models follow a
trajectory of the same law, not the same numbers.

The same decisions. The step's loss the loop records and the divergence guard judges is the global one (an
``all_reduce`` of one number a step), the gradient every process reads is DDP's average, and the epoch's row
(validation by process 0 alone, the loss, the learning rate, the gradient norm) is process 0's, broadcast: the
guard, the stopping rules, early stopping and the schedules decide the same thing on every process, so no process
rolls back alone. ``lr="auto"`` runs the range test in every process on the global batch and takes process 0's
rate.

Records. Process 0 alone writes the run folder, prints and builds the report. A checkpoint (written by process 0)
holds every process's generator state (gathered); ``resume`` under torchrun gives each process its own back and
refuses a different number of processes.

Accumulation (``accumulate=k``): the micro-batches before the k-th run under ``no_sync`` (no communication), their
gradients summed in place, and the k-th synchronises the sum, so an update costs one gradient exchange. The
optimizer's accumulation rule meanwhile receives zeros, and the k-th call the synchronised sum: the same mean of k
gradients. A checkpoint inside a cycle averages the sums so far across processes and saves them. Under
``precision="16-mixed"`` every micro-batch synchronises (the scaler unscales each backward pass's gradients).

Refused under torchrun: optimizers that step through a closure (L-BFGS, Newton), ``compile=True`` and data from a
loader or a text corpus, each with a :class:`~descend.errors.ConfigError`.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from descend.errors import ConfigError
from descend.optim.chain import GLOBAL
from descend.train.callbacks import Checkpoint, ProgressBar

__all__ = ["Distributed", "active", "join", "leader", "rank_from_environment"]

T = TypeVar("T")
_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
_RANK_SEED = 0x9E3779B97F4A7C15  # spreads the processes' seeds apart (the golden ratio's bits)
_current: Distributed | None = None


def rank_from_environment() -> int:
    """This process's rank as torchrun set it (0 outside torchrun); reads the environment only, imports nothing."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def active() -> Distributed | None:
    """The process group ``fit`` is training in, or None (one process)."""
    return _current


def join() -> Distributed | None:
    """Join the process group torchrun describes (see the module docstring); None outside torchrun, or when it
    started one process. Raises :class:`~descend.errors.ConfigError` for an environment torchrun would not set."""
    global _current
    given = {name: os.environ.get(name) for name in _ENV}
    if given["WORLD_SIZE"] is None and not (dist.is_available() and dist.is_initialized()):
        return None
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        try:
            world, rank, local = (int(given[name] or "") for name in _ENV)
        except ValueError:
            raise ConfigError(f"torchrun: WORLD_SIZE, RANK and LOCAL_RANK must be integers; got {given} (start the "
                              "run with torchrun, or unset them)") from None  # fmt: skip
        if not 0 <= rank < world:
            raise ConfigError(f"torchrun: RANK={rank} is not in [0, WORLD_SIZE={world}); expected torchrun's own")
        if world == 1:
            return None  # one process: nothing to share
        if not dist.is_available():
            raise ConfigError("torchrun: this build of torch has no torch.distributed; expected one process")
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local)  # "cuda" and device="auto" then mean this process's own GPU
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend)
        atexit.register(_destroy)
    _current = Distributed(world, rank)
    return _current


class Distributed:
    """One process's part in a distributed fit: its rank, the DDP wrapper, and the collectives fit needs."""

    def __init__(self, world: int, rank: int) -> None:
        self.world, self.rank = world, rank
        self.leader = rank == 0
        self.ddp: nn.Module | None = None
        self.loop: Any = None
        self.accumulate = 1
        self._held: list[Tensor | None] | None = None  # the micro-batches' summed gradients, not yet exchanged
        self._scaled = False
        #: what the latest checkpoint holds of the processes (set by :meth:`save`, read by ``Loop.checkpoint``)
        self.meta: dict[str, Any] = {"world_size": world}

    # -- agreeing ------------------------------------------------------------------------------------------

    def broadcast(self, value: T) -> T:
        """Process 0's ``value``, on every process."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_leader(self, work: Callable[[], T]) -> T | None:
        """``work()`` on process 0 (None elsewhere); an exception it raises is raised on every process, so a run
        refused by process 0 (a folder in use, a resume that does not match) stops everywhere."""
        kept: list[T] = []  # the result stays on process 0 (a run folder holds its lock: it does not travel)
        self.from_leader(lambda: kept.append(work()))
        return kept[0] if kept else None

    def from_leader(self, work: Callable[[], T]) -> T:
        """``work()`` run on process 0, its result (or its exception) on every process."""
        result, error = None, None
        if self.leader:
            try:
                result = work()
            except Exception as e:  # raised below, on every process
                error = e
        shared_result, shared_error = self.broadcast((result, _portable(error)))
        if error is not None:
            raise error
        if shared_error is not None:
            raise shared_error
        return shared_result  # type: ignore[return-value]

    def all_reduce_mean(self, value: Tensor) -> Tensor:
        dist.all_reduce(value)
        return value.div_(self.world)

    # -- fit's checks --------------------------------------------------------------------------------------

    def check(self, *, optimizer: torch.optim.Optimizer, closure: str | None, compile: bool, stream: bool) -> None:
        """Refuse what does not run under torchrun, with what would (the same message on every process)."""
        if closure is not None:
            raise ConfigError(f"optimizer: {type(optimizer).__name__} steps through a closure on the whole training "
                              f"set, which does not run under torchrun ({self.world} processes); expected a "
                              "first-order optimizer (sgd, momentum, adam, ...) or one process")  # fmt: skip
        if compile:
            raise ConfigError(f"compile: compile=True does not run under torchrun ({self.world} processes); expected "
                              "compile=False")  # fmt: skip
        if stream:
            raise ConfigError(f"data: a loader or a text corpus does not run under torchrun ({self.world} "
                              "processes); expected a table or arrays in memory, or one process")  # fmt: skip

    def callbacks(self, callbacks: list[Any], has_run: bool, every_steps: int | None) -> list[Any]:
        """A process other than 0 shows no progress, and takes part in process 0's checkpoints (each one gathers
        every process's generator): a :class:`Checkpoint` like the one fit gives process 0."""
        if self.leader:
            return callbacks
        kept = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
        if has_run and not any(isinstance(cb, Checkpoint) for cb in kept):
            kept.append(Checkpoint(every_steps=every_steps))
        return kept

    def describe(self, batch_size: int, per_process: int | str) -> dict[str, Any]:
        """What the run folder records of the processes: their number, the backend, the batch of each."""
        return {"world_size": self.world, "backend": str(dist.get_backend()), "batch_size": per_process,
                "global_batch_size": batch_size}  # fmt: skip

    # -- training ------------------------------------------------------------------------------------------

    def start(self, loop: Any, resume: Callable[[], dict[str, Any] | None], *, seed: int, accumulate: int) -> None:
        """Before the first step, on every process: continue from the checkpoint ``resume()`` loads on process 0
        (each process with its own generator) or give each process its own generator, wrap the model in DDP, and
        route the checkpoints through :meth:`save` (every process takes part; process 0 writes)."""
        self.loop, self.accumulate = loop, accumulate
        self._scaled = loop.precision.scaler is not None
        ckpt = self.from_leader(resume)
        if ckpt is not None:
            meta = ckpt.get("distributed") or {"world_size": 1}
            if meta["world_size"] != self.world:
                raise ConfigError(f"resume: the run was trained by {meta['world_size']} process(es); expected the same "
                                  f"number under torchrun, not {self.world}")  # fmt: skip
            if not self.leader:
                loop.restore(ckpt)
            torch.set_rng_state(meta["rng"][self.rank]["torch"])
            if "cuda" in meta["rng"][self.rank] and torch.cuda.is_available():
                torch.cuda.set_rng_state(meta["rng"][self.rank]["cuda"])
            held = meta.get("held")
            self._held = None if held is None else [None if g is None else g.to(p.device)
                                                    for g, p in zip(held, loop.params)]  # fmt: skip
        elif self.rank:
            torch.manual_seed((seed + _RANK_SEED * self.rank) % 2**63)  # dropout's masks differ between processes
        param = next(loop.model.parameters())
        ids = [param.device.index] if param.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(loop.model, device_ids=ids)
        loop.distributed = self
        write = loop.state.save_checkpoint  # fit's: process 0 writes the loop's checkpoint to the run folder
        loop.state.save_checkpoint = lambda keep=2: self.save(write, keep)

    def stop(self) -> None:
        """After the loop: the model goes back to being a plain module (DDP's hooks leave with the wrapper)."""
        if self.loop is not None:
            self.loop.distributed = None
        self.ddp, self.loop, self._held = None, None, None

    def finish(self) -> None:
        """At the end of fit: the process group stays for the next fit (see the module docstring)."""
        global _current

        self.stop()
        _current = None

    def share(self, rows: int) -> tuple[int, int, float]:
        """This process's rows ``[lo, hi)`` of a global batch of ``rows`` rows, and its loss weight.

        Example (the second of two processes, an uneven last batch of 5 rows: 3 rows, weighted 2 x 3 / 5):
            >>> Distributed(world=2, rank=1).share(5)
            (2, 5, 1.2)
        """
        lo, hi = self.rank * rows // self.world, (self.rank + 1) * rows // self.world
        return lo, hi, self.world * (hi - lo) / rows

    def forward_backward(self, xb: Tensor, yb: Tensor, zero_grad: Callable[[], None]) -> Tensor:
        """This process's share of the global batch ``xb, yb``: forward through DDP, weighted loss, backward
        (gradients averaged over the processes, or held for the accumulation cycle's last micro-batch). Returns
        the global batch's loss (the mean over every process's rows, plus the penalty), detached."""
        loop, ddp = self.loop, self.ddp
        assert loop is not None and ddp is not None
        lo, hi, weight = self.share(len(xb))
        xs, ys = (xb[lo:hi], yb[lo:hi]) if hi > lo else (xb[:1], yb[:1])
        position = self._position()
        last = self._scaled or position == self.accumulate - 1
        if position == 0 or self._held is None:
            zero_grad()
            self._held = None
        else:  # the cycle's sum so far, to add this micro-batch's gradient to
            for p, g in zip(loop.params, self._held):
                p.grad = g
        amp = loop.precision
        with contextlib.nullcontext() if last else ddp.no_sync():  # type: ignore[operator]
            loss = loop.loss_fn(amp.forward(ddp, xs), ys)
            if weight != 1.0:
                loss = loss * weight
            if loop.penalty is not None:
                loss = loss + loop.penalty()
            amp.backward(loss, loop.optimizer)
        if not last:  # the optimizer's accumulation rule gets zeros until the synchronised sum arrives
            self._held = [p.grad for p in loop.params]
            for p in loop.params:
                if p.grad is not None:
                    p.grad = torch.zeros_like(p)
        else:
            self._held = None
        return self.all_reduce_mean(loss.detach().clone())

    def _position(self) -> int:
        """The micro-batch's place in the optimizer's accumulation cycle (0 without accumulation)."""
        if self.accumulate <= 1:
            return 0
        assert self.loop is not None
        calls = self.loop.optimizer.state.get(GLOBAL, {}).get("accumulate_calls", 0)
        return int(calls) % self.accumulate

    # -- checkpoints ---------------------------------------------------------------------------------------

    def save(self, write: Callable[..., Any], keep: int | None) -> None:
        """A checkpoint: every process's generator gathered, the accumulation cycle's gradients averaged, then
        ``write`` on process 0 (the loop's checkpoint carries :attr:`meta`)."""
        loop = self.loop
        assert loop is not None
        rng: dict[str, Tensor] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and next(loop.model.parameters()).is_cuda:
            rng["cuda"] = torch.cuda.get_rng_state()
        states: list[Any] = [None] * self.world
        dist.all_gather_object(states, rng)
        held = None
        if self._held is not None:
            for g in self._held:
                if g is not None:
                    self.all_reduce_mean(g)  # the same sums on every process: one copy is saved
            held = [None if g is None else g.detach().cpu().clone() for g in self._held]
        self.meta = {"world_size": self.world, "rng": states, "held": held}
        if self.leader:
            write(keep=keep)


def _destroy() -> None:
    if dist.is_initialized():
        # The DDP wrappers of finished fits live on in reference cycles, holding the process group: collected
        # now, while the interpreter is whole, the group is freed (its threads joined) by the destroy below,
        # instead of being torn down at exit with its threads still running (an abort, "terminate called
        # without an active exception", in about one exit in four under load).
        gc.collect()
        dist.destroy_process_group()


def leader(group: Distributed | None, work: Callable[[], T]) -> T:
    """``work()`` in one process; under torchrun run by process 0 and shared (:meth:`Distributed.from_leader`)."""
    return work() if group is None else group.from_leader(work)


def _portable(error: BaseException | None) -> BaseException | None:
    """``error`` as it can be sent to the other processes (pickled), or a ConfigError with its message."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return ConfigError(f"process 0 stopped: {type(error).__name__}: {error}")
