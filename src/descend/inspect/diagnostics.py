"""The diagnostics ``descend.fit`` runs by default (``diagnostics=True``): gradient health, sharpness, findings.

:func:`default_callbacks` adds what the caller's callbacks lack:

- a :class:`~descend.inspect.monitor.HealthMonitor` (every 100 steps: one measurement costs about one training
  step of a small MLP and 1.5 of a larger one, so 50 would cost 2-3% of its training time and 100 costs 1-1.5%);
- a :class:`~descend.inspect.monitor.SharpnessMonitor` (every 1000 steps, Lanczos to a relative residual of
  1e-2 in at most 20 Hessian-vector products) on :func:`training_loss`, the training loss on a fixed batch
  of ``SHARPNESS_ROWS`` (128) training rows: a Hessian-vector product there costs about as much as 4 to 10 steps
  of batch 32, so a measurement of 5-10 products stays near 3% of the steps between two. With smaller batches
  the fixed batch is four of them, and never under ``SHARPNESS_MIN_ROWS`` (32) rows (:func:`sharpness_rows`): on
  a compute-bound model a product costs in proportion to its rows, and 128 rows of a character LM trained on
  batches of 12 made the two measurements of a 2,000-step run a fifth of its time. It compares the top
  eigenvalue with ``2/lr`` (``(2 + 2 momentum)/lr`` with heavy-ball momentum) or, for Adam-like optimizers,
  the preconditioned sharpness with ``(2 + 2 beta1)/((1 - beta1) lr)``.
  Left out for optimizers that step with a closure (Newton, L-BFGS): their steps are scaled by curvature, not
  by a learning rate, so ``2/lr`` is no edge for them;
- a :class:`~descend.inspect.findings.Findings` callback reading both, which logs each finding as a
  ``"finding"`` event at the end of the run (``FitResult.findings`` holds them).

A callback of one of these kinds passed by the caller is used instead of the default one. The default
cadences, with the divergence guard, cost at most 10% of the training time of an MLP trained with mini-batches
of 32 (``benchmarks/inspect_overhead.py``; figures in ``docs/benchmarks.md``).

Example:
    >>> import torch
    >>> from descend.train import fit
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(128, 3, generator=g); y = (X[:, 0] > 0).float()
    >>> result = fit("logistic", (X, y), epochs=30, lr=0.05, progress=False)
    >>> result.findings
    []
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from descend.inspect.findings import Finding, Findings
from descend.inspect.monitor import HealthMonitor, SharpnessMonitor
from descend.train.callbacks import EarlyStopping
from descend.train.guard import DivergenceGuard
from descend.train.state import Callback

__all__ = ["SHARPNESS_MIN_ROWS", "SHARPNESS_ROWS", "TrainingLoss", "collect_findings", "default_callbacks",
           "sharpness_rows", "training_loss"]

SHARPNESS_ROWS = 128
SHARPNESS_MIN_ROWS = 32


def sharpness_rows(batch_size: int) -> int:
    """Rows of the fixed batch that sharpness is measured on, for a run of mini-batches of ``batch_size`` rows:
    ``SHARPNESS_ROWS``, or four batches where that is less, but never under ``SHARPNESS_MIN_ROWS``.

    Example:
        >>> [sharpness_rows(b) for b in (1, 12, 32, 1000)]
        [32, 48, 128, 128]
    """
    return min(SHARPNESS_ROWS, max(SHARPNESS_MIN_ROWS, 4 * batch_size))


def training_loss(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    X: Tensor,
    y: Tensor,
    *,
    penalty: Callable[[], Tensor] | None = None,
    rows: int = SHARPNESS_ROWS,
    seed: int = 0,
) -> TrainingLoss:
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
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:rows].sort().values.to(X.device)
        X, y = X.index_select(0, idx), y.index_select(0, idx)
    return TrainingLoss(model, loss_fn, X, y, penalty)


class TrainingLoss:
    """The closure :func:`training_loss` returns; :meth:`baseline` is the loss of the best constant prediction."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], X: Tensor, y: Tensor,
                 penalty: Callable[[], Tensor] | None) -> None:
        self.model, self.loss_fn, self.X, self.y, self.penalty = model, loss_fn, X, y, penalty

    def __call__(self) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            value = self.loss_fn(self.model(self.X), self.y)
        finally:
            self.model.train(was_training)
        return value + self.penalty() if self.penalty is not None else value

    def baseline(self) -> float:
        r""":math:`\min_c \ell(c, y)` over one output row :math:`c` repeated for every row of the batch: the loss
        of predicting the mean (regression, in the objective's units) or the class frequencies (classification),
        which a model has to beat to have learned anything. Found by L-BFGS, started from the best of the closed
        forms that minimise the common losses (the mean, the median, the log-odds of the mean, the log class
        frequencies), so that for those losses it only confirms the optimum; the model is not touched.

        Example:
            >>> y = torch.tensor([[0.0], [2.0]])
            >>> round(TrainingLoss(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, y, y, None).baseline(), 6)
            1.0
        """
        with torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            try:
                shape = self.model(self.X[:1]).shape[1:]
            finally:
                self.model.train(was_training)
        dtype = self.X.dtype if self.X.is_floating_point() else torch.float32
        n = len(self.y)

        def loss(c: Tensor) -> Tensor:
            return self.loss_fn(c.expand(n, *shape), self.y)

        with torch.no_grad():
            start = torch.zeros(shape, dtype=dtype, device=self.X.device)
            lowest = float(loss(start))
            for candidate in _constants(self.y, shape, dtype):
                try:
                    value = float(loss(candidate))
                except (RuntimeError, ValueError):  # a form this loss does not take (a shape or a range)
                    continue
                if value < lowest or not math.isfinite(lowest):
                    start, lowest = candidate, value
        c = start.clone().requires_grad_(True)
        solver = torch.optim.LBFGS([c], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def objective() -> Tensor:
            solver.zero_grad()
            value = loss(c)
            value.backward()
            return value

        solver.step(objective)
        with torch.no_grad():
            found = float(loss(c))
        finite = [v for v in (found, lowest) if math.isfinite(v)]
        return min(finite) if finite else found


def _constants(y: Tensor, shape: torch.Size, dtype: torch.dtype) -> list[Tensor]:
    """Output rows of ``shape`` that minimise the common losses for targets ``y``: the mean (squared error), the
    median (absolute error), the log-odds of the mean (binary cross-entropy on 0/1 targets) and the log class
    frequencies (cross-entropy on class indices)."""
    width = math.prod(shape)
    out: list[Tensor] = []
    if y.dtype == torch.bool or y.is_complex():
        return out
    classes = not y.is_floating_point() and len(shape) == 1 and y.dim() == 1 and len(y) > 0
    if classes and int(y.min()) >= 0 and int(y.max()) < shape[0]:
        counts = torch.bincount(y, minlength=shape[0]).to(dtype)
        # An absent class's optimum is minus infinity; a logit 40 below the others leaves it e^-40 of the mass.
        out.append(torch.where(counts > 0, counts.log(), counts.new_tensor(-40.0)) - math.log(len(y)))
    if y.numel() != len(y) * width or not len(y):
        return out
    rows = y.reshape(len(y), *shape).to(dtype)
    mean = rows.mean(0)
    out += [mean, rows.median(0).values]  # any point between the two middle values minimises absolute error
    if bool(((rows >= 0) & (rows <= 1)).all()):
        p = mean.clamp(1e-7, 1 - 1e-7)
        out.append(p.log() - (-p).log1p())
    return out


def default_callbacks(
    present: Sequence[Callback],
    *,
    loss: Callable[[], Tensor] | None,
    options: Mapping[str, Any] | None = None,
) -> list[Callback]:
    """The diagnostic callbacks to add to ``present``: those of the three kinds it lacks.

    ``loss`` is the closure for the sharpness monitor (see :func:`training_loss`); None leaves sharpness out.
    The added :class:`Findings` reads the monitors, the :class:`~descend.train.EarlyStopping` and
    :class:`~descend.train.DivergenceGuard` among ``present`` (what they did is evidence), ``loss`` for its
    probe, and ``options`` (fit's options: ``l2``, ``clip_norm``, ...) so its advice leaves out what the run
    already does. A caller's :class:`Findings` is kept as it is (with the monitors it was given).
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
        stopping = next((cb for cb in present if isinstance(cb, EarlyStopping)), None)
        guard = next((cb for cb in present if isinstance(cb, DivergenceGuard)), None)
        added.append(Findings(health=health, sharpness=sharp, early_stopping=stopping, guard=guard, loss=loss,
                              options=options))
    return added


def collect_findings(callbacks: Sequence[Any]) -> list[Finding]:
    """Every finding of the :class:`Findings` callbacks among ``callbacks``, in their order."""
    return [f for cb in callbacks if isinstance(cb, Findings) for f in cb.findings]
