"""Metrics per task, computed in torch from a model's raw output (logits for classification).

With :math:`n` examples, output :math:`f_i`, target :math:`y_i`, :math:`\\bar y` the mean target:

- ``accuracy``: fraction of correct labels; binary predicts 1 when :math:`f_i > 0` (probability above 1/2),
  multiclass predicts :math:`\\arg\\max_c f_{ic}`.
- ``log_loss``: mean negative log-likelihood (natural log) of the true label, from logits.
- ``rmse``: :math:`\\sqrt{\\frac1n\\sum (f_i-y_i)^2}`;  ``mae``: :math:`\\frac1n\\sum |f_i-y_i|`.
- ``r2``: :math:`1 - \\sum (f_i-y_i)^2 / \\sum (y_i-\\bar y)^2` (averaged over target columns).

Example:
    >>> import torch
    >>> from descend.metrics import evaluate
    >>> evaluate(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), "multiclass", ["accuracy"])
    {'accuracy': 0.5}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from descend.errors import ConfigError

__all__ = ["BY_TASK", "GREATER_IS_BETTER", "METRICS", "evaluate", "greater_is_better"]


def _flat(f: Tensor, y: Tensor) -> Tensor:
    return f.reshape(y.shape) if f.numel() == y.numel() else f


def accuracy(f: Tensor, y: Tensor, task: str) -> float:
    if task == "multiclass":
        return float((f.argmax(dim=-1) == y).double().mean())
    return float(((_flat(f, y) > 0) == (y > 0.5)).double().mean())


def log_loss(f: Tensor, y: Tensor, task: str) -> float:
    if task == "multiclass":  # per example, or per position of a sequence (logits (n, T, C), classes (n, T))
        return float(F.cross_entropy(f.double().reshape(-1, f.shape[-1]), y.reshape(-1)))
    return float(F.binary_cross_entropy_with_logits(_flat(f, y).double(), y.double()))


def rmse(f: Tensor, y: Tensor, task: str) -> float:
    return float(torch.sqrt(F.mse_loss(_flat(f, y).double(), y.double())))


def mae(f: Tensor, y: Tensor, task: str) -> float:
    return float(F.l1_loss(_flat(f, y).double(), y.double()))


def r2(f: Tensor, y: Tensor, task: str) -> float:
    y = y.double()
    resid = ((_flat(f, y).double() - y) ** 2).sum(dim=0)
    total = ((y - y.mean(dim=0)) ** 2).sum(dim=0)
    return float((1.0 - resid / total.clamp_min(torch.finfo(torch.float64).tiny)).mean())


METRICS: dict[str, Callable[[Tensor, Tensor, str], float]] = {
    "accuracy": accuracy,
    "log_loss": log_loss,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
}
BY_TASK = {
    "regression": ("rmse", "mae", "r2"),
    "binary": ("accuracy", "log_loss"),
    "multiclass": ("accuracy", "log_loss"),
}
GREATER_IS_BETTER = {"accuracy": True, "r2": True, "log_loss": False, "rmse": False, "mae": False, "loss": False}


def greater_is_better(name: str) -> bool:
    """Whether a larger value of the metric ``name`` (``"val_accuracy"`` or ``"accuracy"``) is better."""
    base = name.removeprefix("val_").removeprefix("train_")
    if base not in GREATER_IS_BETTER:
        raise ConfigError(f"monitor: unknown metric {name!r}; expected loss or one of {', '.join(METRICS)}")
    return GREATER_IS_BETTER[base]


def check(names: Sequence[str] | None, task: str) -> tuple[str, ...]:
    """The metric names to compute for ``task`` (the task's defaults when ``names`` is None)."""
    if names is None:
        return BY_TASK[task]
    for name in names:
        if name not in BY_TASK[task]:
            raise ConfigError(f"metrics: {name!r} does not fit a {task} task; expected some of {', '.join(BY_TASK[task])}")
    return tuple(names)


@torch.no_grad()
def evaluate(output: Tensor, target: Tensor, task: str, names: Sequence[str] | None = None) -> dict[str, float]:
    """Compute the metrics ``names`` (default: the task's, see :data:`BY_TASK`) as Python floats."""
    return {name: METRICS[name](output, target, task) for name in check(names, task)}
