"""The fast path: the same per-parameter rules, run through ``torch.compile`` as one fused kernel per parameter.

The readable path runs each rule as a few separate tensor operations, each a pass over memory. Compiled, the
whole chain of a parameter becomes one loop that reads ``g``, ``p`` and the state once and writes them once.
Nothing here restates an update rule: the compiled function calls the very ``apply`` methods of the readable
path. Hyperparameters and step-dependent numbers (bias corrections, the learning rate) enter as 0-d tensors,
so changing the learning rate, or a schedule, never triggers a recompile. Tests hold this path to the readable
one (``tests/test_optim_fast.py``).
"""

from __future__ import annotations

import functools
import shutil
from typing import Any

import torch
from torch import Tensor

from descend.optim.base import GlobalTransform, Transform
from descend.optim.transforms import PerParam

__all__ = ["MIN_NUMEL", "CompiledRules", "compiler_available", "worth_compiling"]

#: Tensors smaller than this stay on the readable path under ``compile="auto"``: their passes over memory stay in
#: cache, so the readable rule is already fast, and a compiled call per tensor costs more than it saves
#: (measured in benchmarks/optim_step.py: 100 tensors of 100k entries).
MIN_NUMEL = 2**20


@functools.cache
def compiler_available() -> bool:
    """True when torch.compile can build CPU kernels here (it needs a C++ compiler)."""
    return shutil.which("g++") is not None or shutil.which("c++") is not None or shutil.which("clang++") is not None


def worth_compiling(param_groups: list[dict[str, Any]]) -> bool:
    """True when some parameter is large enough for the compiled rule to pay (see ``MIN_NUMEL``)."""
    return any(p.numel() >= MIN_NUMEL for g in param_groups for p in g["params"]) and compiler_available()


def _apply_rules(rules: tuple[PerParam, ...], g: Tensor, p: Tensor, state: dict[str, Tensor],
                 scalars: tuple[dict[str, Any], ...]) -> None:
    for rule, s in zip(rules, scalars):
        g = rule.apply(g, p, state, s)
    p.add_(g)


class CompiledRules:
    """Runs the per-parameter rules of a chain through one compiled function (flat views, 0-d scalars)."""

    def __init__(self, min_numel: int = 0) -> None:
        self._fn = torch.compile(_apply_rules, fullgraph=True, dynamic=None)
        self.min_numel = min_numel

    def step(self, transforms: list[Transform], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], groups: list[dict[str, Any]], gstate: dict[str, Any]) -> None:
        from descend.optim.chain import _reference_step

        if any(isinstance(tr, GlobalTransform) for tr in transforms):
            # A global rule in the middle needs every update at once: keep the readable path.
            _reference_step(transforms, params, grads, states, groups, gstate)
            return
        small = [i for i, p in enumerate(params) if p.numel() < self.min_numel]
        if small:
            _reference_step(transforms, [params[i] for i in small], [grads[i] for i in small],
                            [states[i] for i in small], [groups[i] for i in small], gstate)
        for p, g, state, group in zip(params, grads, states, groups):
            if p.numel() < self.min_numel:
                continue
            rules = tuple(tr for tr in transforms if isinstance(tr, PerParam) and tr.active(group, p))
            t = int(state["step"])
            scalars = tuple(_as_tensors(tr.scalars(group, t), p.dtype) for tr in rules)
            tensors = {k: v for k, v in state.items() if k != "step" and isinstance(v, Tensor)}
            if p.numel() == 0:
                continue
            if not (p.is_contiguous() and g.is_contiguous() and all(v.is_contiguous() for v in tensors.values())):
                _reference_step(list(rules), [p], [g], [state], [group], gstate)
                continue
            self._fn(rules, g.view(-1), p.view(-1), {k: v.view(-1) for k, v in tensors.items()}, scalars)


def _as_tensors(scalars: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    return {k: (v if isinstance(v, bool) else torch.as_tensor(v, dtype=dtype)) for k, v in scalars.items()}
