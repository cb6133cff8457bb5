"""Newton and L-BFGS through descend.fit (full batch): the closure conventions, and the optimum they reach.

Oracle: scikit-learn's L2-regularised logistic regression on the same scaled breast_cancer rows, solved by its
Newton-Cholesky solver to tol 1e-12. scikit-learn minimises C * sum(log loss) + ||w||^2 / 2 (intercept not
penalised); divided by C n that is fit's mean log loss + (l2 / 2) ||w||^2 with l2 = 1 / (C n), the weights
penalised and the bias not (fit's default ``penalize="weights"``). The model is float64, so fit computes in
float64 too.
"""

from __future__ import annotations

import copy
import itertools
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import descend
from descend.data import load_dataset, prepare
from descend.errors import ConfigError
from descend.optim import LBFGS, Newton

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")

C = 1.0


@pytest.fixture(scope="module")
def problem() -> tuple[descend.data.PreparedData, np.ndarray]:
    data = prepare(load_dataset("breast_cancer"), validation=0.0, seed=0)
    X, y = data.X_train.numpy().astype(np.float64), data.y_train.numpy()
    sk = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    return data, np.concatenate([sk.coef_[0], sk.intercept_])


def linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(30, 1).double()


def coefficients(model: torch.nn.Linear) -> np.ndarray:
    return np.concatenate([model.weight.detach().numpy()[0], model.bias.detach().numpy()])


def train(data: descend.data.PreparedData, model: torch.nn.Module, optimizer: object, **options: object):
    return descend.fit(model, data, optimizer=optimizer, batch_size="full", loss="bce", l2=1 / (C * len(data.X_train)),
                       tol=None, progress=False, **options)


def test_newton_reaches_the_logistic_optimum_in_under_15_iterations(problem) -> None:
    data, optimum = problem
    model = linear()
    result = train(data, model, "newton", epochs=14)
    assert result.steps == 14  # one Newton step per epoch
    assert np.abs(coefficients(model) - optimum).max() < 1e-6
    losses = [row["loss"] for row in result.history]
    assert all(b <= a for a, b in itertools.pairwise(losses))  # damped, adaptive: never uphill


def test_a_newton_instance_works_like_the_name(problem) -> None:
    data, _ = problem
    by_name, by_instance = linear(), linear()
    train(data, by_name, "newton", epochs=5)
    train(data, by_instance, Newton(by_instance.parameters()), epochs=5)
    assert torch.equal(by_name.weight, by_instance.weight) and torch.equal(by_name.bias, by_instance.bias)


def test_lbfgs_reaches_the_logistic_optimum(problem) -> None:
    data, optimum = problem
    model = linear()
    # torch's default tolerances stop where the loss changes by < 1e-9, 4e-4 from the optimum (the smallest
    # Hessian eigenvalue is about l2 = 2e-3): ask for a gradient below 1e-12 and no stop on the loss change
    result = train(data, model, "lbfgs", epochs=10, optimizer_options={"tolerance_grad": 1e-12, "tolerance_change": 0.0})
    assert np.abs(coefficients(model) - optimum).max() < 1e-6
    assert result.history[-1]["loss"] <= result.history[0]["loss"]


def test_fit_drives_lbfgs_exactly_like_torchs_closure_loop(problem) -> None:
    """The closure fit builds (zero_grad, loss with penalty, backward) in a hand-written loop over torch.optim.LBFGS:
    same iterates. Without a line search descend's LBFGS matches torch's step for step."""
    data, _ = problem
    ours, theirs = linear(), linear()
    X, y = data.X_train.double(), data.y_train.double()[:, None]
    l2 = 1 / (C * len(X))
    result = train(data, ours, LBFGS(ours.parameters(), max_iter=5), epochs=3)
    opt = torch.optim.LBFGS(theirs.parameters(), max_iter=5)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(theirs(X), y) + 0.5 * l2 * theirs.weight.pow(2).sum()
        loss.backward()
        return loss

    after = []
    for _ in range(3):
        opt.step(closure)
        with torch.no_grad():  # the objective at the weights the step left: what each epoch's row reports
            after.append(float(torch.nn.functional.binary_cross_entropy_with_logits(theirs(X), y)
                               + 0.5 * l2 * theirs.weight.pow(2).sum()))  # fmt: skip
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.bias, theirs.bias, rtol=1e-9, atol=1e-12)
    assert [r["loss"] for r in result.history] == pytest.approx(after, rel=1e-9)


def test_torch_lbfgs_instance_gets_a_closure_too(problem) -> None:
    data, optimum = problem
    model = linear()
    opt = torch.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=0.0)
    train(data, model, opt, epochs=10)
    assert np.abs(coefficients(model) - optimum).max() < 1e-6


@pytest.mark.parametrize("optimizer", ["newton", "lbfgs", "instance"])
@pytest.mark.parametrize("batch_size", [32, 1])
def test_second_order_optimizers_refuse_mini_batches(problem, optimizer: str, batch_size: int) -> None:
    data, _ = problem
    model = linear()
    spec = Newton(model.parameters()) if optimizer == "instance" else optimizer
    with pytest.raises(ConfigError, match=rf"^batch_size: .*(Newton|LBFGS).*batch_size={batch_size}.*expected batch_size='full'"):
        descend.fit(model, data, optimizer=spec, batch_size=batch_size, loss="bce", progress=False)


def test_second_order_runs_keep_health_but_not_the_2_over_lr_edge(problem, tmp_path) -> None:
    """Newton's step is scaled by the curvature, not by lr: fit records gradient health but no sharpness."""
    data, _ = problem
    model = linear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(copy.deepcopy(data), model, "newton", epochs=30, run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "health.jsonl").exists()
    assert not (tmp_path / "run" / "curvature.jsonl").exists()
    assert result.findings == []
