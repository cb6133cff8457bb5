"""Curvature of a loss: Hessian-vector products, top eigenvalues, trace and sharpness.

Everything here rests on one product, :math:`v \\mapsto H v` with :math:`H = \\nabla^2_\\theta L(\\theta)`,
computed by double backward (:math:`H v = \\nabla_\\theta (\\nabla_\\theta L \\cdot v)`) through any
``nn.Module`` and any loss closure; the Hessian itself is never formed. On several batches the operator is the
mean of the per-batch Hessians, :math:`\\bar H = \\frac1B \\sum_b H_b` (weight batches equally: give them equal
sizes for the full-data Hessian).

- :func:`hessian_vector_product` and :class:`HessianOperator`: the product.
- :func:`top_eigenvalue`, :func:`top_eigenvalues`: largest *algebraic* eigenvalues by Lanczos
  (:func:`~descend.inspect.spectral.lanczos`), with tolerance, products used and a convergence flag.
- :func:`hessian_trace`: Hutchinson's estimate with its standard error.
- :func:`sharpness`, :func:`preconditioned_sharpness`: the top eigenvalue against the stability threshold of
  gradient descent (:math:`2/\\eta`) or of Adam (:math:`(2+2\\beta_1)/((1-\\beta_1)\\eta)` for the
  preconditioned Hessian :math:`P^{-1/2} H P^{-1/2}`).

The loss closure decides the model's mode: call ``model.eval()`` first if dropout or batch norm would make the
loss random. Gradients are taken with ``torch.autograd.grad``, so ``.grad`` fields are never touched.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    >>> loss = lambda: w[0] ** 2 - 3 * w[1] ** 2          # Hessian diag(2, -6)
    >>> top_eigenvalue([w], loss).top                     # the largest algebraic, not -6
    2.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from descend.errors import ConfigError
from descend.inspect._checks import check_number
from descend.inspect.spectral import Spectrum, TraceEstimate, hutchinson_trace, lanczos

__all__ = [
    "HessianOperator",
    "Sharpness",
    "adam_preconditioner",
    "hessian_trace",
    "hessian_vector_product",
    "preconditioned_sharpness",
    "sharpness",
    "top_eigenvalue",
    "top_eigenvalues",
]

Params = nn.Module | Iterable[Tensor]
LossFn = Callable[..., Tensor]


def _trainable(params: Params) -> list[Tensor]:
    ps = list(params.parameters() if isinstance(params, nn.Module) else params)
    ps = [p for p in ps if p.requires_grad]
    if not ps:
        raise ConfigError("curvature: no parameter requires grad; expected a model or parameters to differentiate")
    return ps


def _second_derivative(loss: Tensor, params: list[Tensor], vs: Sequence[Tensor]) -> list[Tensor]:
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    return _hvp_from_grads(grads, params, vs)


def _hvp_from_grads(
    grads: Sequence[Tensor | None], params: list[Tensor], vs: Sequence[Tensor], *, retain: bool = False
) -> list[Tensor]:
    # A gradient that does not depend on the parameters (a linear loss) has a zero Hessian block.
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    if not live:
        return [torch.zeros_like(p) for p in params]
    dot = torch.stack([(grads[i] * vs[i]).sum() for i in live]).sum()  # type: ignore[operator]
    hv = torch.autograd.grad(dot, params, retain_graph=retain, allow_unused=True)
    return [h.detach() if h is not None else torch.zeros_like(p) for h, p in zip(hv, params)]


class HessianOperator:
    """The Hessian of a loss at the parameters' current values, as a product ``v -> H v`` on flat vectors.

    Args:
        params: an ``nn.Module`` or an iterable of tensors; those with ``requires_grad`` are the variables.
        loss_fn: with ``batches=None``, ``loss_fn()`` returns the scalar loss; otherwise ``loss_fn(batch)``
            returns the loss on one batch.
        batches: optional iterable of batches (materialised once); the operator is then the mean of the
            per-batch Hessians.

    With one closure the gradient graph is built once and reused by every product (one backward each);
    with batches every product re-runs forward, backward and double backward per batch. Build a new operator
    after the parameters change.

    Example:
        >>> model = torch.nn.Linear(3, 1).double()
        >>> x = torch.randn(8, 3, dtype=torch.float64)
        >>> op = HessianOperator(model, lambda: model(x).pow(2).mean())
        >>> op(torch.ones(op.dim, dtype=torch.float64)).shape
        torch.Size([4])
    """

    def __init__(self, params: Params, loss_fn: LossFn, *, batches: Iterable[Any] | None = None) -> None:
        self.params = _trainable(params)
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.loss_fn = loss_fn
        self.batches = None if batches is None else list(batches)
        if self.batches is not None and not self.batches:
            raise ConfigError("HessianOperator: invalid batches=[] (empty); expected at least one batch")
        self._grads: tuple[Tensor | None, ...] | None = None
        if self.batches is None:
            with torch.enable_grad():
                self._grads = torch.autograd.grad(loss_fn(), self.params, create_graph=True, allow_unused=True)

    def unflatten(self, v: Tensor) -> list[Tensor]:
        """Split a flat vector into tensors shaped like the parameters."""
        out, i = [], 0
        for p in self.params:
            out.append(v[i : i + p.numel()].view_as(p).to(p.dtype))
            i += p.numel()
        return out

    def matmat(self, vs: Tensor) -> Tensor:
        """``H V^T`` row by row: for ``(m, dim)`` rows ``v_i``, the ``(m, dim)`` rows ``H v_i``, in one vmapped pass."""
        if self._grads is None:
            return torch.stack([self(v) for v in vs])
        live = [i for i, g in enumerate(self._grads) if g is not None and g.requires_grad]
        out = torch.zeros(vs.shape[0], self.dim, dtype=self.dtype, device=self.device)
        if live:
            grads = [g for g in self._grads if g is not None and g.requires_grad]
            cols = [v.reshape(vs.shape[0], *p.shape) for v, p in zip(self._split(vs), self.params)]
            hv = torch.autograd.grad(
                grads, self.params, grad_outputs=[cols[i] for i in live], retain_graph=True,
                allow_unused=True, is_grads_batched=True,
            )
            out = torch.cat(
                [h.reshape(vs.shape[0], -1) if h is not None else torch.zeros_like(v) for h, v in zip(hv, self._split(vs))],
                dim=1,
            ).detach()
        return out

    def _split(self, vs: Tensor) -> list[Tensor]:
        return list(vs.to(self.dtype).split([p.numel() for p in self.params], dim=1))

    def __call__(self, v: Tensor) -> Tensor:
        """``H v`` for a flat vector ``v`` of length ``dim``."""
        vs = self.unflatten(v)
        if self._grads is not None:
            hv = _hvp_from_grads(self._grads, self.params, vs, retain=True)
        else:
            assert self.batches is not None
            hv = [torch.zeros_like(p) for p in self.params]
            with torch.enable_grad():
                for batch in self.batches:
                    for acc, h in zip(hv, _second_derivative(self.loss_fn(batch), self.params, vs)):
                        acc.add_(h, alpha=1.0 / len(self.batches))
        return torch.cat([h.reshape(-1) for h in hv])


def hessian_vector_product(
    params: Params, loss_fn: LossFn, vector: Sequence[Tensor], *, batches: Iterable[Any] | None = None
) -> list[Tensor]:
    """``H v`` with ``v`` given per parameter (shaped like each trainable parameter), returned the same way.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> hessian_vector_product([w], lambda: (w ** 3).sum(), [torch.ones(2)])   # H = diag(6 w)
        [tensor([ 6., 12.])]
    """
    op = HessianOperator(params, loss_fn, batches=batches)
    vector = list(vector)
    if len(vector) != len(op.params) or any(v.shape != p.shape for v, p in zip(vector, op.params)):
        shapes = [tuple(p.shape) for p in op.params]
        raise ConfigError(f"hessian_vector_product: invalid vector shapes; expected one tensor per parameter {shapes}")
    return op.unflatten(op(torch.cat([v.reshape(-1).to(op.dtype) for v in vector])))


def top_eigenvalues(
    params: Params,
    loss_fn: LossFn,
    k: int = 1,
    *,
    batches: Iterable[Any] | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
    seed: int = 0,
    return_vectors: bool = False,
) -> Spectrum:
    """The ``k`` largest algebraic eigenvalues of the loss Hessian, by Lanczos.

    Stops when each Ritz residual ``||H y - theta y||`` is at most ``tol * |theta|`` (then some eigenvalue lies
    within that distance, and usually far closer), or after ``max_iter`` Hessian-vector products; the result
    says which (``converged``) and how many products it used. See :func:`~descend.inspect.spectral.lanczos`.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        >>> s = top_eigenvalues([w], lambda: (torch.tensor([3.0, 1.0, 2.0]) * w ** 2).sum(), k=2)
        >>> [round(x, 9) for x in s.eigenvalues]
        [6.0, 4.0]
    """
    op = HessianOperator(params, loss_fn, batches=batches)
    return lanczos(
        op, op.dim, k, tol=tol, max_iter=max_iter, seed=seed, dtype=op.dtype, device=op.device,
        return_vectors=return_vectors,
    )


def top_eigenvalue(
    params: Params,
    loss_fn: LossFn,
    *,
    batches: Iterable[Any] | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
    seed: int = 0,
) -> Spectrum:
    """The largest algebraic eigenvalue of the loss Hessian (``.top`` of the result); see :func:`top_eigenvalues`."""
    return top_eigenvalues(params, loss_fn, 1, batches=batches, tol=tol, max_iter=max_iter, seed=seed)


def hessian_trace(
    params: Params,
    loss_fn: LossFn,
    *,
    batches: Iterable[Any] | None = None,
    probes: int = 100,
    seed: int = 0,
    chunk: int = 64,
) -> TraceEstimate:
    """Hutchinson's estimate of ``tr(H)`` with ``probes`` Rademacher probes, and its standard error.

    With one loss closure, ``chunk`` probes share one vmapped double backward (``is_grads_batched``). See :func:`~descend.inspect.spectral.hutchinson_trace` for the variance.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        >>> hessian_trace([w], lambda: (torch.tensor([3.0, 1.0, 2.0]) * w ** 2).sum(), probes=10).value
        12.0
    """
    op = HessianOperator(params, loss_fn, batches=batches)
    return hutchinson_trace(
        op, op.dim, probes=probes, seed=seed, dtype=op.dtype, device=op.device, matmat=op.matmat, chunk=chunk
    )


@dataclass(frozen=True)
class Sharpness:
    """A top Hessian eigenvalue set against the step size's stability threshold.

    Attributes:
        value: the top algebraic eigenvalue (of ``H``, or of ``P^{-1/2} H P^{-1/2}`` when preconditioned).
        threshold: where the iteration on the local quadratic becomes unstable: ``2/lr`` for gradient
            descent, ``(2 + 2 momentum)/lr`` with heavy-ball momentum, ``(2 + 2 beta1)/((1 - beta1) lr)`` for Adam.
        ratio: ``value / threshold``; above 1 the step overshoots along the top eigenvector.
        spectrum: the Lanczos result behind ``value`` (tolerance, products, convergence).
    """

    value: float
    threshold: float
    spectrum: Spectrum

    @property
    def ratio(self) -> float:
        return self.value / self.threshold


def sharpness(
    params: Params,
    loss_fn: LossFn,
    lr: float,
    *,
    momentum: float = 0.0,
    batches: Iterable[Any] | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
    seed: int = 0,
) -> Sharpness:
    """The top Hessian eigenvalue ``lambda_max`` against ``2/lr`` (``(2+2 momentum)/lr`` with heavy-ball momentum).

    On a quadratic, gradient descent with step ``lr`` diverges along the top eigenvector once
    ``lr * lambda_max > 2``; full-batch training tends to raise ``lambda_max`` until it hovers at that edge
    (Cohen et al., 2021, "Gradient descent on neural networks typically occurs at the edge of stability").

    Args:
        lr: learning rate, > 0.
        momentum: heavy-ball momentum in [0, 1) (torch.optim.SGD's ``momentum`` with ``dampening=0``).

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> s = sharpness([w], lambda: 5 * (w ** 2).sum(), lr=0.1)    # H = 10 I
        >>> round(s.value, 9), s.threshold, round(s.ratio, 9)
        (10.0, 20.0, 0.5)
    """
    lr = check_number("sharpness", "lr", lr, lo_open=True)
    momentum = check_number("sharpness", "momentum", momentum, 0.0, 1.0)
    if momentum == 1.0:
        raise ConfigError(f"sharpness: invalid momentum={momentum!r}; expected a number in [0, 1)")
    spec = top_eigenvalue(params, loss_fn, batches=batches, tol=tol, max_iter=max_iter, seed=seed)
    return Sharpness(value=spec.top, threshold=(2.0 + 2.0 * momentum) / lr, spectrum=spec)


def _one_value(optimizer: torch.optim.Optimizer, key: str) -> Any:
    values = {repr(g[key]) for g in optimizer.param_groups}
    if len(values) != 1:
        raise ConfigError(f"preconditioned_sharpness: param groups differ in {key}: {sorted(values)}; expected one value")
    return optimizer.param_groups[0][key]


def adam_preconditioner(optimizer: torch.optim.Optimizer) -> tuple[list[Tensor], list[Tensor]]:
    r"""The parameters of an Adam-like optimizer and the diagonal ``P`` its next step divides by.

    Reads, for every parameter ``p`` of every param group, ``state[p]["exp_avg_sq"]`` (:math:`v_t`, the EMA of
    squared gradients) and ``state[p]["step"]`` (:math:`t`, a number or 0-d tensor), and ``betas`` and ``eps``
    from the param group, and returns

    .. math:: P = \sqrt{v_t / (1 - \beta_2^t)} + \epsilon,

    the denominator of torch.optim.Adam / AdamW (and of descend's Adam, which keeps the same state names).
    Parameters without ``requires_grad`` are skipped.

    Raises:
        ConfigError: if a parameter has no ``exp_avg_sq`` state yet (take one step first) or the optimizer is
            not Adam-like.
    """
    params: list[Tensor] = []
    diag: list[Tensor] = []
    for gi, group in enumerate(optimizer.param_groups):
        if "betas" not in group or "eps" not in group:
            raise ConfigError(
                f"adam_preconditioner: param group {gi} has no 'betas'/'eps'; expected an Adam-like optimizer"
            )
        beta2, eps = float(group["betas"][1]), float(group["eps"])
        for pi, p in enumerate(group["params"]):
            if not p.requires_grad:
                continue
            state = optimizer.state.get(p, {})
            if "exp_avg_sq" not in state or "step" not in state:
                raise ConfigError(
                    f"adam_preconditioner: parameter {pi} of group {gi} has no 'exp_avg_sq'/'step' state; "
                    "expected an Adam-like optimizer that has taken at least one step"
                )
            t = float(state["step"])
            v_hat = state["exp_avg_sq"].detach() / (1.0 - beta2**t)
            params.append(p)
            diag.append(v_hat.sqrt() + eps)
    return params, diag


def preconditioned_sharpness(
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    batches: Iterable[Any] | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
    seed: int = 0,
) -> Sharpness:
    r"""Top eigenvalue of :math:`P^{-1/2} H P^{-1/2}` for an Adam-like optimizer, against its threshold.

    Adam steps :math:`\theta \leftarrow \theta - \eta\, \hat m / P` with ``P`` from :func:`adam_preconditioner`;
    on a quadratic with ``P`` frozen this is heavy-ball-like momentum on :math:`P^{-1} H`, whose eigenvalues are
    those of the symmetric :math:`P^{-1/2} H P^{-1/2}`, and it is stable while they stay below
    :math:`(2 + 2\beta_1) / ((1 - \beta_1)\eta)` (38/lr for :math:`\beta_1 = 0.9`; Cohen et al., 2022,
    "Adaptive gradient methods at the edge of stability"). All param groups must share ``lr`` and ``betas``.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
        >>> loss = lambda: (torch.tensor([1.0, 4.0], dtype=torch.float64) * w ** 2).sum()
        >>> opt = torch.optim.Adam([w], lr=0.01)
        >>> opt.zero_grad(); loss().backward(); opt.step()
        >>> s = preconditioned_sharpness(opt, loss)
        >>> round(s.threshold, 6)
        3800.0
    """
    params, diag = adam_preconditioner(optimizer)
    lr = check_number("preconditioned_sharpness", "lr", float(_one_value(optimizer, "lr")), lo_open=True)
    beta1 = float(_one_value(optimizer, "betas")[0])
    op = HessianOperator(params, loss_fn, batches=batches)
    scale = torch.cat([d.reshape(-1) for d in diag]).to(op.dtype).rsqrt()
    spec = lanczos(
        lambda v: scale * op(scale * v), op.dim, 1, tol=tol, max_iter=max_iter, seed=seed,
        dtype=op.dtype, device=op.device,
    )
    return Sharpness(value=spec.top, threshold=(2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr), spectrum=spec)
