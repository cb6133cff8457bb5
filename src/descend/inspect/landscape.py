"""Loss landscapes: 2-D test functions with optimizer trajectories, and slices of a trained model's loss surface.

**Test functions** (:data:`FUNCTIONS`), each a map :math:`\\mathbb{R}^2 \\to \\mathbb{R}` with known minima:

================ ======================================================= ==========================================
name             :math:`f(x, y)`                                         minima
================ ======================================================= ==========================================
``rosenbrock``   :math:`(1-x)^2 + 100 (y-x^2)^2`                         :math:`(1, 1)`, a curved narrow valley
``beale``        :math:`(1.5-x+xy)^2+(2.25-x+xy^2)^2+(2.625-x+xy^3)^2`   :math:`(3, 0.5)`, flat plateaus
``himmelblau``   :math:`(x^2+y-11)^2 + (x+y^2-7)^2`                      four, e.g. :math:`(3, 2)`
``saddle``       :math:`\\tfrac12 x^2 - \\tfrac12 y^2 + \\tfrac14 y^4`     :math:`(0, \\pm 1)`; a saddle at the origin
``quadratic``    :math:`\\tfrac12 (x^2 + 50 y^2)`                         :math:`(0, 0)`, condition number 50
================ ======================================================= ==========================================

:func:`trajectory` runs one of descend's named optimizers on a function from its start point. On the
ill-conditioned quadratic, gradient descent with :math:`\\alpha \\cdot 50 \\in (1, 2)` flips the sign of the
steep coordinate :math:`y` every step (the zig-zag: :math:`y_{t+1} = (1 - 50\\alpha) y_t`) while it creeps
along :math:`x` (:math:`x_{t+1} = (1-\\alpha) x_t`); momentum averages the flips away.

**Loss-surface slices** (Li et al., 2018, "Visualizing the Loss Landscape of Neural Nets"): around trained
weights :math:`\\theta^*`, draw a random direction :math:`d` shaped like the parameters and rescale it filter by
filter, :math:`d_{i} \\leftarrow \\frac{d_{i}}{\\lVert d_{i}\\rVert} \\lVert\\theta^*_{i}\\rVert`, where a
filter is one row of a weight matrix (one output unit); directions of biases are set to zero. Then
:func:`loss_slice` gives :math:`L(\\theta^* + \\alpha d)` and :func:`loss_surface`
:math:`L(\\theta^* + \\alpha d_1 + \\beta d_2)` for :math:`\\alpha, \\beta \\in [-\\text{span}, \\text{span}]`.
The normalisation makes slices of differently scaled networks comparable.

Example:
    >>> t = trajectory("quadratic", "sgd", lr=0.036, steps=3)
    >>> [round(float(y), 3) for y in t.points[:, 1]]
    [1.0, -0.8, 0.64, -0.512]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from descend.errors import ConfigError

__all__ = [
    "ADAPTIVE",
    "FUNCTIONS",
    "SECOND_ORDER",
    "LossSlice",
    "LossSurface",
    "TestFunction",
    "Trajectory",
    "filter_normalized_direction",
    "loss_slice",
    "loss_surface",
    "trajectory",
]

# Optimizers that scale each coordinate by its own gradient history: they take a different default step size.
ADAPTIVE = ("adagrad", "rmsprop", "adam", "adamw")
# Second-order optimizers step with a closure and take the full step (lr 1) by default.
SECOND_ORDER = ("newton", "lbfgs")


def _rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _beale(x: Tensor, y: Tensor) -> Tensor:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _himmelblau(x: Tensor, y: Tensor) -> Tensor:
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def _saddle(x: Tensor, y: Tensor) -> Tensor:
    return 0.5 * x**2 - 0.5 * y**2 + 0.25 * y**4


def _quadratic(x: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (x**2 + 50 * y**2)


@dataclass(frozen=True)
class TestFunction:
    """A 2-D test function: ``f(x, y)`` on tensors (elementwise), its ``minima``, a ``start`` point, the plotting
    window ``xlim`` × ``ylim``, and default learning rates for plain (``lr``) and adaptive (``adaptive_lr``)
    optimizers. ``log_contours``: draw contours of :math:`\\log(1 + f - f^*)` (for steep functions)."""

    __test__ = False  # not a pytest class

    name: str
    f: Callable[[Tensor, Tensor], Tensor]
    minima: tuple[tuple[float, float], ...]
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    lr: float
    adaptive_lr: float
    steps: int
    log_contours: bool = True

    @property
    def minimum(self) -> float:
        x, y = self.minima[0]
        return float(self.f(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)))

    def grid(self, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``X, Y, Z`` on an ``n`` × ``n`` grid over the window (for contour plots)."""
        xs = torch.linspace(*self.xlim, n, dtype=torch.float64)
        ys = torch.linspace(*self.ylim, n, dtype=torch.float64)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        return X.numpy(), Y.numpy(), self.f(X, Y).numpy()

    def distance_to_minimum(self, point: Sequence[float]) -> float:
        """Euclidean distance from ``point`` to the nearest minimum."""
        return min(math.dist(point, m) for m in self.minima)


