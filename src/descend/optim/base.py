"""The two shapes of a gradient transformation, and the one message template for bad hyperparameters.

A *transformation* maps a gradient to an update, keeping a small named state per parameter. It reads its
hyperparameters from the parameter group, so every group may carry its own values, as in torch.optim.

- :class:`Transform` works on one parameter at a time: ``update(g, p, state, group) -> u``.
- :class:`GlobalTransform` sees every gradient of the step at once (global-norm clipping, skipping a step,
  accumulation) and may return ``None`` to say "apply no update this step".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

__all__ = ["GlobalTransform", "Transform", "check"]

Group = Mapping[str, Any]


class Transform:
    """A per-parameter rule: gradient in, update out, with named state.

    Subclasses set ``defaults`` (the hyperparameters they read from each param group, with their default
    values) and ``state_names`` (the keys they keep in ``optimizer.state[p]``), and implement ``init`` and
    ``update``. ``state["step"]`` holds the number of updates applied to the parameter, counting the current
    one, as a 0-d float tensor (the convention of torch.optim).
    """

    defaults: dict[str, Any]
    state_names: tuple[str, ...] = ()
    name: str = "transform"

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.validate(defaults)

    def validate(self, group: Group) -> None:
        """Raise ValueError/TypeError if a hyperparameter in ``group`` is outside its valid range."""

    def init(self, p: Tensor, group: Group) -> dict[str, Tensor]:
        """The initial state for parameter ``p`` (empty by default)."""
        return {}

    def update(self, g: Tensor, p: Tensor, state: dict[str, Any], group: Group) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{self.name}({args})"


class GlobalTransform(Transform):
    """A rule over all gradients of a step at once. Its options are fixed at construction, not per group.

    Its own small state (counters) lives in ``gstate``, a dict saved in the optimizer's ``state_dict``; its
    per-parameter state lives in ``states[i]`` beside the other transforms' state.
    """

    def update(self, g: Tensor, p: Tensor, state: dict[str, Any], group: Group) -> Tensor:
        raise TypeError(f"{self.name} is a global transformation; call update_all")

    def update_all(
        self,
        grads: list[Tensor],
        params: list[Tensor],
        states: list[dict[str, Any]],
        gstate: dict[str, Any],
    ) -> list[Tensor] | None:
        raise NotImplementedError


def _describe(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    if hi == math.inf:
        return f"a number {'>' if lo_open else '>='} {lo:g}"
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"a number in {left}{lo:g}, {hi:g}{right}"


def check(
    owner: str,
    name: str,
    value: Any,
    lo: float = 0.0,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    kind: type | tuple[type, ...] = (int, float),
    accept: Callable[[Any], bool] | None = None,
    expected: str | None = None,
) -> None:
    """Validate one hyperparameter with the project's message template.

    ``"Adam: invalid betas[0]=1.0; expected a number in [0, 1)"``. Tensors are checked by their value.
    ``accept`` lets a caller admit other types (a schedule for ``lr``) before the range check.
    """
    if accept is not None and accept(value):
        return
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{owner}: invalid {name}: a tensor of shape {tuple(value.shape)}; expected one number")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, kind):
        what = expected or ("an int" if kind is int else "a number")
        raise TypeError(f"{owner}: invalid {name}={value!r} ({type(value).__name__}); expected {what}")
    x = float(value)  # type: ignore[arg-type]
    bad = math.isnan(x) or x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi)
    if bad:
        what = expected or _describe(lo, hi, lo_open, hi_open)
        if kind is int:
            what = what.replace("a number", "an int")
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected {what}")


def check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: invalid {name}={value!r} ({type(value).__name__}); expected True or False")


def named_for(error: ValueError | TypeError, owner: str) -> ValueError | TypeError:
    """``error`` with the rule's name that starts its message replaced by ``owner``'s: a named optimizer's bad
    argument reads ``"SGD: invalid lr=-1 ..."``, naming what the user called, not the rule inside it."""
    said = str(error)
    rule, sep, rest = said.partition(": ")
    if not sep or not rule.replace("_", "").isalpha() or not rule.islower():
        return error
    return type(error)(f"{owner}: {rest}")

