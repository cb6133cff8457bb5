"""Losses: each named loss against its formula written out here, task fit and output-shape checks."""

from __future__ import annotations

import pytest
import torch

from descend.errors import ConfigError
from descend.losses import check_output, get

torch.manual_seed(0)
F_REG = torch.randn(50, dtype=torch.float64)
Y_REG = torch.randn(50, dtype=torch.float64)
F_BIN = torch.randn(50, dtype=torch.float64) * 3
Y_BIN = (torch.rand(50) > 0.5).double()
F_MC = torch.randn(50, 4, dtype=torch.float64)
Y_MC = torch.randint(0, 4, (50,))


def _huber(r: torch.Tensor, d: float) -> torch.Tensor:
    a = r.abs()
    return torch.where(a <= d, 0.5 * r**2, d * (a - 0.5 * d)).mean()


def _ce(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (torch.logsumexp(f, 1) - f[torch.arange(len(y)), y]).mean()


def _mc_hinge(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    fy = f[torch.arange(len(y)), y][:, None]
    margins = torch.clamp_min(1 - fy + f, 0)
    margins[torch.arange(len(y)), y] = 0
    return (margins.sum(1) / f.shape[1]).mean()


CASES = [
    ("mse", "regression", F_REG, Y_REG, ((F_REG - Y_REG) ** 2).mean()),
    ("mae", "regression", F_REG, Y_REG, (F_REG - Y_REG).abs().mean()),
    ("huber", "regression", F_REG, Y_REG, _huber(F_REG - Y_REG, 1.0)),
    (
        "bce",
        "binary",
        F_BIN,
        Y_BIN,
        (-Y_BIN * torch.log(torch.sigmoid(F_BIN)) - (1 - Y_BIN) * torch.log(1 - torch.sigmoid(F_BIN))).mean(),
    ),
    ("hinge", "binary", F_BIN, Y_BIN, torch.clamp_min(1 - (2 * Y_BIN - 1) * F_BIN, 0).mean()),
    ("cross_entropy", "multiclass", F_MC, Y_MC, _ce(F_MC, Y_MC)),
    ("hinge", "multiclass", F_MC, Y_MC, _mc_hinge(F_MC, Y_MC)),
]


@pytest.mark.parametrize(("name", "task", "f", "y", "expected"), CASES)
def test_loss_matches_formula(name: str, task: str, f: torch.Tensor, y: torch.Tensor, expected: torch.Tensor) -> None:
    # float64 throughout: agreement to 1e-12 relative.
    assert float(get(name, task)(f, y)) == pytest.approx(float(expected), rel=1e-12)


def test_huber_delta_and_trailing_one() -> None:
    loss = get("huber", "regression", delta=0.3)
    assert float(loss(F_REG[:, None], Y_REG)) == pytest.approx(float(_huber(F_REG - Y_REG, 0.3)), rel=1e-12)


def test_defaults_per_task() -> None:
    assert [get(None, t).name for t in ("regression", "binary", "multiclass")] == ["mse", "bce", "cross_entropy"]


@pytest.mark.parametrize(
    ("spec", "task", "options", "match"),
    [
        ("nope", "regression", {}, "unknown loss 'nope'.*mse"),
        ("cross_entropy", "regression", {}, "'cross_entropy' does not fit a regression task; expected one of mse, mae, huber"),
        ("mse", "multiclass", {}, "expected one of cross_entropy, hinge"),
        ("huber", "regression", {"delta": -1.0}, "delta=-1.0"),
        ("mse", "regression", {"delta": 1.0}, "takes no option delta"),
    ],
)
def test_bad_losses(spec: str, task: str, options: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        get(spec, task, **options)


def test_check_output() -> None:
    assert check_output((8, 1), (8,), "regression", None) is True
    assert check_output((8,), (8,), "binary", None) is False
    assert check_output((8, 3), (8, 3), "regression", None) is False
    assert check_output((8, 10), (8,), "multiclass", 10) is False
    with pytest.raises(ConfigError, match=r"output shape \(n, 3\) does not fit.*expected \(n, 10\) logits"):
        check_output((8, 3), (8,), "multiclass", 10)
    with pytest.raises(ConfigError, match=r"expected \(n,\) or \(n, 1\)"):
        check_output((8, 2), (8,), "binary", None)
