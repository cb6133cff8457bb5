"""Newton and L-BFGS against independent optima and against torch.optim.LBFGS.

Oracles: scikit-learn's LogisticRegression (newton-cholesky, tol 1e-12) and scipy's L-BFGS-B (gtol 1e-12) on
the same L2-regularised objective, agreeing to 1e-6 in coefficients (max abs); torch.optim.LBFGS's iterates
(same arguments, fixed step) to 1e-12 over 10 calls and 1e-8 over 30; closed-form Newton steps on quadratics
to 1e-12.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.optimize
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from descend.optim.lbfgs import LBFGS
from descend.optim.newton import Newton

F64 = torch.float64
C = 1.0  # sklearn's inverse regularisation strength


@pytest.fixture(scope="module")
def cancer() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    clf = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x, y)
    return torch.tensor(x), torch.tensor(y, dtype=F64), np.concatenate([clf.coef_[0], clf.intercept_])


def objective(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sklearn's C * sum(log-loss) + ||w||^2 / 2, divided by C n: same minimiser, loss on the usual scale."""
    z = x @ w + b
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y) + (w @ w) / (2 * C * len(y))


def coefficients(w: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return np.concatenate([w.detach().numpy(), b.detach().numpy()])


def test_scipy_lbfgsb_agrees_with_sklearn_on_the_objective(cancer) -> None:
    x, y, ref = cancer

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(theta, requires_grad=True)
        loss = objective(x, y, t[:-1], t[-1])
        loss.backward()
        return float(loss), t.grad.numpy()

    res = scipy.optimize.minimize(f, np.zeros(31), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 10000})
    assert np.abs(res.x - ref).max() < 1e-6


def test_newton_reaches_logistic_optimum_in_under_15_iterations(cancer) -> None:
    x, y, ref = cancer
    w = torch.zeros(30, dtype=F64, requires_grad=True)
    b = torch.zeros(1, dtype=F64, requires_grad=True)
    opt = Newton([w, b])
    errors = []
    for _ in range(14):
        opt.step(lambda: objective(x, y, w, b))
        errors.append(np.abs(coefficients(w, b) - ref).max())
        if errors[-1] < 1e-6:
            break
    assert errors[-1] < 1e-6, errors
    assert len(errors) < 15
    # and it stays there: the damping does not blow up once the loss can no longer resolve a gain
    for _ in range(3):
        opt.step(lambda: objective(x, y, w, b))
    assert np.abs(coefficients(w, b) - ref).max() < 1e-6


@pytest.mark.parametrize("line_search_fn", ["strong_wolfe", "backtracking", None])
def test_lbfgs_reaches_logistic_optimum(cancer, line_search_fn: str | None) -> None:
    x, y, ref = cancer
    w = torch.zeros(30, dtype=F64, requires_grad=True)
    b = torch.zeros(1, dtype=F64, requires_grad=True)
    # tolerance_change=0: near the optimum the loss changes by less than its rounding (~1e-17), and
    # 1e-6 in coefficients needs gradients near 1e-9 with this conditioning (smallest curvature 1/(C n)).
    opt = LBFGS([w, b], max_iter=500, history_size=10, tolerance_grad=1e-12, tolerance_change=0.0,
                line_search_fn=line_search_fn)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective(x, y, w, b)
        loss.backward()
        return loss

    opt.step(closure)
    assert np.abs(coefficients(w, b) - ref).max() < 1e-6


def rosenbrock(w: torch.Tensor) -> torch.Tensor:
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def lbfgs_path(cls: type, calls: int, **kwargs) -> torch.Tensor:
    """Iterates after each step() on a shifted Rosenbrock plus a 6-d quadratic (minimum known)."""
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=F64)
    h = a @ a.T / 6 + 0.5 * torch.eye(6, dtype=F64)
    w = torch.zeros(2, dtype=F64, requires_grad=True)
    v = torch.zeros(6, dtype=F64, requires_grad=True)
    opt = cls([w, v], **kwargs)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.1 * rosenbrock(w + torch.tensor([-1.0, 1.0], dtype=F64)) + 0.5 * v @ h @ v - v.sum()
        loss.backward()
        return loss

    path = []
    for _ in range(calls):
        opt.step(closure)
        path.append(torch.cat([w.detach(), v.detach()]).clone())
    optimum = torch.cat([torch.tensor([2.0, 0.0], dtype=F64), torch.linalg.solve(h, torch.ones(6, dtype=F64))])
    return torch.stack(path), optimum


