"""``chain(...)``: gradient transformations run in order, packaged as a real ``torch.optim.Optimizer``.

One step, for every parameter ``p`` with a gradient: ``u = T_n(... T_2(T_1(g)))`` then ``p ← p + u``. The last
rule of a descent is ``scale_by_learning_rate`` (``u = −α g``), so plain gradient descent is
``chain(scale_by_learning_rate(α))``: ``p ← p − α ∇J(p)``.

Everything torch.optim users rely on works: param groups with per-group hyperparameters, ``state_dict`` /
``load_state_dict`` (the trajectory continues identically), ``step(closure)``, ``zero_grad``, torch's LR
schedulers, hooks, and any training loop that takes a torch optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from descend.optim.base import GlobalTransform, Transform, named_for
from descend.optim.fast import FastRules, worth_compiling
from descend.optim.transforms import PerParam, ScaleByLearningRate, is_schedule

__all__ = ["ChainOptimizer", "chain"]

#: Key of the optimizer-wide state in ``optimizer.state`` (a dict of plain numbers, saved in ``state_dict``).
GLOBAL = "descend"


class ChainOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that applies a chain of gradient transformations.

    Args:
        params: parameters or param groups, as for any torch optimizer.
        transforms: the rules, applied in order. Rules that may skip a step (``skip_non_finite``,
            ``accumulate``) must come before any per-parameter rule.
        name: the name used in error messages.
        compile: how to run the per-parameter rules (the fast path, see :mod:`descend.optim.fast`).
            ``"auto"`` runs small parameters in flat buckets (one rule over all of them), and compiles the rules
            with ``torch.compile`` when the parameters total at least ``2**20`` entries, where the one-off
            compile time pays; ``True`` always compiles; ``False`` runs the readable path, parameter by
            parameter (the reference the fast path is tested against).
        **overrides: hyperparameter values that replace the transforms' defaults.

    Example:
        >>> import torch
        >>> from descend.optim import chain, clip_by_global_norm, scale_by_adam, scale_by_learning_rate
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = chain([w], [clip_by_global_norm(1.0), scale_by_adam(), scale_by_learning_rate(0.1)])
        >>> w.sum().backward(); _ = opt.step()
        >>> torch.allclose(w, torch.full((3,), 0.9))
        True
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        transforms: Sequence[Transform],
        *,
        name: str = "chain",
        compile: bool | str = False,
        **overrides: Any,
    ) -> None:
        self.name = name
        self.transforms = list(transforms)
        _check_order(name, self.transforms)
        if compile not in (True, False, "auto"):
            raise ValueError(f"{name}: invalid compile={compile!r}; expected True, False or 'auto'")
        defaults: dict[str, Any] = {}
        for tr in self.transforms:
            if not isinstance(tr, Transform):
                raise TypeError(f"{name}: invalid transform {tr!r} ({type(tr).__name__}); expected a Transform")
            for key, value in tr.defaults.items():
                if key in defaults and key not in overrides and defaults[key] != value:
                    raise ValueError(
                        f"{name}: two transformations set {key!r} to different defaults "
                        f"({defaults[key]!r} and {value!r}); pass {key}=... to choose one"
                    )
                defaults[key] = value
        defaults.update(overrides)
        super().__init__(params, defaults)
        self._compile_mode = compile
        self._planned: int | None = None
        self._fast: FastRules | None = None

    # -- param groups -------------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if isinstance(p, Tensor) and not (p.is_floating_point() or p.is_complex()):
                raise TypeError(f"{self.name}: invalid parameter of dtype {p.dtype}; expected floating-point tensors")
            if isinstance(p, Tensor) and p.is_complex():
                raise TypeError(f"{self.name}: complex parameters are not supported (got dtype {p.dtype})")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        lr = group.get("lr")
        if is_schedule(lr):
            group["lr_schedule"] = lr
            group["lr"] = float(lr(self._updates()))  # type: ignore[misc]
        for tr in self.transforms:
            try:
                tr.validate(group)
            except (ValueError, TypeError) as e:
                if self.name == "chain":  # a chain the user composed: the rule's name says which argument
                    raise
                raise named_for(e, self.name) from None

    # -- state --------------------------------------------------------------------------------------------

    def _global(self) -> dict[str, Any]:
        return self.state.setdefault(GLOBAL, {"updates": 0})  # type: ignore[call-overload]

    def _updates(self) -> int:
        return int(self._global()["updates"]) if GLOBAL in self.state else 0

    @property
    def updates(self) -> int:
        """The number of updates applied so far (steps skipped by a rule do not count)."""
        return self._updates()

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        # A schedule is code, not data: it is rebuilt from the configuration; its position is ``updates``.
        # A schedule with state of its own (reduce-on-plateau) saves that state beside the group.
        for packed, group in zip(sd["param_groups"], self.param_groups):
            if "lr_schedule" in packed:
                packed["lr_schedule"] = "schedule"
                if hasattr(group["lr_schedule"], "state_dict"):
                    packed["lr_schedule_state"] = group["lr_schedule"].state_dict()
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        schedules = [g.get("lr_schedule") for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, schedule in zip(self.param_groups, schedules):
            if schedule is not None and is_schedule(schedule):
                group["lr_schedule"] = schedule
                saved = group.pop("lr_schedule_state", None)
                if saved is not None and hasattr(schedule, "load_state_dict"):
                    schedule.load_state_dict(saved)
                group["lr"] = float(schedule(self._updates()))
            elif "lr_schedule" in group:
                raise ValueError(
                    f"{self.name}: the saved state used a learning-rate schedule, but this optimizer has a fixed lr; "
                    "create it with the same schedule before loading"
                )
        if self._fast is not None:
            self._fast.forget()

    # -- the step -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Apply one update to every parameter that has a gradient. Returns the closure's loss, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        params, grads, groups = [], [], []
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse:
                    raise TypeError(f"{self.name}: sparse gradients are not supported")
                params.append(p)
                grads.append(g)
                groups.append(group)
        if not params:
            return loss

        gstate = self._global()
        states = [self.state[p] for p in params]
        position = 0
        # Leading global rules may decide that no update happens this call.
        for tr in self.transforms:
            if not isinstance(tr, GlobalTransform):
                break
            out = tr.update_all(grads, params, states, gstate)
            position += 1
            if out is None:
                return loss
            grads = out

        t = gstate["updates"]
        self.scheduled_lr(t)
        for p, group, state in zip(params, groups, states):
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_step_dtype(p))
                for tr in self.transforms:
                    if isinstance(tr, PerParam) and tr.active(group, p):
                        state.update(tr.init(p, group))

        rest = self.transforms[position:]
        fast = self._fast_path()
        if fast is not None:
            fast.step(rest, params, grads, states, groups, gstate)  # counts the step too, in flat counters
        else:
            torch._foreach_add_([state["step"] for state in states], 1.0)
            _reference_step(rest, params, grads, states, groups, gstate)

        self.count_update(t)
        return loss

    def scheduled_lr(self, t: int) -> None:
        """Set each scheduled group's ``lr`` to its schedule's value at update ``t`` (before the update)."""
        for group in self.param_groups:
            if "lr_schedule" in group:
                group["lr"] = float(group["lr_schedule"](t))

    def count_update(self, t: int) -> None:
        """Record update ``t`` as applied: ``updates`` becomes ``t + 1`` and schedules move on to it. For a caller
        that applied the per-parameter rules itself (``fit``'s compiled step) after ``scheduled_lr(t)``."""
        self._global()["updates"] = t + 1
        self.scheduled_lr(t + 1)

    def plan(self, updates: int) -> None:
        """Say how many updates this optimizer will make, before its first step (``fit`` does): under
        ``compile="auto"`` the rules then compile when parameters x updates pay for the compile
        (:data:`~descend.optim.fast.COMPILE_MIN_WORK`) rather than by the parameters' count alone. Once the
        optimizer has stepped, its path is kept."""
        if self._fast is None:
            self._planned = max(0, int(updates))

    @property
    def compiles(self) -> bool:
        """Whether the per-parameter rules run compiled (decided at the first step, or now if not yet taken)."""
        fast = self._fast_path()
        return fast is not None and fast.compile

    def _fast_path(self) -> FastRules | None:
        if self._compile_mode is False:
            return None
        if self._fast is None:
            compile = self._compile_mode is True or worth_compiling(self.param_groups, self._planned)
            self._fast = FastRules(compile=compile)
        return self._fast


def _reference_step(
    transforms: list[Transform],
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    gstate: dict[str, Any],
    *,
    active: bool = False,
) -> None:
    """The readable path: each rule in turn, then ``p ← p + u``.

    ``active=True`` says the rules are already those active for these parameters (a flat bucket, whose
    flattened tensor would answer ``active`` differently from the parameters it stands for).

    When the chain ends with the learning rate, ``u = −α d``, the last two operations are one: ``p ← p − α d``
    (``torch.Tensor.add_`` with ``alpha``), saving a pass over memory and an allocation per parameter.
    """
    fold = bool(transforms) and type(transforms[-1]) is ScaleByLearningRate
    if fold:
        transforms = transforms[:-1]
    updates = list(grads)
    steps = [int(st["step"]) for st in states]
    for segment in _segments(transforms):
        if isinstance(segment, GlobalTransform):
            out = segment.update_all(updates, params, states, gstate)
            assert out is not None  # checked in _check_order: rules after the first per-parameter one never skip
            updates = out
            continue
        for i, (p, st, gr, t) in enumerate(zip(params, states, groups, steps)):
            u = updates[i]
            for tr in segment:
                if not isinstance(tr, PerParam):
                    u = tr.update(u, p, st, gr)
                elif active or tr.active(gr, p):
                    u = tr.apply(u, p, st, tr.scalars(gr, t))
            updates[i] = u
    if not fold:
        for p, u in zip(params, updates):
            p.add_(u)
        return
    for p, u, group in zip(params, updates, groups):
        lr = group["lr"]
        if isinstance(lr, Tensor):
            p.sub_(u * lr)
        else:
            p.add_(u, alpha=-lr)


def _segments(transforms: list[Transform]) -> list[GlobalTransform | list[Transform]]:
    """Split a chain into global rules and runs of per-parameter rules (each run is applied param by param)."""
    out: list[GlobalTransform | list[Transform]] = []
    for tr in transforms:
        if isinstance(tr, GlobalTransform):
            out.append(tr)
        elif out and isinstance(out[-1], list):
            out[-1].append(tr)
        else:
            out.append([tr])
    return out


def _step_dtype(p: Tensor) -> torch.dtype:
    return torch.float64 if p.dtype == torch.float64 else torch.float32


def _check_order(name: str, transforms: list[Transform]) -> None:
    seen_per_param = False
    for tr in transforms:
        if isinstance(tr, GlobalTransform):
            if seen_per_param and getattr(tr, "may_skip", False):
                raise ValueError(
                    f"{name}: {tr.name} must come before every per-parameter transformation, "
                    "because it may skip a step after their state has changed"
                )
        else:
            seen_per_param = True


def chain(
    params: Iterable[Tensor] | Iterable[dict[str, Any]],
    transforms: Sequence[Transform],
    *,
    compile: bool | str = False,
    **overrides: Any,
) -> ChainOptimizer:
    """Build a torch optimizer from gradient transformations applied in order (see :class:`ChainOptimizer`)."""
    return ChainOptimizer(params, transforms, compile=compile, **overrides)
