"""The named optimizers: short chains with torch.optim's argument names and defaults, so they are drop-in.

``descend.optim.Adam(model.parameters(), lr=1e-3)`` is ``torch.optim.Adam(model.parameters(), lr=1e-3)``, written
as ``chain(maximize, add_decayed_weights, scale_by_adam, scale_by_learning_rate)``. Each accepts the keyword
``weight_decay_mask`` (None, ``"matrices"`` or a callable ``param -> bool``) to spare biases and normalisation
parameters from weight decay, and ``compile`` (see :class:`~descend.optim.chain.ChainOptimizer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor

from descend.optim.base import named_for
from descend.optim.chain import ChainOptimizer
from descend.optim.transforms import (
    add_decayed_weights,
    maximize,
    momentum,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
)

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "GradientDescent", "Momentum", "Nesterov", "RMSprop"]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]
LR = float | Tensor | Callable[[int], float]
Mask = Callable[[Tensor], bool] | str | None


class SGD(ChainOptimizer):
    """Stochastic gradient descent, with optional momentum (heavy-ball or Nesterov) and L2 weight decay.

    ``g ← −g`` if ``maximize``; ``g ← g + λ p``; ``b_1 = g``, ``b_t = μ b_{t−1} + (1 − τ) g``;
    ``d = g + μ b_t`` (Nesterov) or ``d = b_t`` (μ > 0) or ``d = g`` (μ = 0); ``p ← p − α d``.
    ``α = lr`` (>= 0), ``μ = momentum`` in [0, 1), ``τ = dampening`` in [0, 1], ``λ = weight_decay`` (>= 0).
    With μ = 0 this is plain gradient descent ``θ ← θ − α ∇J(θ)``. Same numbers as ``torch.optim.SGD``.

    >>> import torch; w = torch.nn.Parameter(torch.tensor([1.0])); opt = SGD([w], lr=0.1)
    >>> (w ** 2).sum().backward(); _ = opt.step(); w.data
    tensor([0.8000])
    """

    def __init__(self, params: Params, lr: LR = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 weight_decay_mask: Mask = None, compile: bool | str = "auto") -> None:
        with _named(type(self).__name__):
            rules = [_maximize(maximize), add_decayed_weights(weight_decay, weight_decay_mask),
                     _momentum(momentum, dampening, nesterov), scale_by_learning_rate(lr)]
        super().__init__(params, rules, name=type(self).__name__, compile=compile)


GradientDescent = SGD


class Momentum(SGD):
    """Gradient descent with heavy-ball momentum (μ = 0.9 by default): :class:`SGD` with ``momentum`` set.

    >>> import torch; w = torch.nn.Parameter(torch.tensor([1.0])); opt = Momentum([w], lr=0.1)
    >>> for _ in range(2): opt.zero_grad(); (w ** 2).sum().backward(); _ = opt.step()
    >>> round(w.item(), 4)   # 1 − 0.2 = 0.8, then 0.8 − 0.1·(0.9·2 + 1.6) = 0.46
    0.46
    """

    def __init__(self, params: Params, lr: LR = 1e-3, momentum: float = 0.9, dampening: float = 0.0,
                 weight_decay: float = 0.0, *, maximize: bool = False, weight_decay_mask: Mask = None,
                 compile: bool | str = "auto") -> None:
        super().__init__(params, lr, momentum, dampening, weight_decay, False, maximize=maximize,
                         weight_decay_mask=weight_decay_mask, compile=compile)


class Nesterov(SGD):
    """Gradient descent with Nesterov momentum (μ = 0.9 by default): :class:`SGD` with ``nesterov=True``.

    >>> import torch; w = torch.nn.Parameter(torch.tensor([1.0])); opt = Nesterov([w], lr=0.1)
    >>> (w ** 2).sum().backward(); _ = opt.step(); round(w.item(), 4)   # 1 − 0.1·(2 + 0.9·2)
    0.62
    """

    def __init__(self, params: Params, lr: LR = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 *, maximize: bool = False, weight_decay_mask: Mask = None, compile: bool | str = "auto") -> None:
        super().__init__(params, lr, momentum, 0.0, weight_decay, True, maximize=maximize,
                         weight_decay_mask=weight_decay_mask, compile=compile)


class Adagrad(ChainOptimizer):
    """AdaGrad: per-coordinate steps shrinking with the sum of squared gradients.

    ``g ← −g`` if ``maximize``; ``g ← g + λ p``; ``G_t = G_{t−1} + g²`` (``G_0 = initial_accumulator_value``);
    ``p ← p − α / (1 + (t − 1) η) · g / (√G_t + ε)``. ``α = lr``, ``η = lr_decay``, ``ε = eps``,
    ``λ = weight_decay``, all >= 0. Same numbers as ``torch.optim.Adagrad``, with one difference by design: a
    param group's own ``initial_accumulator_value`` sets that group's ``G_0`` (torch fills every group's
    accumulator with the constructor's value and ignores the group's), as every other per-group setting works.

    >>> import torch; w = torch.nn.Parameter(torch.tensor([1.0])); opt = Adagrad([w], lr=0.1)
    >>> (w ** 2).sum().backward(); _ = opt.step(); w.data   # each coordinate moves by α on the first step
    tensor([0.9000])
    """

    def __init__(self, params: Params, lr: LR = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False,
                 weight_decay_mask: Mask = None, compile: bool | str = "auto") -> None:
        with _named(type(self).__name__):
            rules = [_maximize(maximize), add_decayed_weights(weight_decay, weight_decay_mask),
                     scale_by_adagrad(lr_decay, initial_accumulator_value, eps), scale_by_learning_rate(lr)]
        super().__init__(params, rules, name=type(self).__name__, compile=compile)


class RMSprop(ChainOptimizer):
    """RMSprop: steps divided by a running root-mean-square of the gradient, optionally centered, with momentum.

    ``g ← −g`` if ``maximize``; ``g ← g + λ p``; ``v_t = ρ v_{t−1} + (1 − ρ) g²``; ``d = g / (√v_t + ε)`` (centered:
    ``√(v_t − m_t²)`` with ``m_t = ρ m_{t−1} + (1 − ρ) g``); with momentum ``b_t = μ b_{t−1} + d``, ``d = b_t``;
    ``p ← p − α d``. ``α = lr`` (>= 0), ``ρ = alpha`` in [0, 1], ``ε = eps`` (>= 0), ``μ = momentum`` in [0, 1).
    Same numbers as ``torch.optim.RMSprop``.

    >>> import torch; w = torch.nn.Parameter(torch.tensor([1.0])); opt = RMSprop([w], lr=0.01, alpha=0.0)
    >>> (w ** 2).sum().backward(); _ = opt.step(); w.data
    tensor([0.9900])
    """

    def __init__(self, params: Params, lr: LR = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False, weight_decay_mask: Mask = None, compile: bool | str = "auto") -> None:
        with _named(type(self).__name__):
            rules = [_maximize(maximize), add_decayed_weights(weight_decay, weight_decay_mask),
                     scale_by_rms(alpha, eps, centered), _momentum(momentum, 0.0, False), scale_by_learning_rate(lr)]
        super().__init__(params, rules, name=type(self).__name__, compile=compile)


class Adam(ChainOptimizer):
    """Adam: bias-corrected first and second moments, optionally AMSGrad, with L2 weight decay.

    ``g ← −g`` if ``maximize``; ``g ← g + λ p``; ``m_t = β1 m_{t−1} + (1 − β1) g``;
    ``v_t = β2 v_{t−1} + (1 − β2) g²``; ``p ← p − α · (m_t / (1 − β1^t)) / (√(v_t / (1 − β2^t)) + ε)``
    (AMSGrad uses the running maximum of ``v_t``). ``α = lr`` (>= 0), ``(β1, β2) = betas`` in [0, 1),
    ``ε = eps`` (>= 0), ``λ = weight_decay`` (>= 0). Same numbers as ``torch.optim.Adam``.

    >>> import torch; w = torch.nn.Parameter(torch.tensor([1.0])); opt = Adam([w], lr=0.1)
    >>> (w ** 2).sum().backward(); _ = opt.step(); w.data   # the first step moves each coordinate by ≈ α
    tensor([0.9000])
    """

    decoupled = False

    def __init__(self, params: Params, lr: LR = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, weight_decay_mask: Mask = None, compile: bool | str = "auto") -> None:
        with _named(type(self).__name__):
            decay = add_decayed_weights(weight_decay, weight_decay_mask)
            if self.decoupled:
                rules = [_maximize(maximize), scale_by_adam(betas, eps, amsgrad), decay, scale_by_learning_rate(lr)]
            else:
                rules = [_maximize(maximize), decay, scale_by_adam(betas, eps, amsgrad), scale_by_learning_rate(lr)]
        super().__init__(params, rules, name=type(self).__name__, compile=compile)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default λ = 0.01).

    ``p ← p − α (û_t + λ p)`` where ``û_t`` is Adam's bias-corrected step (see :class:`Adam`), i.e. the decay
    is not scaled by the adaptive denominator. Same numbers as ``torch.optim.AdamW``.

    >>> import torch; w = torch.nn.Parameter(torch.tensor([1.0])); opt = AdamW([w], lr=0.1, weight_decay=0.5)
    >>> (w ** 2).sum().backward(); _ = opt.step(); round(w.item(), 4)   # 1 − 0.1·(1 + 0.5)
    0.85
    """

    decoupled = True

    def __init__(self, params: Params, lr: LR = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, weight_decay_mask: Mask = None, compile: bool | str = "auto") -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         weight_decay_mask=weight_decay_mask, compile=compile)


@contextmanager
def _named(owner: str) -> Iterator[None]:
    """Bad arguments found while building the rules are reported under the optimizer's name."""
    try:
        yield
    except (ValueError, TypeError) as e:
        raise named_for(e, owner) from None


def _maximize(value: bool) -> maximize:
    return maximize(value)


def _momentum(mu: float, dampening: float, nesterov: bool) -> momentum:
    return momentum(mu, dampening, nesterov)
