"""Gradient-health measurements against hand computations on tensors captured in the test (to 1e-6 relative)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from descend.errors import ConfigError
from descend.inspect.health import (
    ActivationMonitor,
    UpdateRatio,
    global_grad_norm,
    grad_norms,
    param_norms,
)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 1), nn.Sigmoid())


def test_grad_norms_per_layer_by_hand() -> None:
    model = mlp()
    x = torch.randn(32, 5)
    model(x).pow(2).mean().backward()
    norms = grad_norms(model)
    assert sorted(norms) == ["0", "2", "4"]
    for i in (0, 2, 4):
        layer = model[i]
        by_hand = math.sqrt(float(layer.weight.grad.pow(2).sum() + layer.bias.grad.pow(2).sum()))
        assert norms[str(i)] == pytest.approx(by_hand, rel=1e-6)
    assert global_grad_norm(model) == pytest.approx(math.sqrt(sum(v**2 for v in norms.values())), rel=1e-12)
    assert param_norms(model)["2"] == pytest.approx(
        math.sqrt(float(model[2].weight.pow(2).sum() + model[2].bias.pow(2).sum())), rel=1e-6)


def test_layers_without_gradients_are_left_out() -> None:
    model = mlp()
    assert grad_norms(model) == {}
    assert global_grad_norm(model) == 0.0


def test_update_ratio_of_an_sgd_step_by_hand() -> None:
    model = mlp(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model(torch.randn(16, 5)).pow(2).mean().backward()
    before = {i: torch.cat([model[i].weight.detach().reshape(-1), model[i].bias.detach()]) for i in (0, 2, 4)}
    grads = {i: torch.cat([model[i].weight.grad.reshape(-1), model[i].bias.grad]) for i in (0, 2, 4)}
    tracker = UpdateRatio(model)
    tracker.snapshot()
    opt.step()
    ratios = tracker.ratios()
    for i in (0, 2, 4):
        # SGD moves each layer by lr * g, so the ratio is lr ||g|| / ||theta||
        assert ratios[str(i)] == pytest.approx(0.05 * float(grads[i].norm()) / float(before[i].norm()), rel=1e-5)


def test_update_ratio_of_zero_parameters() -> None:
    lin = nn.Linear(2, 2)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    tracker = UpdateRatio(lin)
    tracker.snapshot()
    with torch.no_grad():
        lin.weight.add_(1.0)
    assert tracker.ratios() == {"weight": math.inf, "bias": 0.0}
    assert UpdateRatio(lin).ratios() == {}


def test_dead_relu_units_by_construction() -> None:
    """Units 0-2 get zero weights and bias -1 (never positive); the others bias +10 (always positive)."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 10), nn.ReLU())
    with torch.no_grad():
        net[0].weight.mul_(0.1)
        net[0].weight[:3] = 0.0
        net[0].bias[:3] = -1.0
        net[0].bias[3:] = 10.0
    with ActivationMonitor(net) as monitor:
        for _ in range(3):
            net(torch.randn(20, 4))
    stats = monitor.stats()["1"]
    assert stats.dead_fraction == pytest.approx(0.3)
    assert stats.units == 10 and stats.count == 3 * 20 * 10
    assert stats.nonpositive_fraction == pytest.approx(0.3)
    assert stats.saturated_fraction is None


def test_a_unit_alive_on_one_batch_is_not_dead() -> None:
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    with ActivationMonitor(net) as monitor:
        net(torch.tensor([[-1.0, -2.0], [-1.0, -3.0]]))
        assert monitor.stats()["1"].dead_fraction == 1.0
        net(torch.tensor([[0.5, -1.0]]))
    assert monitor.stats()["1"].dead_fraction == 0.5  # unit 0 fired once
    monitor.reset()
    assert monitor.stats() == {}


def test_activation_statistics_match_captured_outputs() -> None:
    model = mlp(3)
    captured: dict[str, list[torch.Tensor]] = {"1": [], "3": [], "5": []}
    for name in captured:
        model.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: captured[n].append(o.detach()))
    with ActivationMonitor(model) as monitor:
        for _ in range(2):
            model(3 * torch.randn(50, 5))
    stats = monitor.stats()
    for name, outs in captured.items():
        a = torch.cat(outs).double()
        s = stats[name]
        assert s.mean == pytest.approx(float(a.mean()), rel=1e-6)
        assert s.std == pytest.approx(float(a.std(correction=0)), rel=1e-5)
        assert s.nonpositive_fraction == pytest.approx(float((a <= 0).double().mean()), abs=1e-12)
        assert s.dead_fraction == pytest.approx(float((a <= 0).all(0).double().mean()), abs=1e-12)
    tanh = torch.cat(captured["3"])
    assert stats["3"].saturated_fraction == pytest.approx(float((tanh.abs() > 0.99).double().mean()), abs=1e-12)
    sig = torch.cat(captured["5"])
    expected = float(((sig < 0.01) | (sig > 0.99)).double().mean())
    assert stats["5"].saturated_fraction == pytest.approx(expected, abs=1e-12)


def test_conv_channels_are_units() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([-100.0, 100.0, -100.0, 100.0]))
    with ActivationMonitor(net) as monitor:
        net(torch.randn(2, 1, 6, 6))
    assert monitor.stats()["1"].units == 4
    assert monitor.stats()["1"].dead_fraction == 0.5


def test_hooks_are_removed_on_exit() -> None:
    model = mlp()
    with ActivationMonitor(model) as monitor:
        model(torch.randn(4, 5))
    count = monitor.stats()["1"].count
    model(torch.randn(4, 5))
    assert monitor.stats()["1"].count == count
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_unit_dim() -> None:
    with pytest.raises(ConfigError, match="unit_dim=0"):
        ActivationMonitor(mlp(), unit_dim=0)
