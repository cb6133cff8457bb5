"""The fast path: the same per-parameter rules, run over fewer, larger tensors and, where it pays, compiled.

The readable path runs each rule as a few tensor operations per parameter. That costs two things: passes over
memory (one per operation) and dispatches (a few microseconds of Python and torch per operation, per parameter).
The fast path removes what dominates:

- *Flat buckets.* Small parameters of one group (fewer than ``FLAT_MAX`` entries, same dtype, device, active
  rules and step) share one contiguous buffer per state key; their state tensors in ``optimizer.state`` are views
  into it. Each step the gradients and parameters are copied into two persistent flat buffers of the bucket
  (``torch._foreach_copy_``), the rule runs once over the bucket, and the new values are copied back: a dozen
  dispatches for the bucket instead of a dozen per parameter. The user's parameters are never re-pointed.
- *Compiled rules.* Through ``torch.compile`` a chain becomes one loop that reads ``g``, ``p`` and the state once
  and writes them once. Large parameters get one compiled call each; a compiled bucket gets one for the bucket.

Nothing here restates an update rule: a bucket runs the readable path itself on its flat tensors, and the
compiled function calls the very ``apply`` methods of the readable path. Compiled, hyperparameters and
step-dependent numbers (bias corrections, the learning rate) enter as 0-d tensors, so changing the learning
rate, or a schedule, never triggers a recompile. Tests hold this path to the readable one
(``tests/test_optim_fast.py``); the numbers behind the thresholds are in ``benchmarks/optim_step.py``.
"""

from __future__ import annotations

import functools
import shutil
from typing import Any

import torch
from torch import Tensor

from descend.optim.base import GlobalTransform, Transform
from descend.optim.transforms import PerParam

__all__ = ["COMPILE_MIN_NUMEL", "FLAT_MAX", "FastRules", "compiler_available", "worth_compiling"]

#: Parameters with fewer entries than this are flattened into their group's bucket. Below it a parameter's
#: dispatches cost more than gathering it (a copy of ``g`` and ``p`` in, of ``p`` out); above it the extra
#: passes over memory cost more than the dispatches they save.
FLAT_MAX = 2**16

#: Under ``compile="auto"`` the rules are compiled when the parameters total at least this many entries. The
#: compile costs 1-3 s once; on 10M parameters it saves tens of ms a step, on a small model ~0.1 ms, which a
#: short fit never earns back.
COMPILE_MIN_NUMEL = 2**20


@functools.cache
def compiler_available() -> bool:
    """True when torch.compile can build CPU kernels here (it needs a C++ compiler)."""
    return shutil.which("g++") is not None or shutil.which("c++") is not None or shutil.which("clang++") is not None


def worth_compiling(param_groups: list[dict[str, Any]]) -> bool:
    """True when the parameters are numerous enough for compiling to pay (see ``COMPILE_MIN_NUMEL``)."""
    total = sum(p.numel() for g in param_groups for p in g["params"])
    return total >= COMPILE_MIN_NUMEL and compiler_available()


def _apply_rules(rules: tuple[PerParam, ...], g: Tensor, p: Tensor, state: dict[str, Tensor],
                 scalars: tuple[dict[str, Any], ...]) -> None:
    for rule, s in zip(rules, scalars):
        g = rule.apply(g, p, state, s)
    p.add_(g)


