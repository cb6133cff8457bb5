"""Every named optimizer reaches the known minimum of classic test functions, in float64.

Each row states the learning rate (or schedule), the number of steps and the tolerance on the distance
‖x − x*‖ to the minimiser. RMSprop's step does not shrink as the gradient vanishes, so it is run with a decaying
schedule (``lr = α₀ · 0.999^t``), which is also a test of schedules as ``lr``.
"""

from __future__ import annotations

import pytest
import torch

import descend.optim as D


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def beale(x):
    a, b = x[0], x[1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def ill_quadratic(x):  # condition number 100
    return 0.5 * (x[0] ** 2 + 100 * x[1] ** 2)


PROBLEMS = {
    "rosenbrock": (rosenbrock, [-1.5, 2.0], [1.0, 1.0]),
    "beale": (beale, [1.0, 1.0], [3.0, 0.5]),
    "quadratic": (ill_quadratic, [1.0, 1.0], [0.0, 0.0]),
}


def decay(lr0):
    return lambda t: lr0 * 0.999**t


# (optimizer, problem, keyword arguments, steps, tolerance on ‖x − x*‖)
ROWS = [
    (D.SGD, "rosenbrock", {"lr": 2e-3}, 20000, 5e-3),
    (D.Momentum, "rosenbrock", {"lr": 1e-3}, 5000, 1e-6),
    (D.Nesterov, "rosenbrock", {"lr": 1e-3}, 5000, 1e-6),
    (D.Adagrad, "rosenbrock", {"lr": 0.5}, 20000, 1e-3),
    (D.RMSprop, "rosenbrock", {"lr": decay(1e-2)}, 10000, 1e-3),
    (D.Adam, "rosenbrock", {"lr": 1e-2}, 5000, 1e-6),
    (D.AdamW, "rosenbrock", {"lr": 1e-2, "weight_decay": 0.0}, 5000, 1e-6),
    (D.SGD, "beale", {"lr": 3e-2}, 5000, 1e-8),
    (D.Momentum, "beale", {"lr": 1e-2}, 5000, 1e-8),
    (D.Nesterov, "beale", {"lr": 1e-2}, 5000, 1e-8),
    (D.Adagrad, "beale", {"lr": 0.3}, 5000, 1e-8),
    (D.RMSprop, "beale", {"lr": decay(3e-3)}, 10000, 1e-5),
    (D.Adam, "beale", {"lr": 0.1}, 5000, 1e-8),
    (D.SGD, "quadratic", {"lr": 1e-2}, 5000, 1e-8),
    (D.Momentum, "quadratic", {"lr": 1e-2}, 5000, 1e-8),
    (D.Nesterov, "quadratic", {"lr": 1e-2}, 5000, 1e-8),
    (D.Adagrad, "quadratic", {"lr": 0.3}, 5000, 1e-8),
    (D.RMSprop, "quadratic", {"lr": decay(3e-3)}, 10000, 1e-5),
    (D.Adam, "quadratic", {"lr": 3e-2}, 5000, 1e-8),
]


@pytest.mark.parametrize(("cls", "problem", "kw", "steps", "tol"), ROWS,
                         ids=[f"{r[0].__name__}-{r[1]}" for r in ROWS])
def test_reaches_the_minimum(cls, problem, kw, steps, tol):
    f, x0, xstar = PROBLEMS[problem]
    x = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = cls([x], **kw)
    for _ in range(steps):
        opt.zero_grad()
        f(x).backward()
        opt.step()
    dist = (x.detach() - torch.tensor(xstar, dtype=torch.float64)).norm().item()
    assert dist <= tol, f"{cls.__name__} on {problem}: ‖x − x*‖ = {dist:.3g} > {tol:g}"
