"""The multilayer perceptron: affine maps with a nonlinearity (and optional dropout) between them.

For hidden sizes :math:`h_1, \\dots, h_L` and activation :math:`\\phi`,

.. math:: a_0 = x,\\quad a_l = \\mathrm{dropout}(\\phi(W_l a_{l-1} + b_l)),\\quad f(x) = W_{L+1} a_L + b_{L+1}.

The output is raw (logits for classification, values for regression); the loss supplies the link.
``init="auto"`` picks He for ReLU-like activations and Xavier for tanh and sigmoid.

Example:
    >>> import torch
    >>> from descend.models import MLP
    >>> _ = torch.manual_seed(0)
    >>> MLP(4, 3, hidden=(8, 8), activation="tanh")(torch.zeros(5, 4)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from descend.errors import ConfigError
from descend.models.base import Model, register
from descend.models.init import SCHEMES, initialize

__all__ = ["ACTIVATIONS", "MLP"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
_RELU_LIKE = ("relu", "leaky_relu", "elu", "gelu")


@register
class MLP(Model):
    """A feed-forward network with ``hidden`` layer sizes, ``activation`` and ``dropout`` (a rate in [0, 1))."""

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | None = None,
        *,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "auto",
    ) -> None:
        super().__init__(in_features, out_features)
        if isinstance(hidden, int):
            hidden = (hidden,)
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ConfigError(f"MLP: invalid hidden={hidden!r}; expected a sequence of positive ints, e.g. (64, 32)")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"MLP: unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"MLP: invalid dropout={dropout!r}; expected a number in [0, 1)")
        if init == "auto":
            init = "he" if activation in _RELU_LIKE else "xavier"
        if init not in SCHEMES:
            raise ConfigError(f"MLP: unknown initialisation {init!r}; expected auto or one of {', '.join(SCHEMES)}")
        if init == "zeros" and hidden:
            raise ConfigError(
                "MLP: init='zeros' leaves every hidden unit identical, so they never differ; expected he, xavier or normal"
            )
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.dropout = float(dropout)
        self.init = init
        self._maybe_build()

    def _build(self, in_features: int, out_features: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[self.activation]()]
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        return initialize(nn.Sequential(*layers), self.init)

    def hyperparameters(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "activation": self.activation, "dropout": self.dropout, "init": self.init}
