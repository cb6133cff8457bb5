"""Eigenvalues and traces of a symmetric linear operator known only through its products ``v -> A v``.

These are the numerical engines under :mod:`descend.inspect.curvature`; they know nothing of models and work
for any symmetric operator, which is how the tests hold them to ``torch.linalg.eigvalsh`` on explicit matrices.

- :func:`lanczos`: the ``k`` largest *algebraic* eigenvalues (not the largest in magnitude), by the Lanczos
  process with full reorthogonalisation and a residual-based stopping rule.
- :func:`hutchinson_trace`: ``tr(A)`` by Hutchinson's estimator with Rademacher probes, with its standard error.

Example:
    >>> import torch
    >>> A = torch.diag(torch.tensor([1.0, -3.0, 2.0], dtype=torch.float64))
    >>> round(lanczos(lambda v: A @ v, 3, k=1, dtype=torch.float64).eigenvalues[0], 12)
    2.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from descend.errors import ConfigError
from descend.inspect._checks import check_int, check_number

__all__ = ["Spectrum", "TraceEstimate", "hutchinson_trace", "lanczos"]

MatVec = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Spectrum:
    """The top of a symmetric operator's spectrum, as found by :func:`lanczos`.

    Attributes:
        eigenvalues: the ``k`` largest algebraic eigenvalue estimates (Ritz values), largest first.
        residuals: for each, ``||A y - theta y||`` of its unit Ritz vector ``y``. Some true eigenvalue lies within
            this distance of ``theta``; when the gap ``delta`` to the rest of the spectrum is known, the error is
            at most ``residual**2 / delta``, usually far smaller than the residual itself.
        converged: every residual is ``<= tol * |theta|`` (or the Krylov space became invariant, where the
            Ritz values are exact up to rounding).
        matvecs: number of operator products used (one Hessian-vector product each).
        tol: the relative residual tolerance that was asked for.
        eigenvectors: ``(k, n)`` unit Ritz vectors if requested, else ``None``.
    """

    eigenvalues: tuple[float, ...]
    residuals: tuple[float, ...]
    converged: bool
    matvecs: int
    tol: float
    eigenvectors: Tensor | None = None

    @property
    def top(self) -> float:
        """The largest algebraic eigenvalue estimate."""
        return self.eigenvalues[0]


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of a trace: ``value`` +- ``stderr`` (one standard error) from ``probes`` probes."""

    value: float
    stderr: float
    probes: int


