"""A target-scaled regression is watched in the units it trains in: sharpness, findings and loss slices agree with
the same model trained on a target standardised by hand."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
import torch

import descend
from descend.inspect import SharpnessMonitor
from descend.models import MLP


def _data(y_units: bool) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(150, 5, generator=g, dtype=torch.float64)
    y = 1000 * (X @ torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0], dtype=torch.float64)) + 5000
    y = y + 100 * torch.randn(150, generator=g, dtype=torch.float64)
    X_train, y_train, X_val, y_val = X[:120], y[:120], X[120:], y[120:]
    if not y_units:
        mu, sigma = y_train.mean(), y_train.std(correction=0)
        y_train, y_val = (y_train - mu) / sigma, (y_val - mu) / sigma
    return SimpleNamespace(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, task="regression")


def _fit(y_units: bool, model: str, optimizer: str, batch_size: int | str) -> tuple[list[float], list[float]]:
    monitor = SharpnessMonitor(every=5, tol=1e-10, max_iter=60, plain=True)  # fit supplies its own objective
    torch.manual_seed(0)
    net = MLP(5, 1).double() if model == "mlp" else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = descend.fit(net, _data(y_units), optimizer=optimizer, lr=0.05, batch_size=batch_size, epochs=10 if batch_size == "full" else 3,
                             tol=None, early_stopping=False, callbacks=[monitor], progress=False,
                             scale_target="auto" if y_units else False)  # fmt: skip
    return [r["sharpness"] for r in monitor.records], [r["loss"] for r in result.history]


@pytest.mark.parametrize(("model", "optimizer", "batch_size"), [("linear", "sgd", "full"), ("mlp", "adam", 32)])
def test_curvature_of_a_scaled_target_equals_the_hand_standardised_run(model: str, optimizer: str,
                                                                       batch_size: int | str) -> None:
    scaled, scaled_losses = _fit(True, model, optimizer, batch_size)
    by_hand, hand_losses = _fit(False, model, optimizer, batch_size)
    assert len(scaled) >= 1 and len(scaled) == len(by_hand)
    torch.testing.assert_close(torch.tensor(scaled), torch.tensor(by_hand), rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.tensor(scaled_losses), torch.tensor(hand_losses), rtol=1e-6, atol=0)
    if batch_size == "full":  # the least-squares Hessian in standardised units: 2 A^T A / n, A = [X 1]
        X = _data(False).X_train  # 120 rows: all of them in fit's fixed batch for curvature
        A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
        exact = float(torch.linalg.eigvalsh(2 * A.T @ A / len(A))[-1])
        assert by_hand[0] == pytest.approx(exact, rel=1e-6)


def test_cli_sharpness_and_landscape_of_a_scaled_target_are_in_training_units(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from descend.cli.main import cli

    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 4, generator=g)
    price = 1e5 * (X @ torch.tensor([1.0, -2.0, 0.5, 3.0])) + 3e5 + 1e4 * torch.randn(300, generator=g)
    path = tmp_path / "houses.csv"
    path.write_text("a,b,c,d,price\n" + "".join(",".join(f"{v:.6g}" for v in [*x.tolist(), p]) + "\n"
                                                for x, p in zip(X, price.tolist())))  # fmt: skip
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(path), "--target", "price", "--model", "linear", "--optimizer", "sgd",
                                      "--lr", "0.05", "--batch-size", "full", "--epochs", "40", "--sharpness-every",
                                      "10", "--no-early-stopping", "--out", str(run), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "lr_too_high" not in summary["findings"]
    records = [json.loads(line) for line in (run / "curvature.jsonl").read_text().splitlines()]
    assert records and all(0.5 < r["sharpness"] < 20 and r["ratio"] < 1 for r in records)  # standardised: about 2
    last_loss = json.loads((run / "summary.json").read_text())["final"]["loss"]
    result = CliRunner().invoke(cli, ["landscape", str(run), "--points", "5"])
    assert result.exit_code == 0, result.output
    slices = json.loads((run / "landscape.json").read_text())
    centre = slices["slice"]["loss"][len(slices["slice"]["loss"]) // 2]
    assert centre == pytest.approx(last_loss, rel=0.2)  # the training loss's units, not price's (about 1e10)


def test_findings_of_a_scaled_target_say_their_units() -> None:
    data = _data(True)  # price-like target: mean 5000, standard deviation about 3900
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = descend.fit("linear", data, optimizer="sgd", lr=1e-3, batch_size="full", epochs=30, tol=None,
                             early_stopping=False, progress=False)  # fmt: skip
    sigma = float(data.y_train.std(correction=0))
    (found,) = [f for f in result.findings if f.rule == "lr_too_low"]
    assert "standardised target units" in found.message and f"{sigma:.4g}" in found.message
    assert found.evidence["target_std"] == f"{sigma:.4g}"
