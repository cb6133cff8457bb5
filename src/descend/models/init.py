"""Initialisation schemes for the weights of linear and convolutional layers.

For a layer with ``fan_in`` inputs and ``fan_out`` outputs (for a convolution, channels times the kernel's size), the weight :math:`W` is drawn as

- ``"he"`` (Kaiming, for ReLU-like activations): :math:`W_{ij} \\sim \\mathcal N(0, 2/\\text{fan\\_in})`;
- ``"xavier"`` (Glorot, for tanh/sigmoid and linear models):
  :math:`W_{ij} \\sim \\mathcal U(-a, a)`, :math:`a = \\sqrt{6/(\\text{fan\\_in}+\\text{fan\\_out})}`;
- ``"normal"``: :math:`W_{ij} \\sim \\mathcal N(0, \\sigma^2)` with ``std`` = :math:`\\sigma` (default 0.01);
- ``"zeros"``: :math:`W = 0` (fine for convex models; it leaves hidden units identical in a network).

Biases always start at zero. Draws use torch's global generator, or ``generator`` when given.

Example:
    >>> import torch
    >>> from descend.models.init import initialize
    >>> layer = torch.nn.Linear(4, 3)
    >>> _ = initialize(layer, "zeros")
    >>> float(layer.weight.detach().abs().sum())
    0.0
"""

from __future__ import annotations

import math

import torch
from torch import nn

from descend.errors import ConfigError

__all__ = ["SCHEMES", "check_scheme", "initialize"]

SCHEMES = ("he", "xavier", "normal", "zeros")


def check_scheme(init: object, owner: str = "init") -> str:
    """Return ``init`` if it names a scheme, else raise ConfigError naming the accepted schemes."""
    if not isinstance(init, str) or init not in SCHEMES:
        raise ConfigError(f"{owner}: unknown initialisation {init!r}; expected one of {', '.join(SCHEMES)}")
    return init


def initialize(
    module: nn.Module,
    scheme: str = "xavier",
    *,
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialise every ``nn.Linear`` and ``nn.Conv1d``/``nn.Conv2d`` in ``module`` in place with ``scheme``;
    return ``module``. Normalisation layers keep torch's start (scale 1, shift 0)."""
    check_scheme(scheme)
    with torch.no_grad():
        for layer in module.modules():
            if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                continue
            w = layer.weight
            receptive = w[0, 0].numel()
            fan_out, fan_in = w.shape[0] * receptive, w.shape[1] * receptive
            if scheme == "he":
                w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            elif scheme == "xavier":
                a = math.sqrt(6.0 / (fan_in + fan_out))
                w.uniform_(-a, a, generator=generator)
            elif scheme == "normal":
                w.normal_(0.0, std, generator=generator)
            else:
                w.zero_()
            if layer.bias is not None:
                layer.bias.zero_()
    return module
