"""Curvature against closed forms and against the explicit Hessian (torch.func.hessian + eigvalsh).

Tolerances: eigenvalues within 1e-6 relative (asked of Lanczos with tol=1e-8); Hutchinson traces within 2%
with a probe count chosen from the estimator's exact variance, 2 sum_{i!=j} H_ij^2, so that 2% is four standard
errors (explicit matrix, 200 x 200) or three (small MLP); seeds are fixed.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from descend.errors import ConfigError
from descend.inspect.curvature import (
    HessianOperator,
    adam_preconditioner,
    hessian_trace,
    hessian_vector_product,
    preconditioned_sharpness,
    sharpness,
    top_eigenvalue,
    top_eigenvalues,
)
from descend.inspect.spectral import hutchinson_trace, lanczos

F64 = torch.float64


def quadratic(h: torch.Tensor) -> tuple[nn.Parameter, object]:
    """f(w) = 1/2 w^T H w + b^T w, whose Hessian is H everywhere."""
    w = nn.Parameter(torch.linspace(-1, 1, h.shape[0], dtype=F64))
    b = torch.arange(h.shape[0], dtype=F64)
    return w, lambda: 0.5 * w @ h @ w + b @ w


def random_symmetric(n: int, seed: int, spectrum: torch.Tensor | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    lam = spectrum if spectrum is not None else torch.randn(n, generator=g, dtype=F64)
    return q @ torch.diag(lam) @ q.T


def small_mlp(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 3)).double()
    x = torch.randn(32, 4, dtype=F64)
    y = torch.randn(32, 3, dtype=F64)
    return model, x, y


def explicit_hessian(model: nn.Module, loss_of_output) -> torch.Tensor:
    """The full Hessian over the flattened parameters, by torch.func.hessian."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, (t.reshape(s) for t, s in zip(flat.split(sizes), shapes))))
        return loss_of_output(lambda x: functional_call(model, parts, (x,)))

    return hessian(f)(flat0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_eigenvalue_on_quadratic_with_known_hessian(seed: int) -> None:
    h = random_symmetric(40, seed)
    w, loss = quadratic(h)
    expected = float(torch.linalg.eigvalsh(h)[-1])
    spec = top_eigenvalue([w], loss, tol=1e-8)
    assert spec.converged
    assert abs(spec.top - expected) <= 1e-6 * abs(expected)


def test_negative_eigenvalue_of_larger_magnitude_is_not_returned() -> None:
    w = nn.Parameter(torch.tensor([0.3, -0.7], dtype=F64))
    spec = top_eigenvalue([w], lambda: w[0] ** 2 - 3 * w[1] ** 2)  # Hessian diag(2, -6)
    assert spec.converged
    assert spec.top == pytest.approx(2.0, rel=1e-12)


def test_top_k_match_eigvalsh_on_quadratic() -> None:
    lam = torch.tensor([10.0, 9.5, 9.0, 5.0, -12.0] + [0.1 * i for i in range(25)], dtype=F64)
    h = random_symmetric(30, 3, lam)
    w, loss = quadratic(h)
    spec = top_eigenvalues([w], loss, k=4, tol=1e-8, return_vectors=True)
    expected = torch.linalg.eigvalsh(h).flip(0)[:4]
    assert spec.converged
    torch.testing.assert_close(torch.tensor(spec.eigenvalues, dtype=F64), expected, rtol=1e-6, atol=0)
    assert spec.eigenvectors is not None
    for value, vec in zip(spec.eigenvalues, spec.eigenvectors):
        assert float((h @ vec - value * vec).norm()) <= 1e-6 * abs(value)


def test_top_k_on_small_float64_mlp_matches_explicit_hessian() -> None:
    model, x, y = small_mlp()
    h = explicit_hessian(model, lambda f: (f(x) - y).pow(2).mean())
    expected = torch.linalg.eigvalsh(h).flip(0)
    spec = top_eigenvalues(model, lambda: (model(x) - y).pow(2).mean(), k=3, tol=1e-8)
    assert spec.converged
    torch.testing.assert_close(torch.tensor(spec.eigenvalues, dtype=F64), expected[:3], rtol=1e-6, atol=0)


def test_hessian_vector_product_matches_explicit_hessian() -> None:
    model, x, y = small_mlp(1)
    h = explicit_hessian(model, lambda f: (f(x) - y).pow(2).mean())
    v = [torch.randn_like(p) for p in model.parameters()]
    hv = hessian_vector_product(model, lambda: (model(x) - y).pow(2).mean(), v)
    flat = torch.cat([t.reshape(-1) for t in hv])
    torch.testing.assert_close(flat, h @ torch.cat([t.reshape(-1) for t in v]), rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())  # autograd.grad only; .grad untouched


def test_batches_average_the_per_batch_hessians() -> None:
    model, x, y = small_mlp(2)
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    hs = [explicit_hessian(model, lambda f, b=b: (f(b[0]) - b[1]).pow(2).mean()) for b in batches]
    expected = float(torch.linalg.eigvalsh((hs[0] + hs[1]) / 2)[-1])
    spec = top_eigenvalue(model, lambda b: (model(b[0]) - b[1]).pow(2).mean(), batches=batches, tol=1e-8)
    assert spec.top == pytest.approx(expected, rel=1e-6)
    # equal halves: the mean of the batch Hessians is the full-batch Hessian
    full = top_eigenvalue(model, lambda: (model(x) - y).pow(2).mean(), tol=1e-8)
    assert full.top == pytest.approx(expected, rel=1e-6)


def probes_for(h: torch.Tensor, rel: float, sigmas: float = 4.0) -> int:
    """Probes making `rel` of the trace at least `sigmas` standard errors: Var = 2 sum_{i!=j} H_ij^2."""
    var = 2 * (h.pow(2).sum() - h.diagonal().pow(2).sum())
    return math.ceil(float(var) * sigmas**2 / float(rel * h.trace()) ** 2)


def test_hutchinson_trace_within_2_percent_on_matrix_with_known_trace() -> None:
    h = random_symmetric(200, 4, torch.linspace(0.5, 3.0, 200, dtype=F64))  # trace 350
    probes = probes_for(h, 0.02)
    assert probes <= 500, probes  # the bound we state: 2% is 4 standard errors at this count
    est = hutchinson_trace(lambda v: h @ v, 200, probes=probes, seed=0)
    assert abs(est.value - 350.0) <= 0.02 * 350.0
    sd = math.sqrt(2 * float(h.pow(2).sum() - h.diagonal().pow(2).sum()))
    assert 0.7 < est.stderr / (sd / math.sqrt(probes)) < 1.3  # reported error matches the exact one
    assert est.probes == probes


def test_hutchinson_trace_on_small_mlp_within_2_percent() -> None:
    model, x, y = small_mlp(3)
    h = explicit_hessian(model, lambda f: (f(x) - y).pow(2).mean())
    # An MLP Hessian carries much of its weight off the diagonal: 2% at three standard errors takes ~10^4 probes.
    probes = probes_for(h, 0.02, sigmas=3.0)
    assert probes <= 12000, probes
    est = hessian_trace(model, lambda: (model(x) - y).pow(2).mean(), probes=probes, seed=1, chunk=1024)
    assert abs(est.value - float(h.trace())) <= 0.02 * abs(float(h.trace()))


def test_trace_is_exact_for_a_diagonal_hessian() -> None:
    w = nn.Parameter(torch.zeros(5, dtype=F64))
    d = torch.tensor([1.0, -2.0, 3.0, 4.0, 0.5], dtype=F64)
    est = hessian_trace([w], lambda: 0.5 * (d * w**2).sum(), probes=3)
    assert est.value == pytest.approx(6.5, rel=1e-14)
    assert est.stderr == pytest.approx(0.0, abs=1e-14)


def test_sharpness_against_two_over_lr() -> None:
    h = random_symmetric(10, 5, torch.linspace(1, 8, 10, dtype=F64))
    w, loss = quadratic(h)
    s = sharpness([w], loss, lr=0.5)
    assert s.value == pytest.approx(8.0, rel=1e-6)
    assert s.threshold == 4.0 and s.ratio == pytest.approx(2.0, rel=1e-6)
    assert sharpness([w], loss, lr=0.5, momentum=0.9).threshold == pytest.approx(7.6)


def test_preconditioned_sharpness_matches_explicit_matrix() -> None:
    model, x, y = small_mlp(4)
    loss = lambda: (model(x) - y).pow(2).mean()  # noqa: E731
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
    # P by hand from torch.optim.Adam's state: sqrt(v / (1 - beta2^t)) + eps
    p_diag = torch.cat([(opt.state[p]["exp_avg_sq"] / (1 - 0.99**3)).sqrt().reshape(-1) + 1e-6
                        for p in model.parameters()])
    h = explicit_hessian(model, lambda f: (f(x) - y).pow(2).mean())
    s_inv = p_diag.rsqrt()
    expected = float(torch.linalg.eigvalsh(s_inv[:, None] * h * s_inv[None, :])[-1])
    s = preconditioned_sharpness(opt, loss, tol=1e-8)
    assert s.value == pytest.approx(expected, rel=1e-6)
    assert s.threshold == pytest.approx((2 + 2 * 0.8) / (0.2 * 0.01))
    params, diag = adam_preconditioner(opt)
    assert len(params) == 4
    torch.testing.assert_close(torch.cat([d.reshape(-1) for d in diag]), p_diag)


def test_lanczos_restarts_on_repeated_eigenvalues() -> None:
    a = torch.diag(torch.tensor([5.0, 5.0, 5.0, 1.0, -7.0], dtype=F64))
    spec = lanczos(lambda v: a @ v, 5, k=4)
    assert spec.converged
    assert spec.eigenvalues == pytest.approx((5.0, 5.0, 5.0, 1.0), rel=1e-12)


def test_not_converged_is_reported() -> None:
    h = random_symmetric(200, 6, torch.linspace(0, 1, 200, dtype=F64))  # no gap at the top
    spec = lanczos(lambda v: h @ v, 200, k=1, tol=1e-12, max_iter=5)
    assert not spec.converged and spec.matvecs == 5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda op: lanczos(op, 3, k=0), "k=0"),
        (lambda op: lanczos(op, 3, k=4), "k=4"),
        (lambda op: lanczos(op, 3, tol=0.0), r"tol=0\.0"),
        (lambda op: lanczos(op, 3, k=2, max_iter=1), "max_iter=1"),
        (lambda op: hutchinson_trace(op, 3, probes=0), "probes=0"),
    ],
)
def test_bad_arguments_name_the_argument(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(lambda v: v)


def test_bad_sharpness_arguments() -> None:
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="lr=0"):
        sharpness([w], lambda: (w**2).sum(), lr=0)
    with pytest.raises(ConfigError, match=r"momentum=1\.0"):
        sharpness([w], lambda: (w**2).sum(), lr=0.1, momentum=1.0)
    with pytest.raises(ConfigError, match="no parameter requires grad"):
        HessianOperator([torch.ones(2)], lambda: torch.tensor(0.0))
    with pytest.raises(ConfigError, match="has no 'exp_avg_sq'"):
        preconditioned_sharpness(torch.optim.Adam([w]), lambda: (w**2).sum())
