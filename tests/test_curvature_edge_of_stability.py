"""Edge of stability (Cohen et al., 2021): full-batch gradient descent on a small tanh MLP with MSE.

Sharpness (top Hessian eigenvalue, Lanczos to 1e-3 relative residual) starts well below 2/lr, rises, and then
hovers at 2/lr while the loss keeps falling non-monotonically. For two learning rates we assert:
sharpness at step 0 is below 0.75 * 2/lr; over the last 40% of the run every measurement lies within
[0.85, 1.15] * 2/lr and their mean within 5% of 2/lr. Measured (float64, seed 0): lr 0.5 hovers at 3.97-4.05
(2/lr = 4), lr 0.4 at 4.8-5.4 (2/lr = 5).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descend.inspect.curvature import sharpness

F64 = torch.float64


def gradient_descent_sharpness(lr: float, steps: int, every: int) -> tuple[float, list[float], list[float]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g, dtype=F64)
    y = torch.sin(x @ torch.randn(4, 1, generator=g, dtype=F64)) + 0.5 * torch.cos(2 * x[:, :1])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)).double()

    def loss() -> torch.Tensor:
        return 0.5 * (model(x) - y).pow(2).mean()

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    late_from = int(0.6 * steps)
    first = sharpness(model, loss, lr, tol=1e-3).value
    late: list[float] = []
    losses: list[float] = []
    for t in range(steps):
        if t >= late_from and t % every == 0:
            late.append(sharpness(model, loss, lr, tol=1e-3).value)
        opt.zero_grad()
        value = loss()
        value.backward()
        losses.append(float(value))
        opt.step()
    return first, late, losses


@pytest.mark.parametrize(("lr", "steps"), [(0.5, 1000), (0.4, 1500)])
def test_sharpness_rises_to_and_hovers_at_two_over_lr(lr: float, steps: int) -> None:
    first, late, losses = gradient_descent_sharpness(lr, steps, every=25)
    edge = 2 / lr
    assert first < 0.75 * edge, first
    assert all(0.85 * edge <= s <= 1.15 * edge for s in late), (edge, late)
    assert abs(sum(late) / len(late) - edge) <= 0.05 * edge, (edge, late)
    # still training at the edge: the loss fell overall, though not monotonically
    assert losses[-1] < 0.05 * losses[0]
    assert any(b > a for a, b in zip(losses[-300:], losses[-299:]))
