"""The one adapter: any schedule as a ``torch.optim.lr_scheduler.LRScheduler`` on any torch optimizer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from descend.schedules._base import check_int, fail

__all__ = ["ScheduleLR"]

ScheduleLike = Callable[[int], float]


def _per_group(arg: str, value: object, n: int) -> list[ScheduleLike]:
    if callable(value):
        return [value] * n
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = list(value)
        if len(items) == n and all(callable(s) for s in items):
            return items
    fail("ScheduleLR", arg, value, f"a schedule, or a list of {n} schedules (one per param group)")


class ScheduleLR(LRScheduler):
    """Set each param group's learning rate (and optionally momentum) from schedules of the step.

    Before update ``t`` (0-based; ``t`` = :attr:`last_epoch` = the number of :meth:`step` calls so far) group
    ``i`` gets ``group["lr"] = lr[i](t)``, and with ``momentum`` also ``group["momentum"] = momentum[i](t)``
    (or ``group["betas"] = (momentum[i](t), beta2)`` for Adam-like optimizers). Use it as any torch scheduler:
    ``optimizer.step()`` then ``scheduler.step()``.

    Schedules yield **absolute** learning rates; the group's own ``lr`` is overwritten, not multiplied (torch's
    ``LambdaLR`` multiplies). For a shape shared by groups with different base rates, build it with ``lr=1.0``
    and scale it: ``ScheduleLR(opt, [1e-3 * shape, 1e-4 * shape])``.

    :meth:`state_dict` holds only plain Python types: the step count and the state of any stateful schedule
    (:class:`~descend.schedules.ReduceOnPlateau`); the pure schedules are config and are re-created, not saved.
    :meth:`load_state_dict` re-applies the rates for the restored step, so a resumed run uses exactly the rates
    of an uninterrupted one, whether it is loaded before or after the optimizer's state.

    ``lr``: a schedule (for every group) or a list with one per group; ``momentum`` likewise, or None.

    >>> import torch
    >>> from descend.schedules import ScheduleLR, step_decay
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ScheduleLR(opt, step_decay(0.1, step_size=1, gamma=0.5))
    >>> rates = []
    >>> for _ in range(3):
    ...     rates.append(opt.param_groups[0]["lr"])
    ...     opt.step()
    ...     sched.step()
    >>> rates
    [0.1, 0.05, 0.025]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr: ScheduleLike | Sequence[ScheduleLike],
        *,
        momentum: ScheduleLike | Sequence[ScheduleLike] | None = None,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            fail("ScheduleLR", "optimizer", type(optimizer).__name__, "a torch.optim.Optimizer")
        n = len(optimizer.param_groups)
        self.lr_schedules = _per_group("lr", lr, n)
        self.momentum_schedules = None if momentum is None else _per_group("momentum", momentum, n)
        if self.momentum_schedules is not None:
            for i, group in enumerate(optimizer.param_groups):
                if "momentum" not in group and "betas" not in group:
                    fail("ScheduleLR", "momentum", momentum, f"None: param_groups[{i}] has no momentum or betas")
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, t: int) -> None:
        if self.momentum_schedules is None:
            return
        for group, schedule in zip(self.optimizer.param_groups, self.momentum_schedules):
            m = float(schedule(t))
            if "betas" in group:
                group["betas"] = (m, *group["betas"][1:])
            else:
                group["momentum"] = m

    def get_lr(self) -> list[float | Tensor]:
        """The learning rates for update :attr:`last_epoch`, one per param group (sets momentum as a side effect)."""
        t = self.last_epoch
        self._set_momentum(t)
        return [float(s(t)) for s in self.lr_schedules]

    def _get_closed_form_lr(self) -> list[float | Tensor]:
        return self.get_lr()

    def state_dict(self) -> dict[str, Any]:
        """``{"last_epoch": t, "step_count": ..., "schedule_states": [...]}``; plain Python types only."""
        states = [s.state_dict() if hasattr(s, "state_dict") else None for s in self.lr_schedules]
        return {"last_epoch": self.last_epoch, "step_count": self._step_count, "schedule_states": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step and stateful schedules, and set the rates for that step on the optimizer."""
        keys = {"last_epoch", "step_count", "schedule_states"}
        if not isinstance(state_dict, dict) or set(state_dict) != keys:
            got = sorted(state_dict) if isinstance(state_dict, dict) else state_dict
            fail("ScheduleLR", "state_dict", got, "a dict with keys last_epoch, step_count, schedule_states")
        states = state_dict["schedule_states"]
        if not isinstance(states, list) or len(states) != len(self.lr_schedules):
            fail("ScheduleLR", "state_dict['schedule_states']", states, f"a list of {len(self.lr_schedules)}")
        self.last_epoch = check_int("ScheduleLR", "state_dict['last_epoch']", state_dict["last_epoch"], minimum=0)
        self._step_count = check_int("ScheduleLR", "state_dict['step_count']", state_dict["step_count"], minimum=0)
        for schedule, state in zip(self.lr_schedules, states):
            if state is not None:
                schedule.load_state_dict(state)  # type: ignore[attr-defined]
        rates = self.get_lr()
        for group, rate in zip(self.optimizer.param_groups, rates):
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(rate)
            else:
                group["lr"] = rate
        self._last_lr = [float(r) for r in rates]