FUNCTIONS: dict[str, TestFunction] = {
    f.name: f
    for f in (
        TestFunction("rosenbrock", _rosenbrock, ((1.0, 1.0),), (-1.5, 2.0), (-2.0, 2.0), (-1.0, 3.0),
                     lr=1e-3, adaptive_lr=0.05, steps=1000),
        TestFunction("beale", _beale, ((3.0, 0.5),), (1.0, 1.5), (-4.5, 4.5), (-4.5, 4.5),
                     lr=0.01, adaptive_lr=0.05, steps=1000),
        TestFunction("himmelblau", _himmelblau,
                     ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)),
                     (-0.5, -0.5), (-5.0, 5.0), (-5.0, 5.0), lr=0.01, adaptive_lr=0.1, steps=300),
        TestFunction("saddle", _saddle, ((0.0, 1.0), (0.0, -1.0)), (2.0, 1e-3), (-2.5, 2.5), (-1.8, 1.8),
                     lr=0.05, adaptive_lr=0.02, steps=200, log_contours=False),
        TestFunction("quadratic", _quadratic, ((0.0, 0.0),), (-4.0, 1.0), (-5.0, 5.0), (-1.5, 1.5),
                     lr=0.036, adaptive_lr=0.1, steps=100),
    )
}


def _function(name: str | TestFunction) -> TestFunction:
    if isinstance(name, TestFunction):
        return name
    if name not in FUNCTIONS:
        raise ConfigError(f"function: unknown test function {name!r}; expected one of {', '.join(FUNCTIONS)}")
    return FUNCTIONS[name]


@dataclass
class Trajectory:
    """The path of one optimizer: ``points`` (steps + 1, 2) from the start, ``values`` f at each point."""

    function: str
    optimizer: str
    lr: float
    points: np.ndarray
    values: np.ndarray
    minimum: float = 0.0
    final_distance: float = field(default=math.nan)

    @property
    def steps(self) -> int:
        return len(self.points) - 1

    def sign_changes(self, coordinate: int = 1) -> int:
        """How often coordinate ``coordinate`` (0 = x, 1 = y) changes sign between consecutive steps."""
        c = self.points[:, coordinate]
        return int(np.sum(c[1:] * c[:-1] < 0))

    def steps_to(self, tol: float) -> int | None:
        """The first step at which ``f - f*`` is at most ``tol`` (None if never)."""
        below = np.nonzero(self.values - self.minimum <= tol)[0]
        return int(below[0]) if len(below) else None


def trajectory(
    function: str | TestFunction,
    optimizer: str,
    *,
    lr: float | None = None,
    steps: int | None = None,
    start: Sequence[float] | None = None,
) -> Trajectory:
    """Run ``optimizer`` (a name: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw, newton, lbfgs) with its
    default options on ``function`` for ``steps`` steps (default: the function's) from ``start`` (default: its
    start), in float64. ``lr`` defaults to the function's ``lr`` (``adaptive_lr`` for adaptive optimizers, 1 for
    Newton and L-BFGS, whose steps come from curvature; one L-BFGS step may evaluate f several times)."""
    from descend.train.loop import closure_convention
    from descend.train.setup import make_optimizer

    fn = _function(function)
    name = optimizer.lower()
    default = 1.0 if name in SECOND_ORDER else fn.adaptive_lr if name in ADAPTIVE else fn.lr
    lr = default if lr is None else lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"lr: invalid lr={lr!r}; expected a number > 0")
    steps = fn.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps: invalid steps={steps!r}; expected an int >= 1")
    p = nn.Parameter(torch.tensor(fn.start if start is None else tuple(start), dtype=torch.float64))
    opt = make_optimizer(name, [p], lr=float(lr), weight_decay=0.0, options={}, clip_norm=None, clip_value=None,
                         accumulate=1)
    convention = closure_convention(opt)

    def closure() -> Tensor:
        value = fn.f(p[0], p[1])
        if convention != "loss":  # Newton differentiates the loss itself; the others want the gradient
            opt.zero_grad()
            value.backward()
        return value

    points = [p.detach().clone()]
    values: list[float] = []
    for _ in range(steps):
        loss: Any = opt.step(closure)  # type: ignore[arg-type]  # torch types closures as returning float
        values.append(float(loss.detach()))
        points.append(p.detach().clone())
    with torch.no_grad():
        values.append(float(fn.f(p[0], p[1])))
    path = torch.stack(points).numpy()
    end = path[-1]
    distance = fn.distance_to_minimum(end) if np.all(np.isfinite(end)) else math.inf
    return Trajectory(fn.name, name, float(lr), path, np.array(values), fn.minimum, distance)