class _Bucket:
    """Flat state of a bucket of parameters: one buffer per state key, each parameter's state a view into it."""

    def __init__(self, keys: tuple[str, ...], params: list[Tensor], states: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.sizes = [p.numel() for p in params]
        self.buffers: dict[str, Tensor] = {k: torch.cat([st[k].reshape(-1) for st in states]) for k in keys}
        self.views: list[dict[str, Tensor]] = [{} for _ in params]
        for k in keys:
            self._point(k, params, states)
        # The gathered parameters and gradients: filled each step, written back to the parameters after it.
        self.p = torch.empty(sum(self.sizes), dtype=params[0].dtype, device=params[0].device)
        self.g = torch.empty_like(self.p)
        self.p_views = [part.view(p.shape) for p, part in zip(params, self.p.split(self.sizes))]
        self.g_views = [part.view(p.shape) for p, part in zip(params, self.g.split(self.sizes))]

    def _point(self, key: str, params: list[Tensor], states: list[dict[str, Any]]) -> None:
        for p, st, views, part in zip(params, states, self.views, self.buffers[key].split(self.sizes)):
            views[key] = st[key] = part.view(p.shape)

    def holds(self, states: list[dict[str, Any]]) -> bool:
        """True when every parameter's state is still the views of this bucket (nothing replaced or loaded)."""
        return all(st.get(k) is v for st, views in zip(states, self.views) for k, v in views.items())

    def adopt(self, flat: dict[str, Any], params: list[Tensor], states: list[dict[str, Any]]) -> None:
        """Take in buffers the rule created or replaced during the step (e.g. a momentum buffer made lazily)."""
        for k, v in flat.items():
            if k != "step" and isinstance(v, Tensor) and self.buffers.get(k) is not v:
                self.buffers[k] = v
                self.keys = (*self.keys, k) if k not in self.keys else self.keys
                self._point(k, params, states)


class FastRules:
    """Runs the per-parameter rules of a chain in flat buckets and, with ``compile=True``, compiled."""

    def __init__(self, *, compile: bool, flat_max: int | None = None) -> None:
        self.compile = compile
        self.flat_max = FLAT_MAX if flat_max is None else flat_max
        self._fn = torch.compile(_apply_rules, fullgraph=True, dynamic=None) if compile else None
        self._buckets: dict[tuple[Any, ...], _Bucket] = {}
        self._cached: tuple[Any, dict[tuple[Any, ...], list[int]], list[int]] | None = None

    def step(self, transforms: list[Transform], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], groups: list[dict[str, Any]], gstate: dict[str, Any]) -> None:
        from descend.optim.chain import _reference_step

        if any(isinstance(tr, GlobalTransform) for tr in transforms):
            # A global rule in the middle needs every update at once: keep the readable path.
            _reference_step(transforms, params, grads, states, groups, gstate)
            return
        buckets, alone = self._plan(transforms, params, states, groups)
        kept: dict[tuple[Any, ...], _Bucket] = {}
        for key, members in buckets.items():
            first = states[members[0]]
            self._run_bucket(key, int(first["step"]), transforms, [params[i] for i in members],
                             [grads[i] for i in members], [states[i] for i in members], groups[members[0]],
                             gstate, kept)
        self._buckets = kept
        if not alone:
            return
        if self._fn is None:
            _reference_step(transforms, [params[i] for i in alone], [grads[i] for i in alone],
                            [states[i] for i in alone], [groups[i] for i in alone], gstate)
            return
        scalars_for: dict[tuple[int, int, torch.dtype], tuple[dict[str, Any], ...]] = {}
        for i in alone:
            p, g, state, group = params[i], grads[i], states[i], groups[i]
            rules = tuple(tr for tr in transforms if isinstance(tr, PerParam) and tr.active(group, p))
            tensors = {k: v for k, v in state.items() if k != "step" and isinstance(v, Tensor)}
            if p.numel() == 0:
                continue
            if not (p.is_contiguous() and g.is_contiguous() and all(v.is_contiguous() for v in tensors.values())):
                _reference_step(list(rules), [p], [g], [state], [group], gstate)
                continue
            t = int(state["step"])
            at = (id(group), t, p.dtype)
            if at not in scalars_for:  # the same numbers for every parameter of a group at one step
                scalars_for[at] = tuple(_as_tensors(tr.scalars(group, t), p.dtype) for tr in rules)
            self._fn(rules, g.view(-1), p.view(-1), {k: v.view(-1) for k, v in tensors.items()}, scalars_for[at])

    def _plan(self, transforms: list[Transform], params: list[Tensor], states: list[dict[str, Any]],
              groups: list[dict[str, Any]]) -> tuple[dict[tuple[Any, ...], list[int]], list[int]]:
        """Which parameters share a bucket (by position in ``params``), and which run alone.

        Members of a bucket share group, active rules, state keys, dtype, device and step count. The plan is
        kept while the parameters with a gradient, the groups' settings and the state keys stay the same
        (then every step count moved on by one together); ``forget`` drops it.
        """
        distinct: list[dict[str, Any]] = []
        for group in groups:  # a group's parameters come one after the other
            if not distinct or distinct[-1] is not group:
                distinct.append(group)
        signature = (tuple(map(id, params)),
                     tuple(tuple((k, v) for k, v in g.items() if k not in ("params", "lr")) for g in distinct),
                     tuple(len(st) for st in states))
        if self._cached is not None and self._cached[0] == signature:
            return self._cached[1], self._cached[2]
        buckets: dict[tuple[Any, ...], list[int]] = {}
        alone: list[int] = []
        for i, (p, state, group) in enumerate(zip(params, states, groups)):
            if p.numel() < self.flat_max:
                rules = tuple(tr for tr in transforms if isinstance(tr, PerParam) and tr.active(group, p))
                keys = tuple(k for tr in rules for k in tr.state_names if k in state)
                key = (id(group), tuple(map(id, rules)), keys, p.dtype, p.device, int(state["step"]))
                buckets.setdefault(key, []).append(i)
            else:
                alone.append(i)
        # A bucket's flat state lives on from step to step: its name holds its members, not its step count.
        named = {(*key[:5], tuple(id(params[i]) for i in members)): members for key, members in buckets.items()}
        self._cached = (signature, named, alone)
        return named, alone

    def forget(self) -> None:
        """Drop the plan and the flat buckets (after a state was loaded: step counts may have changed)."""
        self._cached = None
        self._buckets = {}

    def _run_bucket(self, key: tuple[Any, ...], t: int, transforms: list[Transform], params: list[Tensor],
                    grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any],
                    gstate: dict[str, Any], kept: dict[tuple[Any, ...], _Bucket]) -> None:
        from descend.optim.chain import _reference_step

        keys = key[2]
        bucket = self._buckets.get(key)
        if bucket is None or not bucket.holds(states):
            if not all(st[k].dtype == p.dtype and st[k].device == p.device and st[k].numel() == p.numel()
                       for p, st in zip(params, states) for k in keys):
                _reference_step(transforms, params, grads, states, [group] * len(params), gstate)
                return
            bucket = _Bucket(keys, params, states)
        kept[key] = bucket
        torch._foreach_copy_(bucket.p_views, params)
        torch._foreach_copy_(bucket.g_views, grads)
        flat_p, flat_g = bucket.p, bucket.g
        flat: dict[str, Any] = dict(bucket.buffers)
        rules = tuple(tr for tr in transforms if isinstance(tr, PerParam) and tr.active(group, params[0]))
        if self._fn is None:
            flat["step"] = t
            _reference_step(list(rules), [flat_p], [flat_g], [flat], [group], gstate, active=True)
        else:
            scalars = tuple(_as_tensors(tr.scalars(group, t), flat_p.dtype) for tr in rules)
            self._fn(rules, flat_g, flat_p, flat, scalars)
        bucket.adopt(flat, params, states)
        torch._foreach_copy_(params, bucket.p_views)


def _as_tensors(scalars: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    return {k: (v if isinstance(v, bool) else torch.as_tensor(v, dtype=dtype)) for k, v in scalars.items()}
