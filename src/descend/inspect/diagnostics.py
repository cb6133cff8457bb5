"""The diagnostics ``descend.fit`` runs by default (``diagnostics=True``): gradient health, sharpness, findings.

:func:`default_callbacks` adds what the caller's callbacks lack:

- a :class:`~descend.inspect.monitor.HealthMonitor` (every 50 steps: one measurement costs about one training
  step of a small MLP, so 25 would cost ~4% of its training time and 50 costs ~2%);
- a :class:`~descend.inspect.monitor.SharpnessMonitor` (every 1000 steps, Lanczos to a relative residual of
  1e-2 in at most 20 Hessian-vector products) on :func:`training_loss`, the training loss on a fixed batch
  of the training rows. It compares the top eigenvalue with ``2/lr`` (``(2 + 2 momentum)/lr`` with heavy-ball
  momentum) and, for Adam-like optimizers, the preconditioned sharpness with ``(2 + 2 beta1)/((1 - beta1) lr)``.
  Left out for optimizers that step with a closure (Newton, L-BFGS): their steps are scaled by curvature, not
  by a learning rate, so ``2/lr`` is no edge for them;
- a :class:`~descend.inspect.findings.Findings` callback reading both, which logs each finding as a
  ``"finding"`` event at the end of the run (``FitResult.findings`` holds them).

A callback of one of these kinds passed by the caller is used instead of the default one. The default
cadences cost at most 10% of the training time of a small MLP trained with mini-batches of 32
(``benchmarks/inspect_overhead.py``; figures in ``docs/benchmarks.md``).

Example:
    >>> import torch
    >>> from descend.train import fit
    >>> X = torch.randn(128, 3); y = (X[:, 0] > 0).float()
    >>> result = fit("logistic", (X, y), epochs=30, lr=0.05, progress=False)
    >>> result.findings
    []
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from descend.inspect.findings import Finding, Findings
from descend.inspect.monitor import HealthMonitor, SharpnessMonitor
from descend.train.state import Callback

__all__ = ["SHARPNESS_ROWS", "collect_findings", "default_callbacks", "training_loss"]

SHARPNESS_ROWS = 256


def training_loss(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    X: Tensor,
    y: Tensor,
    *,
    penalty: Callable[[], Tensor] | None = None,
    rows: int = SHARPNESS_ROWS,
    seed: int = 0,
) -> Callable[[], Tensor]:
    r"""A closure returning the training objective on a fixed batch: :math:`J_B(\theta)` of ``descend.fit``.

    The batch :math:`B` is ``rows`` training rows (>= 1; all of them if there are fewer) drawn once without
    replacement with ``seed``, so successive measurements see the same loss surface. The penalty, if any, is
    included, as it is in the steps. The model is evaluated in eval mode (dropout off, batch-norm running
    statistics), so the closure is deterministic, and its previous mode is restored after each call.

    Example:
        >>> lin = torch.nn.Linear(2, 1)
        >>> X, y = torch.randn(10, 2), torch.randn(10, 1)
        >>> loss = training_loss(lin, torch.nn.functional.mse_loss, X, y, rows=100)
        >>> bool(loss() == torch.nn.functional.mse_loss(lin(X), y))
        True
    """
    n = len(X)
    if rows < n:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:rows].sort().values
        X, y = X.index_select(0, idx), y.index_select(0, idx)

    def loss() -> Tensor:
        was_training = model.training
        model.eval()
        try:
            value = loss_fn(model(X), y)
        finally:
            model.train(was_training)
        return value + penalty() if penalty is not None else value

    return loss


def default_callbacks(
    present: Sequence[Callback],
    *,
    loss: Callable[[], Tensor] | None,
) -> list[Callback]:
    """The diagnostic callbacks to add to ``present``: those of the three kinds it lacks.

    ``loss`` is the closure for the sharpness monitor (see :func:`training_loss`), also given to a monitor in
    ``present`` built without one; None leaves sharpness out.
    A caller's :class:`Findings` is kept as it is (with the monitors it was given).
    """
    added: list[Callback] = []
    health = next((cb for cb in present if isinstance(cb, HealthMonitor)), None)
    if health is None:
        health = HealthMonitor()
        added.append(health)
    sharp = next((cb for cb in present if isinstance(cb, SharpnessMonitor)), None)
    if sharp is not None and sharp.loss_fn is None:
        sharp.loss_fn = loss  # a monitor that asked for fit's own objective (None: fit has none to give)
    if sharp is None and loss is not None:
        sharp = SharpnessMonitor(loss)
        added.append(sharp)
    if not any(isinstance(cb, Findings) for cb in present):
        added.append(Findings(health=health, sharpness=sharp))
    return added


def collect_findings(callbacks: Sequence[Any]) -> list[Finding]:
    """Every finding of the :class:`Findings` callbacks among ``callbacks``, in their order."""
    return [f for cb in callbacks if isinstance(cb, Findings) for f in cb.findings]
