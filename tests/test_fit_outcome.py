"""What fit says about how a run ended: stop reason, converged and diverged never contradict the run; the model
comes back ready to predict."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

import descend
from descend.models import MLP
from descend.train import Callback, ConvergenceWarning, TrainState


def _regression(n: int = 200) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 3, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    return SimpleNamespace(X_train=X[: n * 3 // 4], y_train=y[: n * 3 // 4], X_val=X[n * 3 // 4 :],
                           y_val=y[n * 3 // 4 :], task="regression")  # fmt: skip


@pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")
def test_the_model_comes_back_in_evaluation_mode() -> None:
    net = MLP(3, 1, hidden=(32,), dropout=0.5)
    result = descend.fit(net, _regression(), epochs=3, tol=None, early_stopping=False, progress=False)
    assert result.stop_reason == "max_epochs"
    assert not result.model.training
    x = torch.randn(5, 3)
    assert torch.equal(result.model(x), result.model(x))  # dropout is off


def test_a_stop_asked_for_by_the_callers_callback_is_not_warned_about() -> None:
    class Enough(Callback):
        def on_epoch_end(self, state: TrainState) -> None:
            if state.epoch == 1:
                state.stop = "enough"

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = descend.fit("linear", _regression(), epochs=50, callbacks=[Enough()], progress=False)
    assert (result.stop_reason, result.converged, result.diverged, result.epochs) == ("enough", False, False, 2)


def test_early_stopping_after_a_blow_up_is_not_converged() -> None:
    # Full-batch least squares at three times the stability edge: the loss grows ~25x a step. Without a guard,
    # early stopping is what ends the run; it must not be reported as converged.
    data = _regression()
    with pytest.warns(ConvergenceWarning, match="not converged"):
        result = descend.fit("linear", data, optimizer="sgd", lr=3.0, batch_size="full", epochs=30, guard=False,
                             early_stopping=descend.train.EarlyStopping(patience=3), tol=None, progress=False)
    assert result.stop_reason == "early_stopping"
    assert max(r["loss"] for r in result.history) > 1e3 * result.history[0]["loss"]
    assert result.diverged and not result.converged


def test_a_run_on_a_budget_is_warned_about_and_a_converged_one_is_not() -> None:
    with pytest.warns(ConvergenceWarning, match="maximum of 2 epochs"):
        budget = descend.fit("linear", _regression(), epochs=2, progress=False)
    assert (budget.stop_reason, budget.converged, budget.diverged) == ("max_epochs", False, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        done = descend.fit("linear", _regression(), optimizer="sgd", lr=0.1, batch_size="full", epochs=500,
                           progress=False)
    assert done.converged and not done.diverged and done.guard == {"rollbacks": 0, "skips": 0, "lr_scale": 1.0}