@pytest.mark.parametrize(("lr", "max_iter", "calls"), [(0.5, 3, 12), (1.0, 1, 30)])
def test_lbfgs_fixed_step_iterates_match_torch(lr: float, max_iter: int, calls: int) -> None:
    """Same arguments, same algorithm: the iterates after every step() agree with torch.optim.LBFGS.

    The two differ only in the order of floating-point operations, which the nonconvex part amplifies over
    30 calls to ~2e-9; hence 1e-12 for the first 10 calls and 1e-8 for all."""
    ours, _ = lbfgs_path(LBFGS, calls, lr=lr, max_iter=max_iter, history_size=3)
    theirs, _ = lbfgs_path(torch.optim.LBFGS, calls, lr=lr, max_iter=max_iter, history_size=3)
    torch.testing.assert_close(ours[:10], theirs[:10], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-8)


def test_lbfgs_strong_wolfe_reaches_torchs_optimum() -> None:
    """Line searches may pick different points when the first trial fails; both must end at the minimum."""
    kwargs = {"max_iter": 300, "history_size": 5, "tolerance_grad": 1e-12, "tolerance_change": 0.0,
              "line_search_fn": "strong_wolfe"}
    ours, optimum = lbfgs_path(LBFGS, 2, **kwargs)
    theirs, _ = lbfgs_path(torch.optim.LBFGS, 2, **kwargs)
    torch.testing.assert_close(ours[-1], optimum, rtol=0, atol=1e-7)
    torch.testing.assert_close(theirs[-1], optimum, rtol=0, atol=1e-7)


def test_newton_step_matches_closed_form_on_quadratic() -> None:
    torch.manual_seed(1)
    a = torch.randn(5, 5, dtype=F64)
    h = a @ a.T + torch.eye(5, dtype=F64)
    c = torch.randn(5, dtype=F64)
    w0 = torch.randn(5, dtype=F64)
    w = w0.clone().requires_grad_(True)
    opt = Newton([w], lr=0.7, damping=0.3, adaptive=False)
    opt.step(lambda: 0.5 * w @ h @ w - c @ w)
    expected = w0 - 0.7 * torch.linalg.solve(h + 0.3 * torch.eye(5, dtype=F64), h @ w0 - c)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(w.grad, h @ w0 - c, rtol=0, atol=1e-12)  # gradient at the start, for callbacks
    opt2 = Newton([w], damping=0.0)
    opt2.step(lambda: 0.5 * w @ h @ w - c @ w)  # undamped: one step to the minimiser
    torch.testing.assert_close(w.detach(), torch.linalg.solve(h, c), rtol=0, atol=1e-12)


def test_newton_descends_through_a_saddle() -> None:
    """f = x^2 - y^2 + y^4 starts near its saddle (0, 0), where H = diag(2, -2) is indefinite."""
    w = torch.tensor([1.0, 1e-3], dtype=F64, requires_grad=True)
    f = lambda: w[0] ** 2 - w[1] ** 2 + w[1] ** 4  # noqa: E731
    opt = Newton([w])
    losses = [float(f())]
    for _ in range(25):
        opt.step(f)
        losses.append(float(f()))
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(losses))  # monotone, up to rounding
    assert losses[-1] == pytest.approx(-0.25, abs=1e-12)  # minimum at (0, +-1/sqrt 2)


def test_newton_refuses_large_models_and_backward_closures() -> None:
    big = torch.zeros(101, requires_grad=True)
    with pytest.raises(ValueError, match=r"parameters=101; expected at most max_params=100"):
        Newton([big], max_params=100)
    w = torch.ones(2, requires_grad=True)

    def closure() -> torch.Tensor:
        loss = (w**2).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match=r"called loss\.backward"):
        Newton([w]).step(closure)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Newton(p, lr=0.0), r"Newton: invalid lr=0\.0"),
        (lambda p: Newton(p, lr=1.5), r"Newton: invalid lr=1\.5"),
        (lambda p: Newton(p, damping=-1.0), r"Newton: invalid damping=-1\.0"),
        (lambda p: Newton([{"params": p[:1]}, {"params": p[1:]}]), "expected one"),
        (lambda p: LBFGS(p, lr=-1.0), r"LBFGS: invalid lr=-1\.0"),
        (lambda p: LBFGS(p, history_size=0), "history_size=0"),
        (lambda p: LBFGS(p, line_search_fn="armijo"), "line_search_fn='armijo'"),
        (lambda p: LBFGS(p, max_iter=0), "max_iter=0"),
    ],
)
def test_bad_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make([torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)])


def test_lbfgs_state_dict_roundtrip_continues_identically() -> None:
    def run(split: bool) -> torch.Tensor:
        w = torch.tensor([-1.2, 1.0], dtype=F64, requires_grad=True)
        opt = LBFGS([w], max_iter=3, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = rosenbrock(w)
            loss.backward()
            return loss

        for i in range(6):
            if split and i == 3:
                saved = opt.state_dict()
                opt = LBFGS([w], max_iter=3, line_search_fn="strong_wolfe")
                opt.load_state_dict(saved)
            opt.step(closure)
        return w.detach()

    torch.testing.assert_close(run(False), run(True), rtol=0, atol=0)
