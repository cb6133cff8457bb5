r"""L-BFGS for full-batch problems: quasi-Newton steps from the last few gradient differences.

With the parameters flattened to :math:`\theta`, gradient :math:`g_k`, and the last ``m`` pairs
:math:`s_i = \theta_{i+1} - \theta_i`, :math:`y_i = g_{i+1} - g_i` (kept only when :math:`s_i^T y_i > 10^{-10}`,
so the implied inverse Hessian stays positive definite), the direction is :math:`d_k = -H_k g_k`, where
:math:`H_k` is the BFGS inverse-Hessian estimate built from those pairs on top of
:math:`H^0 = \gamma I`, :math:`\gamma = s^T y / y^T y` of the newest pair. The product is the two-loop
recursion (Nocedal & Wright, *Numerical Optimization*, Algorithm 7.4):

.. math::
    q \leftarrow g;\quad a_i = \rho_i s_i^T q,\ q \leftarrow q - a_i y_i\ (i = k-1 \dots k-m);\quad
    r \leftarrow \gamma q;\quad b = \rho_i y_i^T r,\ r \leftarrow r + (a_i - b) s_i\ (i = k-m \dots k-1);
    \quad d = -r,

with :math:`\rho_i = 1 / y_i^T s_i`. The step is :math:`\theta \leftarrow \theta + t d` with :math:`t` from a
line search (``"strong_wolfe"``: :math:`f(\theta + t d) \le f + c_1 t g^T d` and
:math:`|g(\theta + t d)^T d| \le c_2 |g^T d|`, :math:`c_1 = 10^{-4}, c_2 = 0.9`, by bracketing and cubic
interpolation, Algorithms 3.5-3.6; ``"backtracking"``: halve until the first holds) or the fixed
:math:`t = ` ``lr``. The very first step has no curvature pairs, so it is scaled to
:math:`t = \mathrm{lr} \cdot \min(1, 1/\|g\|_1)`.

Arguments, defaults and stopping rules are those of ``torch.optim.LBFGS``, so it is a drop-in replacement: with
``line_search_fn=None`` the two produce the same iterates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.optim.base import check

__all__ = ["LBFGS"]

Evaluate = Callable[[float], tuple[float, float]]  # t -> (f, g^T d) at x + t d


def _cubic_minimum(a: float, fa: float, ga: float, b: float, fb: float, gb: float, lo: float, hi: float) -> float:
    """Minimiser of the cubic through (a, fa) and (b, fb) with slopes ga, gb, clamped to [lo, hi] (midpoint if none)."""
    d1 = ga + gb - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - ga * gb
    if disc < 0 or a == b:
        return (lo + hi) / 2
    d2 = disc**0.5 * (1 if b > a else -1)
    t = b - (b - a) * (gb + d2 - d1) / (gb - ga + 2 * d2)
    return min(max(t, lo), hi) if t == t else (lo + hi) / 2


def strong_wolfe(
    evaluate: Evaluate, f0: float, g0: float, t: float, *, c1: float = 1e-4, c2: float = 0.9,
    max_evals: int = 25, tolerance_change: float = 1e-9, d_norm: float = 1.0,
) -> tuple[float, int]:
    """A step ``t`` meeting the strong Wolfe conditions along a descent direction (``g0 < 0``), and evals used.

    ``evaluate(t)`` moves the parameters to ``x + t d`` and returns ``(f, g^T d)`` there. If the evaluation
    budget runs out, or the bracket shrinks below ``tolerance_change`` in parameter space (its width in ``t``
    times ``d_norm = max |d_i|``), the best point found that decreases ``f`` sufficiently (or ``t = 0``) is
    returned.
    """
    evals = 0
    prev_t, prev_f, prev_g = 0.0, f0, g0
    lo = hi = None  # bracket: lo is the best point so far meeting sufficient decrease
    while evals < max_evals:
        f, g = evaluate(t)
        evals += 1
        if f > f0 + c1 * t * g0 or (evals > 1 and f >= prev_f):
            lo, hi = (prev_t, prev_f, prev_g), (t, f, g)
            break
        if abs(g) <= -c2 * g0:
            return t, evals
        if g >= 0:
            lo, hi = (t, f, g), (prev_t, prev_f, prev_g)
            break
        nxt = _cubic_minimum(prev_t, prev_f, prev_g, t, f, g, t + 0.01 * (t - prev_t), 10 * t)
        prev_t, prev_f, prev_g, t = t, f, g, nxt
    if lo is None or hi is None:
        return prev_t, evals
    while evals < max_evals and abs(hi[0] - lo[0]) * d_norm > tolerance_change:
        left, right = min(lo[0], hi[0]), max(lo[0], hi[0])
        width = right - left
        t = _cubic_minimum(*lo, *hi, left + 0.1 * width, right - 0.1 * width)
        f, g = evaluate(t)
        evals += 1
        if f > f0 + c1 * t * g0 or f >= lo[1]:
            hi = (t, f, g)
        else:
            if abs(g) <= -c2 * g0:
                return t, evals
            if g * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = (t, f, g)
    return lo[0], evals


def backtracking(evaluate: Evaluate, f0: float, g0: float, t: float, *, c1: float = 1e-4,
                 max_evals: int = 25) -> tuple[float, int]:
    """Halve ``t`` until ``f(x + t d) <= f0 + c1 t g0`` (Armijo); returns ``(t, evals)`` (``t = 0`` if none)."""
    for evals in range(1, max_evals + 1):
        f, _ = evaluate(t)
        if f <= f0 + c1 * t * g0:
            return t, evals
        t /= 2
    return 0.0, max_evals


class LBFGS(torch.optim.Optimizer):
    """Limited-memory BFGS; one ``step(closure)`` runs up to ``max_iter`` iterations.

    The closure re-evaluates the model, calls ``loss.backward()`` and returns the loss (torch.optim's
    convention). ``step`` returns the loss at the starting point.

    Args:
        params: the parameters (one param group).
        lr: step length ``t`` (fixed), or the first trial step of the line search; > 0.
        max_iter: iterations per ``step``; >= 1.
        max_eval: closure evaluations per ``step`` (default ``max_iter * 5 // 4``); >= 1.
        tolerance_grad: stop when ``max |g_i| <= tolerance_grad``; >= 0.
        tolerance_change: stop when the step or the loss change is below it; >= 0.
        history_size: the number ``m`` of curvature pairs kept; >= 1.
        line_search_fn: ``None`` (fixed step), ``"strong_wolfe"`` or ``"backtracking"``.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
        >>> opt = LBFGS([w], max_iter=100, tolerance_change=1e-14, line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2    # Rosenbrock
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)
        >>> [round(x, 6) for x in w.tolist()]
        [1.0, 1.0]
    """

    #: How ``step``'s closure must behave, read by ``descend.fit``: "backward" = zero the gradients, compute the
    #: loss, call ``backward()`` and return the loss (torch.optim.LBFGS's convention).
    closure_convention: ClassVar[str] = "backward"

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        check("LBFGS", "lr", lr, 0.0, lo_open=True)
        check("LBFGS", "max_iter", max_iter, 1, kind=int)
        max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
        check("LBFGS", "max_eval", max_eval, 1, kind=int)
        check("LBFGS", "tolerance_grad", tolerance_grad, 0.0)
        check("LBFGS", "tolerance_change", tolerance_change, 0.0)
        check("LBFGS", "history_size", history_size, 1, kind=int)
        if line_search_fn not in (None, "strong_wolfe", "backtracking"):
            raise ValueError(
                f"LBFGS: invalid line_search_fn={line_search_fn!r}; expected None, 'strong_wolfe' or 'backtracking'"
            )
        defaults = {"lr": lr, "max_iter": max_iter, "max_eval": max_eval, "tolerance_grad": tolerance_grad,
                    "tolerance_change": tolerance_change, "history_size": history_size,
                    "line_search_fn": line_search_fn}
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"LBFGS: invalid param groups: {len(self.param_groups)} groups; expected one")
        self._params: list[Tensor] = self.param_groups[0]["params"]

    def _flat_grad(self) -> Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self._params])

    def _set(self, x0: list[Tensor], t: float, d: Tensor) -> None:
        i = 0
        with torch.no_grad():
            for p, p0 in zip(self._params, x0):
                p.copy_(p0 + t * d[i : i + p.numel()].view_as(p))
                i += p.numel()

    def _write_grad(self, g: Tensor) -> None:
        i = 0
        for p in self._params:
            p.grad = g[i : i + p.numel()].view_as(p).clone()
            i += p.numel()

    @staticmethod
    def _direction(g: Tensor, s: list[Tensor], y: list[Tensor], rho: list[float], gamma: float) -> Tensor:
        """``-H g`` by the two-loop recursion."""
        q = g.clone()
        a = [0.0] * len(s)
        for i in reversed(range(len(s))):
            a[i] = rho[i] * float(s[i] @ q)
            q -= a[i] * y[i]
        r = gamma * q
        for i in range(len(s)):
            b = rho[i] * float(y[i] @ r)
            r += (a[i] - b) * s[i]
        return -r

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        group = self.param_groups[0]
        tol_change = group["tolerance_change"]
        closure = torch.enable_grad()(closure)
        state = self.state[self._params[0]]  # global state, kept with the first parameter as torch.optim does
        for key, value in (("n_iter", 0), ("func_evals", 0), ("s", []), ("y", []), ("rho", []), ("gamma", 1.0)):
            state.setdefault(key, value)
        orig_loss = closure()
        loss, g = float(orig_loss), self._flat_grad()
        evals = 1
        if float(g.abs().max()) <= group["tolerance_grad"]:
            state["func_evals"] += evals
            return orig_loss
        for it in range(1, group["max_iter"] + 1):
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                state["s"], state["y"], state["rho"], state["gamma"] = [], [], [], 1.0
            else:
                s, y = state["last_step"], g - state["last_grad"]
                sy = float(s @ y)
                if sy > 1e-10:
                    if len(state["s"]) == group["history_size"]:
                        for key in ("s", "y", "rho"):
                            state[key].pop(0)
                    state["s"].append(s)
                    state["y"].append(y)
                    state["rho"].append(1.0 / sy)
                    state["gamma"] = sy / float(y @ y)
            d = self._direction(g, state["s"], state["y"], state["rho"], state["gamma"])
            t = group["lr"] * min(1.0, 1.0 / float(g.abs().sum())) if state["n_iter"] == 1 else group["lr"]
            gtd = float(g @ d)
            state["last_grad"], prev_loss = g, loss
            if gtd > -tol_change:  # not a descent direction: nothing left to gain along it
                state["last_step"] = torch.zeros_like(d)
                break
            if group["line_search_fn"] is not None:
                x0 = [p.detach().clone() for p in self._params]
                seen: dict[float, tuple[float, Tensor]] = {0.0: (loss, g)}

                def evaluate(step: float, x0: list[Tensor] = x0, d: Tensor = d, seen: dict = seen) -> tuple[float, float]:
                    self._set(x0, step, d)
                    seen[step] = (float(closure()), self._flat_grad())
                    return seen[step][0], float(seen[step][1] @ d)

                budget = max(group["max_eval"] - evals, 1)
                if group["line_search_fn"] == "strong_wolfe":
                    t, used = strong_wolfe(evaluate, loss, gtd, t, max_evals=budget, tolerance_change=tol_change,
                                           d_norm=float(d.abs().max()))
                else:
                    t, used = backtracking(evaluate, loss, gtd, t, max_evals=budget)
                evals += used
                self._set(x0, t, d)
                loss, g = seen[t]
                self._write_grad(g)  # the point accepted may not be the last one tried
            else:
                self._set([p.detach().clone() for p in self._params], t, d)
                if it != group["max_iter"]:  # as in torch: no evaluation after the last iteration of a step
                    loss, g = float(closure()), self._flat_grad()
                    evals += 1
            state["last_step"] = t * d
            if it == group["max_iter"] or evals >= group["max_eval"]:
                break
            if float(g.abs().max()) <= group["tolerance_grad"]:
                break
            if float((t * d).abs().max()) <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        state["func_evals"] += evals
        return orig_loss
