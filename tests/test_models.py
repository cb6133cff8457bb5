"""Models: shapes, lazy building, config round trip, initialisation statistics, argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from descend.errors import ConfigError
from descend.models import (
    MLP,
    LinearRegression,
    LinearSVM,
    LogisticRegression,
    SoftmaxRegression,
    from_config,
    get,
    initialize,
)


@pytest.mark.parametrize(
    ("model", "out"),
    [
        (LinearRegression(5, 2), 2),
        (LogisticRegression(5), 1),
        (SoftmaxRegression(5, 4), 4),
        (LinearSVM(5, 3), 3),
        (MLP(5, 3, hidden=(7, 6), activation="tanh", dropout=0.1), 3),
    ],
)
def test_output_shape_and_config_round_trip(model: torch.nn.Module, out: int) -> None:
    x = torch.randn(9, 5)
    assert model(x).shape == (9, out)
    clone = from_config(model.config())
    clone.load_state_dict(model.state_dict())
    model.eval()
    clone.eval()
    assert torch.equal(clone(x), model(x))


def test_lazy_model_builds_on_demand() -> None:
    model = get("mlp", hidden=(4,))
    assert not model.built and list(model.parameters()) == []
    with pytest.raises(RuntimeError, match="not built"):
        model(torch.zeros(1, 3))
    model.build(3, 2)
    assert model(torch.zeros(1, 3)).shape == (1, 2)


def test_linear_models_start_at_zero() -> None:
    for p in LinearRegression(4, 1).parameters():
        assert torch.count_nonzero(p) == 0


@pytest.mark.parametrize(
    ("scheme", "std"),
    [("he", math.sqrt(2 / 400)), ("xavier", math.sqrt(2 / (400 + 300))), ("normal", 0.01)],
)
def test_init_scheme_standard_deviation(scheme: str, std: float) -> None:
    # 120,000 draws: the sample std is within 1% of the population std with overwhelming probability.
    layer = torch.nn.Linear(400, 300)
    initialize(layer, scheme, generator=torch.Generator().manual_seed(0))
    assert float(layer.weight.detach().std()) == pytest.approx(std, rel=0.01)
    assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MLP(3, 2, hidden=(0,)), "hidden"),
        (lambda: MLP(3, 2, activation="swishy"), "activation 'swishy'.*relu"),
        (lambda: MLP(3, 2, dropout=1.0), r"dropout=1.0; expected a number in \[0, 1\)"),
        (lambda: MLP(3, 2, init="zeros"), "identical"),
        (lambda: LinearRegression(3, 1, init="ones"), "initialisation 'ones'"),
        (lambda: LinearRegression(0, 1), "in_features=0"),
        (lambda: get("forest"), "unknown name 'forest'"),
        (lambda: from_config({"class": "Nope"}), "unknown model class"),
    ],
)
def test_bad_model_arguments(make: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()  # type: ignore[operator]


def test_output_scale_predicts_sigma_f_plus_mu_and_round_trips() -> None:
    # Oracle: sigma * (W x + b) + mu by hand, per output; from_config rebuilds the same scale.
    model = LinearRegression(3, 2, init="xavier").set_output_scale([10.0, -5.0], [2.0, 0.5])
    x = torch.randn(7, 3)
    raw = x @ model.net.weight.detach().T + model.net.bias.detach()
    expected = raw * torch.tensor([2.0, 0.5]) + torch.tensor([10.0, -5.0])
    torch.testing.assert_close(model(x).detach(), expected, rtol=1e-6, atol=1e-6)
    rebuilt = from_config(model.config())
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(x).detach(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("shift", "scale", "message"),
    [
        ([1.0], [0.0], r"shift=\[1\.0\], scale=\[0\.0\]; expected finite numbers and a positive scale"),
        ([float("nan")], [1.0], r"expected finite numbers and a positive scale"),
        ([1.0, 2.0], [1.0], r"2 shift value\(s\) but 1 scale value\(s\); expected as many of each"),
        ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], r"invalid output scale of 3 values; expected 2 \(one per output\)"),
    ],
)
def test_bad_output_scale_is_refused(shift: list[float], scale: list[float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LinearRegression(3, 2).set_output_scale(shift, scale)