def _orthogonalise(w: Tensor, basis: Tensor) -> Tensor:
    # Classical Gram-Schmidt applied twice ("twice is enough") keeps the basis orthogonal to rounding.
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _tridiagonal(alphas: list[float], betas: list[float]) -> np.ndarray:
    # The small tridiagonal is solved in numpy: a handful of torch calls on a few numbers each cost more, per
    # product, than a small model's Hessian-vector product itself.
    t = np.diag(np.asarray(alphas, dtype=np.float64))
    if betas:
        off = np.asarray(betas, dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return t


def _block_done(alphas: list[float], betas: list[float], block: int, beta: float, tol: float, kth: float) -> bool:
    """After a restart, may Lanczos stop? Once the current block's own top Ritz value has converged (residual
    ``|beta s_last| <= tol |theta|``) and is no larger than the k-th value found, the block adds nothing new."""
    theta, s = np.linalg.eigh(_tridiagonal(alphas[block:], betas[block:]))
    return abs(beta * float(s[-1, -1])) <= tol * abs(float(theta[-1])) and float(theta[-1]) <= kth


def lanczos(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    return_vectors: bool = False,
) -> Spectrum:
    r"""The ``k`` largest algebraic eigenvalues of a symmetric ``dim x dim`` operator ``A``.

    Builds an orthonormal Krylov basis :math:`Q_m = [q_1 .. q_m]` of
    :math:`\{q_1, A q_1, .., A^{m-1} q_1\}` from a seeded random start, with

    .. math:: A q_j = \beta_{j-1} q_{j-1} + \alpha_j q_j + \beta_j q_{j+1}, \qquad T_m = Q_m^T A Q_m
              = \mathrm{tridiag}(\beta, \alpha, \beta),

    reorthogonalising every new vector against the whole basis. The eigenvalues :math:`\theta_i` of the small
    tridiagonal :math:`T_m` (found with ``eigh``) are the Ritz values; the residual of Ritz pair ``i`` is
    :math:`|\beta_m s_{m,i}|` with :math:`s_i` the eigenvector of :math:`T_m`. Iteration stops once the ``k``
    largest Ritz values each have residual :math:`\le` ``tol`` :math:`\cdot |\theta_i|`, after ``max_iter``
    products, or once the basis spans the whole space. If the Krylov space becomes invariant, the process
    restarts from a fresh random vector orthogonal to the basis (a space grown from a random start holds one
    direction of each eigenspace, so what it misses are further copies of repeated eigenvalues) and stops once
    such a block adds nothing to the top ``k``. A repeated eigenvalue inside a large space that never becomes
    invariant may be listed fewer times than its multiplicity; its value is still right.

    Because the Ritz values are sorted algebraically, a larger negative eigenvalue does not hide the top
    one: for :math:`\mathrm{diag}(2, -6)` this returns 2, where power iteration returns -6.

    Args:
        matvec: ``v -> A v`` for a 1-D tensor ``v`` of length ``dim``; ``A`` must be symmetric.
        dim: the dimension ``n`` of the operator, >= 1.
        k: how many eigenvalues, ``1 <= k <= dim``.
        tol: relative residual tolerance, > 0. Memory is ``max_iter`` vectors of length ``dim``.
        max_iter: the most products to use, >= k (capped at ``dim``).
        seed: seed of the random start vector(s); the result is deterministic given it.
        dtype, device: of the basis vectors handed to ``matvec``.
        return_vectors: also return the ``k`` Ritz vectors.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
        >>> s = lanczos(lambda v: A @ v, 2, k=2)
        >>> [round(x, 9) for x in s.eigenvalues], s.converged
        ([3.0, 1.0], True)
    """
    dim = check_int("lanczos", "dim", dim)
    k = check_int("lanczos", "k", k)
    if k > dim:
        raise ConfigError(f"lanczos: invalid k={k}; expected an int in [1, dim={dim}]")
    tol = check_number("lanczos", "tol", tol, lo_open=True)
    max_iter = check_int("lanczos", "max_iter", max_iter, lo=k)
    steps = min(max_iter, dim)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.finfo(dtype).eps

    def random_unit(basis: Tensor) -> Tensor:
        v = torch.randn(dim, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        v = _orthogonalise(v, basis)
        return v / v.norm()

    basis = torch.zeros(steps, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples q_j and q_{j+1}; 0 where the process restarted
    block = 0  # index where the current Krylov block (since the last restart) begins
    q = random_unit(basis[:0])
    theta = np.zeros(0)
    s = np.zeros((0, 0))
    top = np.zeros(0, dtype=np.int64)
    residual = np.zeros(0)
    converged = False
    for j in range(steps):
        basis[j] = q
        w = matvec(q).to(dtype)
        alpha = float(q @ w)
        w = _orthogonalise(w, basis[: j + 1])
        beta = float(w.norm())
        alphas.append(alpha)
        theta, s = np.linalg.eigh(_tridiagonal(alphas, betas))
        scale = float(np.abs(theta).max())
        # Below this, w is rounding noise: the Krylov space is invariant (or the basis is full).
        full = j + 1 == dim
        invariant = full or beta <= 100 * eps * max(scale, 1e-300) * math.sqrt(dim)
        beta_eff = 0.0 if invariant else beta
        top = np.argsort(-theta, kind="stable")[:k]
        floor = tol * np.maximum(np.abs(theta), eps * scale)
        residual = np.abs(beta_eff * s[-1, top])
        ok = residual <= floor[top]
        # The first block may stop unless it has just become invariant: then one more block checks for
        # further copies of repeated eigenvalues.
        done = j + 1 >= k and bool(ok.all())
        if block == 0:
            done = done and not invariant
        else:
            done = done and _block_done(alphas, betas, block, beta_eff, tol, float(theta[top[-1]]))
        if full or done:
            converged = True
            break
        if j + 1 == steps:
            break
        if invariant:
            # An invariant Krylov space from a random start misses only extra copies of eigenvalues it
            # already holds; a fresh block orthogonal to it looks for them.
            q = random_unit(basis[: j + 1])
            betas.append(0.0)
            block = j + 1
        else:
            q = w / beta
            betas.append(beta)
    m = len(alphas)
    vectors = None
    if return_vectors:
        vectors = (torch.from_numpy(s[:, top].T.copy()).to(dtype=dtype, device=device) @ basis[:m]).contiguous()
    return Spectrum(
        eigenvalues=tuple(float(x) for x in theta[top]),
        residuals=tuple(float(x) for x in residual),
        converged=converged,
        matvecs=m,
        tol=tol,
        eigenvectors=vectors,
    )


def hutchinson_trace(
    matvec: MatVec,
    dim: int,
    *,
    probes: int = 100,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    matmat: MatVec | None = None,
    chunk: int = 64,
) -> TraceEstimate:
    r"""Estimate :math:`\mathrm{tr}(A)` as :math:`\frac1m \sum_{i=1}^m z_i^T A z_i` with Rademacher ``z_i``.

    Each :math:`z_i` has independent entries :math:`\pm 1`, so :math:`E[z^T A z] = \mathrm{tr}(A)` and
    :math:`\mathrm{Var}[z^T A z] = 2 \sum_{i \ne j} A_{ij}^2` for symmetric ``A``: exact for a diagonal matrix,
    noisier the more weight sits off the diagonal. The standard error reported is the sample standard deviation
    of the ``m`` terms over :math:`\sqrt m` (``nan`` for one probe); the error shrinks as :math:`1/\sqrt m`, so
    a relative error ``r`` at ``c`` standard errors needs :math:`m \ge c^2 \mathrm{Var} / (r\,\mathrm{tr} A)^2`.

    Args:
        matvec: ``v -> A v`` for a 1-D tensor ``v`` of length ``dim``.
        dim: the dimension of the operator, >= 1.
        probes: the number ``m`` of probe vectors (one product each), >= 1.
        seed: seed of the probes; the probes drawn depend on it and on ``chunk``.
        dtype, device: of the probe vectors.
        matmat: optional ``V -> (A v_i)_i`` on a ``(c, dim)`` block of rows, used instead of ``matvec``.
        chunk: rows per ``matmat`` call, >= 1.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> hutchinson_trace(lambda v: A @ v, 3, probes=4).value
        6.0
    """
    dim = check_int("hutchinson_trace", "dim", dim)
    probes = check_int("hutchinson_trace", "probes", probes)
    chunk = check_int("hutchinson_trace", "chunk", chunk)
    gen = torch.Generator().manual_seed(seed)
    terms: list[Tensor] = []
    done = 0
    while done < probes:
        c = min(chunk, probes - done) if matmat is not None else 1
        z = (torch.randint(0, 2, (c, dim), generator=gen) * 2 - 1).to(dtype=dtype, device=device)
        az = matmat(z) if matmat is not None else matvec(z[0])[None]
        terms.append((z * az.to(dtype)).sum(1).to(torch.float64).cpu())
        done += c
    values = torch.cat(terms)
    stderr = float(values.std(correction=1) / math.sqrt(probes)) if probes > 1 else math.nan
    return TraceEstimate(value=float(values.mean()), stderr=stderr, probes=probes)
