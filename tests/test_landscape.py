"""descend.inspect.landscape: test functions, optimizer trajectories, filter-normalised loss slices.

Oracles: the closed form of gradient descent on a quadratic, hand-written momentum and Adam loops, and the exact
parabola of a least-squares loss along a line.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from descend.errors import ConfigError
from descend.inspect.landscape import (
    FUNCTIONS,
    filter_normalized_direction,
    loss_slice,
    loss_surface,
    trajectory,
)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_minima_are_stationary_and_lowest(name: str) -> None:
    fn = FUNCTIONS[name]
    for x0, y0 in fn.minima:
        p = torch.tensor([x0, y0], dtype=torch.float64, requires_grad=True)
        value = fn.f(p[0], p[1])
        (grad,) = torch.autograd.grad(value, p)
        assert float(grad.norm()) < 1e-4, (name, x0, y0)
        assert float(value.detach()) == pytest.approx(fn.minimum, abs=1e-9)
    _, _, Z = fn.grid(101)
    assert Z.min() >= fn.minimum - 1e-9  # nothing on the plotting window is below the minimum


def test_gradient_descent_on_the_quadratic_is_the_closed_form() -> None:
    # f = (x^2 + 50 y^2)/2: x_t = (1 - a)^t x_0, y_t = (1 - 50 a)^t y_0.
    a, steps = 0.036, 100
    t = trajectory("quadratic", "sgd", lr=a, steps=steps)
    k = np.arange(steps + 1)
    np.testing.assert_allclose(t.points[:, 0], -4.0 * (1 - a) ** k, rtol=1e-12)
    np.testing.assert_allclose(t.points[:, 1], 1.0 * (1 - 50 * a) ** k, rtol=1e-12, atol=1e-300)


def _heavy_ball(lr: float, mu: float, steps: int) -> np.ndarray:
    h, p, b = np.array([1.0, 50.0]), np.array([-4.0, 1.0]), np.zeros(2)
    for i in range(steps):
        g = h * p
        b = g if i == 0 else mu * b + g
        p = p - lr * b
    return p


def _adam(lr: float, steps: int, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> np.ndarray:
    h, p, m, v = np.array([1.0, 50.0]), np.array([-4.0, 1.0]), np.zeros(2), np.zeros(2)
    for i in range(1, steps + 1):
        g = h * p
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**i)) / (np.sqrt(v / (1 - b2**i)) + eps)
    return p


def test_on_the_ill_conditioned_quadratic_gd_zigzags_and_momentum_and_adam_get_closer() -> None:
    steps = 100
    gd = trajectory("quadratic", "sgd", steps=steps)
    momentum = trajectory("quadratic", "momentum", steps=steps)
    adam = trajectory("quadratic", "adam", steps=steps)
    # The steep coordinate y flips sign on every step of gradient descent (|1 - 50 lr| = 0.8, negative)...
    assert gd.sign_changes(1) == steps
    # ...while the shallow coordinate x never does: it creeps towards 0 by (1 - lr) per step.
    assert gd.sign_changes(0) == 0
    assert gd.final_distance == pytest.approx(math.hypot(4 * (1 - 0.036) ** steps, 0.8**steps), rel=1e-9)
    # Same number of steps: momentum and Adam end closer to the minimum (by 5x and 4.7x here).
    assert momentum.final_distance < gd.final_distance / 4
    assert adam.final_distance < gd.final_distance / 4
    # Adam follows a far smoother path: few sign flips of y.
    assert adam.sign_changes(1) < steps / 10
    # And they are the hand-written algorithms, step for step.
    np.testing.assert_allclose(momentum.points[-1], _heavy_ball(0.036, 0.9, steps), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(adam.points[-1], _adam(0.1, steps), rtol=1e-9, atol=1e-12)


def test_momentum_crosses_the_rosenbrock_valley_where_gd_stalls() -> None:
    gd = trajectory("rosenbrock", "sgd", steps=600)
    momentum = trajectory("rosenbrock", "momentum", steps=600)
    assert gd.values[-1] > 1.0  # still far up the valley after 600 steps at lr 1e-3
    assert momentum.values[-1] < 1e-2
    assert momentum.steps_to(0.1) is not None and gd.steps_to(0.1) is None


def test_saddle_escape_and_trajectory_arguments() -> None:
    t = trajectory("saddle", "sgd", steps=200)
    assert t.points[-1][1] == pytest.approx(1.0, abs=1e-2)  # rolled off the saddle into the (0, 1) minimum
    with pytest.raises(ConfigError, match="unknown test function 'banana'"):
        trajectory("banana", "sgd")
    with pytest.raises(ConfigError, match="lr: invalid lr=-1"):
        trajectory("quadratic", "sgd", lr=-1)
    with pytest.raises(ConfigError, match="steps: invalid steps=0"):
        trajectory("quadratic", "sgd", steps=0)
    with pytest.raises(ConfigError, match="unknown optimizer 'adamax'"):
        trajectory("quadratic", "adamax")


def test_newton_takes_one_step_to_the_quadratic_minimum_and_lbfgs_solves_rosenbrock() -> None:
    newton = trajectory("quadratic", "newton", steps=3)
    assert newton.final_distance < 1e-6 and np.abs(newton.points[1]).max() < 1e-3  # (H + damping) d = -g
    lbfgs = trajectory("rosenbrock", "lbfgs", steps=20)
    assert lbfgs.final_distance < 1e-4 and lbfgs.values[-1] < 1e-8  # stops at its gradient tolerance


def test_filter_normalized_direction_matches_each_filter_norm() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    for p, di in zip(model.parameters(), d):
        if p.dim() == 1:
            assert torch.count_nonzero(di) == 0  # biases do not move
        else:
            torch.testing.assert_close(di.norm(dim=1), p.detach().norm(dim=1))


def test_loss_slice_of_least_squares_is_the_exact_parabola() -> None:
    # L(w + a d) = |X(w + a d) - y|^2 / n is the parabola L0 + 2a (Xd)'(Xw - y)/n + a^2 |Xd|^2/n.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(50, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(4, 1, bias=True).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 4, generator=g, dtype=torch.float64))
    before = [p.detach().clone() for p in model.parameters()]

    def loss() -> torch.Tensor:
        return ((model(X).squeeze(1) - y) ** 2).mean()

    s = loss_slice(model, loss, points=11, span=2.0, seed=3)
    d = filter_normalized_direction(model, torch.Generator().manual_seed(3))[0]
    with torch.no_grad():
        r = model(X).squeeze(1) - y
        xd = (X @ d.T).squeeze(1)
        expected = [float((r**2).mean() + 2 * a * (xd * r).mean() + a * a * (xd**2).mean()) for a in s.alphas]
    np.testing.assert_allclose(s.loss, expected, rtol=1e-10)
    assert s.center == pytest.approx(float(loss().detach()), rel=1e-12)
    for p, b in zip(model.parameters(), before):  # weights restored
        assert torch.equal(p.detach(), b)
    surface = loss_surface(model, loss, points=5, span=1.0)
    assert surface.loss.shape == (5, 5) and surface.loss[2, 2] == pytest.approx(surface.center, rel=1e-12)
    with pytest.raises(ConfigError, match="points: invalid points=2"):
        loss_slice(model, loss, points=2)