# Loss-surface slices


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> list[Tensor]:
    """A random Gaussian direction shaped like ``model``'s parameters, each filter (row of a parameter with 2+
    dimensions) rescaled to the norm of the same filter of the weights; zero for 1-D parameters (biases)."""
    direction = []
    for p in model.parameters():
        if p.dim() <= 1:
            direction.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        rows_d = d.reshape(len(d), -1)
        rows_p = p.detach().reshape(len(p), -1)
        scale = rows_p.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        direction.append((rows_d * scale).reshape(p.shape))
    return direction


@dataclass
class LossSlice:
    """``loss[i]`` = L(θ* + alphas[i] d): a 1-D filter-normalised slice; ``center`` is L(θ*)."""

    alphas: np.ndarray
    loss: np.ndarray
    center: float


@dataclass
class LossSurface:
    """``loss[j, i]`` = L(θ* + alphas[i] d1 + betas[j] d2): a 2-D filter-normalised slice."""

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    center: float


def _check_grid(points: int, span: float) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ConfigError(f"points: invalid points={points!r}; expected an int >= 3")
    if isinstance(span, bool) or not isinstance(span, (int, float)) or not span > 0:
        raise ConfigError(f"span: invalid span={span!r}; expected a number > 0")


@torch.no_grad()
def _evaluate(model: nn.Module, loss_fn: Callable[[], Tensor], base: list[Tensor],
              moves: Sequence[tuple[float, list[Tensor]]]) -> float:
    for p, b, *ds in zip(model.parameters(), base, *(d for _, d in moves)):
        p.copy_(b)
        for (coef, _), d in zip(moves, ds):
            p.add_(d, alpha=coef)
    return float(loss_fn())


def loss_slice(model: nn.Module, loss_fn: Callable[[], Tensor], *, points: int = 41, span: float = 1.0,
               seed: int = 0) -> LossSlice:
    """L(θ* + α d) at ``points`` values of α evenly spaced in [-span, span]; ``loss_fn()`` evaluates the loss
    at the model's current weights. The weights are restored afterwards."""
    _check_grid(points, span)
    g = torch.Generator().manual_seed(seed)
    base = [p.detach().clone() for p in model.parameters()]
    d = filter_normalized_direction(model, g)
    alphas = np.linspace(-span, span, points)
    try:
        loss = np.array([_evaluate(model, loss_fn, base, [(float(a), d)]) for a in alphas])
        center = _evaluate(model, loss_fn, base, [])
    finally:
        _evaluate(model, lambda: torch.zeros(()), base, [])
    return LossSlice(alphas, loss, center)


def loss_surface(model: nn.Module, loss_fn: Callable[[], Tensor], *, points: int = 21, span: float = 1.0,
                 seed: int = 0) -> LossSurface:
    """L(θ* + α d1 + β d2) on a ``points`` × ``points`` grid over [-span, span]², two independent
    filter-normalised directions (seeded by ``seed``). The weights are restored afterwards."""
    _check_grid(points, span)
    g = torch.Generator().manual_seed(seed + 1)
    base = [p.detach().clone() for p in model.parameters()]
    d1 = filter_normalized_direction(model, g)
    d2 = filter_normalized_direction(model, g)
    alphas = np.linspace(-span, span, points)
    betas = np.linspace(-span, span, points)
    try:
        loss = np.array([[_evaluate(model, loss_fn, base, [(float(a), d1), (float(b), d2)]) for a in alphas]
                         for b in betas])
        center = _evaluate(model, loss_fn, base, [])
    finally:
        _evaluate(model, lambda: torch.zeros(()), base, [])
    return LossSurface(alphas, betas, loss, center)
