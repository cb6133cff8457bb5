r"""Newton's method with damping, for full-batch problems with up to about 10,000 parameters.

Each step forms the exact Hessian :math:`H` of the loss over all trainable parameters (flattened to a vector
:math:`\theta \in \mathbb{R}^n`) by double backward, and solves the damped Newton system

.. math:: (H + \lambda I)\, d = -g, \qquad \theta \leftarrow \theta + \eta\, d,

with :math:`g` the gradient, :math:`\lambda` = ``damping`` and :math:`\eta` = ``lr``. With ``adaptive=True``
(Levenberg-Marquardt) the step is tried first: the actual decrease is compared with the one the quadratic model
predicts, :math:`\rho = (L(\theta) - L(\theta + s)) / -(g^T s + \tfrac12 s^T H s)` with :math:`s = \eta d`; a step
with :math:`\rho \le 0` is undone and retried with :math:`4\lambda`; an accepted one divides :math:`\lambda` by 3
if :math:`\rho > 3/4` (the model is trustworthy: move towards pure Newton) and doubles it if
:math:`\rho < 1/4`; a step whose predicted decrease is below the loss's rounding level is kept as it is. With
``adaptive=False`` the damping is fixed. Either way, if :math:`H + \lambda I` is not
positive definite (a saddle), :math:`\lambda` is raised tenfold until it is, so ``d`` is always a descent
direction.

Cost per step: one forward, ``n`` vmapped Hessian-vector products (``chunk`` at a time), an ``n x n``
Cholesky; with ``adaptive=True`` one more forward per trial. Memory: ``n^2`` numbers for the Hessian.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.optim.base import check

__all__ = ["Newton"]


class Newton(torch.optim.Optimizer):
    r"""Damped Newton's method; ``step(closure)`` takes one Newton step.

    The closure re-evaluates the model and returns the loss **without calling** ``backward()``: Newton
    differentiates it twice itself. (It may zero gradients; after the step each ``p.grad`` holds the gradient at
    the starting point, for callbacks that read it.) ``step`` returns the loss at the starting point.

    Args:
        params: the parameters (one param group; all of them form one Newton system).
        lr: step scale :math:`\eta` in (0, 1]; 1 is the full Newton step.
        damping: initial :math:`\lambda >= 0` (absolute, in the loss's units per parameter squared).
        adaptive: adapt :math:`\lambda` Levenberg-Marquardt style and reject steps that raise the loss.
        max_params: refuse more parameters than this (the Hessian has ``n^2`` entries); >= 1.
        chunk: Hessian rows computed per vmapped backward pass; >= 1.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
        >>> opt = Newton([w], damping=0.0)
        >>> loss = lambda: (w[0] - 1) ** 2 + 10 * (w[1] + 1) ** 2 + w[0] * w[1]
        >>> _ = opt.step(loss)          # one exact step on a quadratic lands on the minimum
        >>> [round(x, 9) for x in w.tolist()]
        [1.538461538, -1.076923077]
    """

    #: How ``step``'s closure must behave, read by ``descend.fit``: "loss" = return the loss, no ``backward()``.
    closure_convention: ClassVar[str] = "loss"

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        damping: float = 1e-4,
        *,
        adaptive: bool = True,
        max_params: int = 10_000,
        chunk: int = 256,
    ) -> None:
        check("Newton", "lr", lr, 0.0, 1.0, lo_open=True)
        check("Newton", "damping", damping, 0.0)
        check("Newton", "max_params", max_params, 1, kind=int)
        check("Newton", "chunk", chunk, 1, kind=int)
        super().__init__(params, {"lr": lr, "damping": damping})
        if len(self.param_groups) != 1:
            raise ValueError(
                f"Newton: invalid param groups: {len(self.param_groups)} groups; expected one "
                "(the Hessian couples all parameters)"
            )
        self.adaptive = bool(adaptive)
        self.chunk = chunk
        self._params = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        n = sum(p.numel() for p in self._params)
        if n > max_params:
            raise ValueError(
                f"Newton: invalid number of parameters={n}; expected at most max_params={max_params} "
                f"(the Hessian holds n^2 = {n * n:.2e} numbers); use LBFGS for larger models"
            )

    def _hessian(self, loss: Tensor) -> tuple[Tensor, Tensor]:
        try:
            grads = torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True)
        except RuntimeError as err:
            if "second time" not in str(err):
                raise
            raise ValueError(
                "Newton: the closure called loss.backward(); expected it to return the loss with its graph "
                "(Newton differentiates it twice itself)"
            ) from err
        g = torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                       for gi, p in zip(grads, self._params)])
        n = g.numel()
        h = torch.zeros(n, n, dtype=g.dtype, device=g.device)
        if g.requires_grad:
            eye = torch.eye(n, dtype=g.dtype, device=g.device)
            for i in range(0, n, self.chunk):
                seeds = eye[i : i + self.chunk]
                rows = torch.autograd.grad(g, self._params, grad_outputs=seeds, retain_graph=True,
                                           allow_unused=True, is_grads_batched=True)
                h[i : i + len(seeds)] = torch.cat(
                    [r.reshape(len(seeds), -1) if r is not None else seeds.new_zeros(len(seeds), p.numel())
                     for r, p in zip(rows, self._params)], dim=1)
        return g.detach(), (h + h.T) / 2

    def _add(self, step: Tensor, alpha: float = 1.0) -> None:
        i = 0
        with torch.no_grad():
            for p in self._params:
                p.add_(step[i : i + p.numel()].view_as(p), alpha=alpha)
                i += p.numel()

    @staticmethod
    def _solve(h: Tensor, g: Tensor, lam: float) -> tuple[Tensor, float]:
        """``d = -(H + lam I)^{-1} g``, raising ``lam`` tenfold until ``H + lam I`` is positive definite."""
        eye = torch.eye(len(g), dtype=h.dtype, device=h.device)
        scale = max(float(h.diagonal().abs().max()), 1e-12)
        for _ in range(60):
            factor, info = torch.linalg.cholesky_ex(h + lam * eye)
            if int(info) == 0:
                return -torch.cholesky_solve(g[:, None], factor)[:, 0], lam
            lam = max(10.0 * lam, 1e-10 * scale)
        raise FloatingPointError("Newton: could not make H + damping*I positive definite (non-finite Hessian?)")

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        group = self.param_groups[0]
        state = self.state[self._params[0]]
        lam = float(state.get("damping", group["damping"]))
        with torch.enable_grad():
            loss = closure()
            g, h = self._hessian(loss)
        i = 0
        for p in self._params:
            p.grad = g[i : i + p.numel()].view_as(p).clone()
            i += p.numel()
        f0 = float(loss)
        for _ in range(60):
            d, lam = self._solve(h, g, lam)
            s = group["lr"] * d
            self._add(s)
            if not self.adaptive:
                break
            predicted = -float(g @ s + 0.5 * s @ (h @ s))
            if predicted <= 64 * torch.finfo(g.dtype).eps * max(abs(f0), 1e-30):
                break  # a gain the loss cannot resolve in floating point: keep the step, keep lambda
            f1 = float(closure())
            rho = (f0 - f1) / predicted if predicted > 0 else (1.0 if f1 <= f0 else -1.0)
            if rho > 0 and math.isfinite(f1):
                lam = lam / 3 if rho > 0.75 else (2 * lam if rho < 0.25 else lam)
                break
            self._add(s, alpha=-1.0)  # undo, and trust the quadratic model less
            lam = max(4.0 * lam, 1e-10 * max(float(h.diagonal().abs().max()), 1e-12))
        state["damping"] = lam
        state["n_iter"] = state.get("n_iter", 0) + 1
        return loss.detach()
