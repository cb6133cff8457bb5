"""Losses by name, the default per task, and the checks that a loss and a model's output fit the target.

With model output :math:`f` (for classification: logits) and target :math:`y`, averaged over the batch:

============== ============================ =====================================================================
name           tasks                        per-example loss
============== ============================ =====================================================================
mse            regression                   :math:`(f-y)^2`
mae            regression                   :math:`|f-y|`
huber          regression                   :math:`\\tfrac12 (f-y)^2` if :math:`|f-y|\\le\\delta`, else
                                            :math:`\\delta(|f-y|-\\tfrac12\\delta)` (``delta``, default 1)
bce            binary (y in {0, 1})         :math:`-y\\log\\sigma(f)-(1-y)\\log(1-\\sigma(f))`, from logits
cross_entropy  multiclass (y a class index) :math:`-f_y+\\log\\sum_c e^{f_c}`
hinge          binary, multiclass           binary: :math:`\\max(0, 1-t f)`, :math:`t=2y-1`;
                                            multiclass: :math:`\\frac1C\\sum_{c\\ne y}\\max(0, 1-f_y+f_c)`
============== ============================ =====================================================================

Defaults: mse for regression, bce for binary, cross_entropy for multiclass.

Example:
    >>> import torch
    >>> from descend.losses import get
    >>> loss = get("huber", "regression", delta=0.5)
    >>> round(float(loss(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]))), 4)
    0.4375
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from descend.errors import ConfigError

__all__ = ["DEFAULTS", "LOSSES", "TASKS", "Loss", "check_output", "get", "per_position", "standardised",
           "training_objective"]

TASKS = ("regression", "binary", "multiclass")
DEFAULTS = {"regression": "mse", "binary": "bce", "multiclass": "cross_entropy"}


def _binary_hinge(f: Tensor, t: Tensor) -> Tensor:
    return torch.clamp_min(1.0 - t * f, 0.0).mean()


def _multiclass_hinge(f: Tensor, y: Tensor) -> Tensor:
    return F.multi_margin_loss(f, y)


def _signs(y: Tensor) -> Tensor:
    return y * 2.0 - 1.0


@dataclass(frozen=True)
class Loss:
    """A loss bound to a task: ``loss(output, target)`` is a scalar tensor.

    ``fn`` is the raw function the training loop calls on each batch; ``target_transform`` is applied once to the
    whole target before training (the hinge loss trains on signs :math:`t = 2y - 1`).
    """

    name: str
    task: str
    fn: Callable[[Tensor, Tensor], Tensor]
    options: dict[str, Any] = field(default_factory=dict)
    target_transform: Callable[[Tensor], Tensor] | None = None

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        if self.target_transform is not None:
            target = self.target_transform(target)
        if output.dim() == target.dim() + 1 and output.shape[-1] == 1 and self.task != "multiclass":
            output = output.squeeze(-1)
        return self.fn(output, target)


# name -> {task: function}; a name missing for a task does not fit that task.
LOSSES: dict[str, dict[str, Callable[..., Tensor]]] = {
    "mse": {"regression": F.mse_loss},
    "mae": {"regression": F.l1_loss},
    "huber": {"regression": F.huber_loss},
    "bce": {"binary": F.binary_cross_entropy_with_logits},
    "cross_entropy": {"multiclass": F.cross_entropy},
    "hinge": {"binary": _binary_hinge, "multiclass": _multiclass_hinge},
}
_ALIASES = {
    "mean_squared_error": "mse",
    "l2": "mse",
    "mean_absolute_error": "mae",
    "l1": "mae",
    "binary_cross_entropy": "bce",
    "log_loss": "bce",
    "ce": "cross_entropy",
    "categorical_cross_entropy": "cross_entropy",
}
_OPTIONS = {"huber": ("delta",)}


def get(spec: str | Loss | None, task: str, **options: Any) -> Loss:
    """The loss named ``spec`` (or the task's default when ``None``) for ``task``.

    Raises ConfigError when the name is unknown, when it does not fit the task (naming the losses that do), or
    when ``options`` are not the loss's (``delta`` for huber).
    """
    if task not in TASKS:
        raise ConfigError(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if isinstance(spec, Loss):
        if spec.task != task:
            raise ConfigError(f"loss: {spec.name!r} was made for a {spec.task} task, but the data is {task}")
        return spec
    name = DEFAULTS[task] if spec is None else spec
    if not isinstance(name, str):
        raise ConfigError(f"loss: invalid loss {spec!r}; expected a name ({', '.join(LOSSES)}) or a callable")
    name = _ALIASES.get(name, name)
    if name not in LOSSES:
        raise ConfigError(f"loss: unknown loss {spec!r}; expected one of {', '.join(LOSSES)} or a callable")
    fns = LOSSES[name]
    if task not in fns:
        fitting = [n for n, by_task in LOSSES.items() if task in by_task]
        raise ConfigError(
            f"loss: {name!r} does not fit a {task} task; expected one of {', '.join(fitting)} for {task} targets"
        )
    unknown = set(options) - set(_OPTIONS.get(name, ()))
    if unknown:
        accepted = ", ".join(_OPTIONS.get(name, ())) or "none"
        raise ConfigError(f"loss: {name!r} takes no option {', '.join(sorted(unknown))}; accepted: {accepted}")
    fn = fns[task]
    if "delta" in options:
        delta = options["delta"]
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta <= 0:
            raise ConfigError(f"loss: invalid delta={delta!r} for huber; expected a number > 0")
        fn = partial(fn, delta=float(delta))
    transform = _signs if (name == "hinge" and task == "binary") else None
    return Loss(name, task, fn, dict(options), transform)


def check_output(output_shape: tuple[int, ...], target_shape: tuple[int, ...], task: str, n_classes: int | None) -> bool:
    """Check that a model's output (per batch) fits the target; return True when the target needs a trailing 1.

    Regression with target ``(n,)`` accepts output ``(n,)`` or ``(n, 1)``, with ``(n, k)`` only ``(n, k)``;
    binary accepts ``(n,)`` or ``(n, 1)``; multiclass needs ``(n, n_classes)``, or ``(n, T, n_classes)`` for a
    target ``(n, T)`` of a class per position (a language model's next tokens; see :func:`per_position`).
    """
    got = tuple(output_shape[1:])
    tail = tuple(target_shape[1:])
    if task == "multiclass":
        if got == (*tail, n_classes):  # a class per example, or per position of a sequence (n, T) -> (n, T, C)
            return False
        expected = f"(n{''.join(f', {d}' for d in tail)}, {n_classes}) logits, one per class"
    elif tail == ():
        if got == ():
            return False
        if got == (1,):
            return True
        expected = "(n,) or (n, 1)"
    else:
        if got == tail:
            return False
        expected = f"(n, {', '.join(map(str, tail))})"
    shown = "(n" + "".join(f", {d}" for d in got) + ")"
    raise ConfigError(
        f"model: output shape {shown} does not fit the {task} target of shape "
        f"(n{''.join(f', {d}' for d in tail)}); expected {expected}"
    )


def per_position(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """``fn`` over every position of a sequence: logits ``(n, T, C)`` and classes ``(n, T)`` flattened to
    ``(nT, C)`` and ``(nT,)``, so the loss is the mean over all :math:`nT` tokens (cross-entropy per token, in
    nats; divide by :math:`\\ln 2` for bits per character).

    Example:
        >>> loss = per_position(get("cross_entropy", "multiclass").fn)
        >>> float(loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long))) == float(torch.log(torch.tensor(4.0)))
        True
    """

    def loss(output: Tensor, target: Tensor) -> Tensor:
        return fn(output.reshape(-1, output.shape[-1]), target.reshape(-1))

    return loss


def standardised(fn: Callable[[Tensor, Tensor], Tensor], shift: Tensor, scale: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss a target-scaled regression trains on: ``fn`` with output and target both standardised,

    .. math:: \\ell'(f, y) = \\ell\\left(\\frac{f - \\mu}{\\sigma}, \\frac{y - \\mu}{\\sigma}\\right),

    :math:`\\mu` = ``shift``, :math:`\\sigma` = ``scale`` (per output column, broadcast over the batch). For a model
    that predicts :math:`\\sigma g(x) + \\mu` this is :math:`\\ell(g(x), (y - \\mu)/\\sigma)`: the loss, its gradients and
    its curvature are those of the standardised problem, whatever the target's units.

    Example:
        >>> mse = get("mse", "regression")
        >>> loss = standardised(mse, torch.tensor([100.0]), torch.tensor([10.0]))
        >>> float(loss(torch.tensor([[120.0]]), torch.tensor([[100.0]])))
        4.0
    """

    def loss(output: Tensor, target: Tensor) -> Tensor:
        return fn((output - shift) / scale, (target - shift) / scale)

    return loss


def training_objective(fn: Callable[[Tensor, Tensor], Tensor], model: torch.nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``fn`` as the model was trained on it: :func:`standardised` by the model's output scale when it carries one
    (a regression trained with ``scale_target``), else ``fn`` itself."""
    shift, scale = getattr(model, "output_shift", None), getattr(model, "output_scale", None)
    if isinstance(shift, Tensor) and isinstance(scale, Tensor):
        return standardised(fn, shift, scale)
    return fn
