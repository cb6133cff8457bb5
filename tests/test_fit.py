"""descend.fit against oracles: least squares, scikit-learn's logistic regression, the engine's clipping and
accumulation against hand-written equivalents, early stopping, reproducibility, and bad arguments."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression as SkLogistic

import descend
from descend.errors import ConfigError
from descend.models import MLP, LinearRegression, LogisticRegression
from descend.train import Callback, ConvergenceWarning, EarlyStopping, TrainState

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def tensors(X: Any, y: Any, X_val: Any = None, y_val: Any = None, task: str = "regression", **extra: Any) -> SimpleNamespace:
    """A prepared dataset made in the test (fit accepts anything with these attributes)."""
    return SimpleNamespace(X_train=X, y_train=y, X_val=X_val, y_val=y_val, task=task, **extra)


def regression_problem(n: int = 200, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    return X, X @ w + 0.7 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("scale_target", [True, False])
def test_full_batch_gd_reaches_least_squares(scale_target: bool) -> None:
    # Oracle: numpy.linalg.lstsq on [X, 1]. Full-batch GD on MSE with lr=0.3 contracts the error by <= 0.6 a
    # step on this problem, so it reaches the solution to float64 precision; we ask for 1e-6 (absolute). With the
    # target standardised the model is σ (W x + b) + μ: its effective coefficients σW, σb + μ are the solution.
    X, y = regression_problem()
    model = LinearRegression(5, 1).double()
    result = descend.fit(model, tensors(X, y), optimizer="sgd", lr=0.3, batch_size="full", epochs=5000, tol=1e-13,
                         scale_target=scale_target)  # fmt: skip
    assert result.converged and result.stop_reason == "tolerance"
    A = np.hstack([X.numpy(), np.ones((len(X), 1))])
    coef = np.linalg.lstsq(A, y.numpy(), rcond=None)[0]
    W, b = model.net.weight.detach().numpy()[0], model.net.bias.detach().numpy()
    if scale_target:
        mu, sigma = float(y.mean()), float(y.std(correction=0))
        assert model.output_shift is not None and model.output_scale is not None
        assert model.output_shift.item() == pytest.approx(mu, rel=1e-12)
        assert model.output_scale.item() == pytest.approx(sigma, rel=1e-12)
        W, b = sigma * W, sigma * b + mu
    else:
        assert model.output_scale is None
    np.testing.assert_allclose(np.append(W, b), coef, rtol=0, atol=1e-6)
    # Either way the model predicts in the target's units.
    np.testing.assert_allclose(result.model(X).detach().numpy()[:, 0], A @ coef, rtol=0, atol=1e-5)


def test_l2_logistic_regression_reaches_sklearn_optimum() -> None:
    # sklearn minimises C Σ_i ℓ_i + ½‖w‖² (intercept not penalised); fit minimises (1/n) Σ_i ℓ_i + (l2/2)‖w‖²
    # over the weights only (penalize="weights"). Same minimiser when l2 = 1/(C n). Tolerance 1e-4 (absolute).
    g = torch.Generator().manual_seed(1)
    n, C = 300, 0.5
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    logits = X @ torch.tensor([1.5, -2.0, 0.5, 0.0], dtype=torch.float64) + 0.3
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(logits)).double()
    model = LogisticRegression(4).double()
    descend.fit(
        model, tensors(X, y, task="binary"), optimizer="sgd", lr=2.0, batch_size="full", epochs=20000,
        tol=1e-15, l2=1.0 / (C * n),
    )  # fmt: skip
    sk = SkLogistic(C=C, tol=1e-12, max_iter=10000).fit(X.numpy(), y.numpy())
    np.testing.assert_allclose(model.net.weight.detach().numpy()[0], sk.coef_[0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.net.bias.detach().numpy(), sk.intercept_, rtol=0, atol=1e-4)


def test_accumulation_equals_the_larger_batch() -> None:
    # The order is one permutation per epoch split into batches, so two accumulated batches of 16 are the batch of
    # 32 cut in half; the mean of their mean gradients is the batch-32 gradient. float64, agreement to 1e-12.
    X, y = regression_problem(n=128)
    runs = []
    for bs, k in ((32, 1), (16, 2)):
        model = LinearRegression(5, 1).double()
        descend.fit(model, tensors(X, y), optimizer="sgd", lr=0.05, batch_size=bs, accumulate=k, epochs=5, tol=None)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-12)


def test_clip_norm_matches_hand_written_loop() -> None:
    # Oracle: torch.nn.utils.clip_grad_norm_ then an SGD step, full batch, 20 steps, float64 (1e-12), on the
    # standardised target written out by hand: the model predicts σ f(x) + μ, the loss compares (ŷ − μ)/σ with
    # (y − μ)/σ, μ and σ the training target's mean and (population) standard deviation.
    X, y = regression_problem(n=64)
    model = LinearRegression(5, 1).double()
    descend.fit(model, tensors(X, y), optimizer="sgd", lr=0.1, batch_size="full", clip_norm=0.5, epochs=20, tol=None)
    mu, sigma = y.mean(), y.std(correction=0)
    ref = LinearRegression(5, 1).double().set_output_scale([float(mu)], [float(sigma)])
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.mse_loss((ref(X).squeeze(1) - mu) / sigma, (y - mu) / sigma).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_schedule_sets_the_learning_rate_of_each_step() -> None:
    X, y = regression_problem(n=64)
    schedule = lambda t: 0.1 / (1 + t)  # noqa: E731
    result = descend.fit("linear", tensors(X, y), optimizer="sgd", lr=schedule, batch_size=16, epochs=3, tol=None)
    # Each row's lr is the rate of the next update, step = updates so far.
    assert [row["lr"] for row in result.history] == [schedule(row["step"]) for row in result.history]


class Snapshots(Callback):
    def __init__(self) -> None:
        self.weights: dict[int, list[torch.Tensor]] = {}

    def on_epoch_end(self, state: TrainState) -> None:
        self.weights[int(state.row["epoch"])] = [p.detach().clone() for p in state.model.parameters()]


def noisy_classification(seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(240, 10, generator=g)
    y = ((X[:, 0] + 1.5 * torch.randn(240, generator=g)) > 0).float()
    return tensors(X[:160], y[:160], X[160:], y[160:], task="binary")


def test_early_stopping_restores_best_and_counts_epochs() -> None:
    # A wide MLP overfits 160 noisy rows: val_loss turns up, early stopping fires.
    snaps = Snapshots()
    stop = EarlyStopping(patience=4)
    model = MLP(hidden=(128,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = descend.fit(model, noisy_classification(), lr=0.01, epochs=200, callbacks=[snaps], early_stopping=stop)
    val = [row["val_loss"] for row in result.history]
    best = int(np.argmin(val)) + 1
    assert result.stop_reason == "early_stopping" and result.converged
    assert result.best_epoch == best == stop.best_epoch
    assert result.epochs == best + 4  # patience counts epochs after the best one
    for p, q in zip(model.parameters(), snaps.weights[best]):
        assert torch.equal(p, q)


def test_min_delta_and_maximised_monitor() -> None:
    # No epoch can beat the first by min_delta=10 in accuracy, so the run lasts 1 + patience epochs.
    stop = EarlyStopping(monitor="val_accuracy", patience=3, min_delta=10.0)
    result = descend.fit("logistic", noisy_classification(), epochs=50, early_stopping=stop)
    assert result.epochs == 4 and result.best_epoch == 1 and stop.mode == "max"


def test_seeded_runs_are_bit_identical_and_rng_is_untouched() -> None:
    data = noisy_classification()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    runs = [descend.fit(MLP(hidden=(16,), dropout=0.2), data, epochs=5, seed=7) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), before)
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)
    assert [r["loss"] for r in runs[0].history] == [r["loss"] for r in runs[1].history]
    other = descend.fit(MLP(hidden=(16,), dropout=0.2), data, epochs=5, seed=8)
    assert not torch.equal(next(other.model.parameters()), next(runs[0].model.parameters()))


def test_not_converged_warns_and_says_so() -> None:
    X, y = regression_problem(n=64)
    with pytest.warns(ConvergenceWarning, match="maximum of 2 epochs"):
        result = descend.fit("linear", tensors(X, y), epochs=2)
    assert not result.converged and result.stop_reason == "max_epochs"
    with pytest.warns(ConvergenceWarning, match="maximum of 3 steps"):
        result = descend.fit("linear", tensors(X, y), epochs=2, max_steps=3, batch_size=8)
    assert result.steps == 3 and result.stop_reason == "max_steps"


def test_loss_threshold_and_penalty_formula() -> None:
    X, y = regression_problem(n=64)
    result = descend.fit("linear", tensors(X, y), lr=0.1, loss_threshold=0.5, epochs=500)
    assert result.converged and result.stop_reason == "loss_threshold" and result.history[-1]["loss"] <= 0.5
    # One full-batch step from zero weights: the training loss of epoch 1 is the objective at the start,
    # mean(y²) + 0 penalty; an L1/L2 penalty on a non-zero start is added as l1 Σ|w| + l2/2 Σ w².
    model = LinearRegression(5, 1, init="xavier").double()
    w = model.net.weight.detach().clone()
    data = tensors(X, y)
    result = descend.fit(model, data, optimizer="sgd", lr=1e-9, batch_size="full", epochs=1, l1=0.3, l2=0.2, tol=None,
                         scale_target=False)  # the formula on the raw target
    base = torch.nn.functional.mse_loss((X @ w.T).squeeze(1), y)
    expected = base + 0.3 * w.abs().sum() + 0.1 * (w**2).sum()
    assert result.history[0]["loss"] == pytest.approx(float(expected), rel=1e-12)


def _bad(**kwargs: Any) -> dict[str, Any]:
    return kwargs


X_BAD, Y_BAD = regression_problem(n=32)
MC = tensors(torch.randn(30, 4), torch.arange(30) % 3, task="multiclass", n_classes=3)
BAD_ARGUMENTS = [
    ("linear", tensors(X_BAD, Y_BAD), _bad(optimizer="adamm"), "optimizer: invalid optimizer='adamm'; expected one of sgd, momentum"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(loss="squared"), "loss: invalid loss='squared'; expected one of mse"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(batch_size=0), r"batch_size: invalid batch_size=0; expected full, an int >= 1 or None"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(batch_size="half"), r"batch_size='half'"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(lr="fast"), r"lr: invalid lr='fast'; expected a number > 0, auto, a schedule"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(lr=-1.0), r"lr=-1.0; expected a number > 0"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(loss="cross_entropy"), "'cross_entropy' does not fit a regression task"),
    ("softmax", MC, _bad(loss="bce"), "'bce' does not fit a multiclass task; expected one of cross_entropy, hinge"),
    (MLP(4, 2), MC, {}, r"output shape \(n, 2\) does not fit the multiclass target.*expected \(n, 3\) logits"),
    (LinearRegression(5, 3).double(), tensors(X_BAD, Y_BAD), {}, r"output shape \(n, 3\).*expected \(n,\) or \(n, 1\)"),
    ("logistic", MC, {}, "LogisticRegression fits binary tasks, but the data is multiclass"),
    ("forest", MC, {}, "model: unknown model 'forest'"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(epochs=0), r"epochs=0; expected an int >= 1"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(validation=1.5), r"validation=1.5; expected a number in \[0, 1\)"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(penalize=["net.nope"], l2=1.0), "unknown parameter 'net.nope'"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(optimizer=torch.optim.SGD, clip_norm=1.0), "not a descend optimizer"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(metrics=["accuracy"]), "'accuracy' does not fit a regression task"),
    ("linear", tensors(X_BAD, Y_BAD), _bad(early_stopping=True), "early_stopping: needs a validation set"),
]


@pytest.mark.parametrize(("model", "data", "kwargs", "match"), BAD_ARGUMENTS)
def test_bad_arguments(model: Any, data: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        descend.fit(model, data, epochs=kwargs.pop("epochs", 1), **kwargs)


def test_any_module_and_optimizer_instance() -> None:
    X, y = regression_problem(n=64)
    net = torch.nn.Sequential(torch.nn.Linear(5, 1)).double()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    result = descend.fit(net, tensors(X, y), optimizer=opt, epochs=3, tol=None)
    assert result.model is net and math.isfinite(result.history[-1]["loss"])
