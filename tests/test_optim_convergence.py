"""Every named optimizer reaches the known minimum of classic test functions, in float64.

Each row states the learning rate (or schedule), the number of steps and the tolerance on the distance
‖x − x*‖ to the minimiser. RMSprop's step does not shrink as the gradient vanishes, so it is run with a decaying
schedule (``lr = α₀ · 0.999^t``), which is also a test of schedules as ``lr``.

AdamW with a nonzero decoupled weight decay λ does not converge to f's minimiser. With constant ``lr`` its fixed
point x* is where the step vanishes: ``m̂ = ∇f(x*)``, ``v̂ = ∇f(x*)²``, so coordinatewise

    ∇f(x*)ᵢ / (|∇f(x*)ᵢ| + ε) + λ x*ᵢ = 0.

When ``λ |x̂ᵢ| > 1`` for f's minimiser x̂ the decay binds: |x*ᵢ| = (1/λ) |gᵢ| / (|gᵢ| + ε), within ε/|gᵢ| of the box
edge 1/λ (AdamW's implicit ℓ∞ constraint). The test derives x* from this equation (a fixed-point iteration that
contracts because ε is tiny) and asserts it is far from x̂, so Adam, or AdamW with the decay coupled, fails the row.
Interior fixed points (λ |x̂ᵢ| < 1) are not tested: they need |gᵢ| ≈ ε, i.e. v̂ shrinking by ~1e-16, which takes
AdamW tens of thousands of steps. The approach to a bound fixed point is limited by v̂'s memory (a factor β2 per
step), so those rows use β2 = 0.9 or 0.99.
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


C_SHIFTED = torch.tensor([4.0, -3.0], dtype=torch.float64)
H_SHIFTED = torch.tensor([1.0, 100.0], dtype=torch.float64)


def shifted_quadratic(x):  # condition number 100, minimiser (4, -3)
    return 0.5 * (H_SHIFTED * (x - C_SHIFTED) ** 2).sum()


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
    # Minimiser 0 is also AdamW's fixed point: ∇f(0) = 0 and the decay of 0 is 0.
    (D.AdamW, "quadratic", {"lr": 3e-2, "weight_decay": 0.1}, 2000, 1e-8),
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


def adamw_fixed_point(f, start, weight_decay, eps):
    """Solve ∇f(x)ᵢ / (|∇f(x)ᵢ| + ε) + λ xᵢ = 0 by x ← −s(∇f(x)) / λ, s(g) = g / (|g| + ε)."""
    x = torch.tensor(start, dtype=torch.float64)
    for _ in range(100):
        y = x.clone().requires_grad_(True)
        f(y).backward()
        x = -y.grad / (y.grad.abs() + eps) / weight_decay
    y = x.clone().requires_grad_(True)
    f(y).backward()
    residual = (y.grad / (y.grad.abs() + eps) + weight_decay * x).abs().max().item()
    assert residual <= 1e-14, f"fixed-point iteration did not converge: residual {residual:.3g}"
    return x


# (problem, start, minimiser x̂ of f, AdamW keyword arguments, steps, tolerance on ‖x − x*‖ to AdamW's fixed point)
ADAMW_ROWS = [
    (shifted_quadratic, [1.0, 1.0], [4.0, -3.0], {"lr": 0.1, "weight_decay": 0.5, "betas": (0.9, 0.9)}, 1000, 1e-10),
    (beale, [1.0, 1.0], [3.0, 0.5], {"lr": 1e-2, "weight_decay": 2.5, "betas": (0.9, 0.9)}, 1500, 1e-10),
    (beale, [1.0, 1.0], [3.0, 0.5], {"lr": 1e-2, "weight_decay": 2.5, "betas": (0.9, 0.99)}, 3000, 1e-9),
]


@pytest.mark.parametrize(("f", "x0", "xhat", "kw", "steps", "tol"), ADAMW_ROWS,
                         ids=[f"{r[0].__name__}-wd{r[3]['weight_decay']}-b2{r[3]['betas'][1]}" for r in ADAMW_ROWS])
def test_adamw_reaches_its_decayed_fixed_point(f, x0, xhat, kw, steps, tol):
    xstar = adamw_fixed_point(f, xhat, kw["weight_decay"], 1e-8)
    # The decay binds every coordinate: x* sits on the box |xᵢ| = 1/λ, far from f's minimiser.
    assert torch.allclose(xstar.abs(), torch.full_like(xstar, 1 / kw["weight_decay"]), rtol=1e-7, atol=0)
    assert (xstar - torch.tensor(xhat, dtype=torch.float64)).norm().item() > 0.5
    x = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = D.AdamW([x], **kw)
    for _ in range(steps):
        opt.zero_grad()
        f(x).backward()
        opt.step()
    dist = (x.detach() - xstar).norm().item()
    assert dist <= tol, f"AdamW {kw} on {f.__name__}: ‖x − x*‖ = {dist:.3g} > {tol:g} (x = {x.tolist()})"
