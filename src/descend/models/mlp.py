"""The multilayer perceptron: affine maps with a nonlinearity (and optional dropout) between them.

For hidden sizes :math:`h_1, \\dots, h_L` and activation :math:`\\phi`,

.. math:: a_0 = x,\\quad a_l = \\mathrm{dropout}(\\phi(W_l a_{l-1} + b_l)),\\quad f(x) = W_{L+1} a_L + b_{L+1}.

The output is raw (logits for classification, values for regression); the loss supplies the link.
``init="auto"`` picks He for ReLU-like activations and Xavier for tanh and sigmoid.

``norm="batch"`` or ``"layer"`` normalises each hidden layer before its activation. ``residual=True`` is the
tabular ResNet of Gorishniy et al. (2021): the input is mapped to a width :math:`d = h_1`, then each hidden size
:math:`h_l` is one pre-norm block with an inner width :math:`h_l`,

.. math:: a_l = a_{l-1} + \\mathrm{dropout}(W_l'\\, \\mathrm{dropout}(\\phi(W_l\\, \\mathrm{norm}(a_{l-1}) + b_l)) + b_l'),

and the head is :math:`f(x) = W\\, \\phi(\\mathrm{norm}(a_L)) + b` (``norm`` defaults to batch norm there).
Layers are named ``blockL.linear``, ``blockL.norm``, ... so gradient health reads by layer.

Example:
    >>> import torch
    >>> from descend.models import MLP
    >>> _ = torch.manual_seed(0)
    >>> MLP(4, 3, hidden=(8, 8), activation="tanh")(torch.zeros(5, 4)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from descend.errors import ConfigError
from descend.models.base import Model, register
from descend.models.blocks import BlockSequential, spans_of
from descend.models.init import SCHEMES, initialize

__all__ = ["ACTIVATIONS", "MLP", "NORMS"]

NORMS = ("none", "batch", "layer")

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
    """A feed-forward network with ``hidden`` layer sizes, ``activation``, ``dropout`` (a rate in [0, 1), after
    each hidden layer or inside each residual block), ``norm`` (none, batch, layer; ``"auto"``: batch with
    ``residual``, else none) and ``residual`` blocks."""

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | None = None,
        *,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "auto",
        norm: str = "auto",
        residual: bool = False,
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
        if not isinstance(residual, bool):
            raise ConfigError(f"MLP: invalid residual={residual!r}; expected true or false")
        if norm == "auto":
            norm = "batch" if residual else "none"
        if norm not in NORMS:
            raise ConfigError(f"MLP: unknown norm {norm!r}; expected auto or one of {', '.join(NORMS)}")
        if residual and not hidden:
            raise ConfigError("MLP: residual=True needs at least one hidden size (the blocks' widths)")
        self.norm = norm
        self.residual = residual
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.dropout = float(dropout)
        self.init = init
        self._maybe_build()

    def _norm(self, width: int) -> nn.Module:
        return {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}.get(self.norm, lambda _: nn.Identity())(width)

    def _build(self, in_features: int, out_features: int) -> nn.Module:
        if self.residual:
            return initialize(_ResidualMLP(self, in_features, out_features), self.init)
        if self.norm != "none":
            return initialize(self._normed(in_features, out_features), self.init)
        layers: list[nn.Module] = []
        spans = []  # each hidden layer (affine map, activation, dropout) is a block for gradient checkpointing
        width = in_features
        for h in self.hidden:
            start = len(layers)
            layers += [nn.Linear(width, h), ACTIVATIONS[self.activation]()]
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            spans.append((start, len(layers)))
            width = h
        layers.append(nn.Linear(width, out_features))
        return initialize(BlockSequential(*layers, spans=spans), self.init)

    def _normed(self, in_features: int, out_features: int) -> nn.Module:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = in_features
        for k, h in enumerate(self.hidden, start=1):
            block = [("linear", nn.Linear(width, h)), ("norm", self._norm(h)),
                     ("act", ACTIVATIONS[self.activation]())]  # fmt: skip
            if self.dropout > 0:
                block.append(("dropout", nn.Dropout(self.dropout)))
            layers[f"block{k}"] = nn.Sequential(OrderedDict(block))
            width = h
        layers["head"] = nn.Linear(width, out_features)
        return BlockSequential(layers, spans=spans_of(list(layers), lambda name: name.startswith("block")))

    def hyperparameters(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "activation": self.activation, "dropout": self.dropout, "init": self.init,
                "norm": self.norm, "residual": self.residual}  # fmt: skip


class _Block(nn.Module):
    """One pre-norm residual block: ``x + dropout(linear2(dropout(act(linear1(norm(x))))))``."""

    def __init__(self, owner: MLP, width: int, inner: int) -> None:
        super().__init__()
        self.norm = owner._norm(width)
        self.linear1 = nn.Linear(width, inner)
        self.act = ACTIVATIONS[owner.activation]()
        self.drop1 = nn.Dropout(owner.dropout)
        self.linear2 = nn.Linear(inner, width)
        self.drop2 = nn.Dropout(owner.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop2(self.linear2(self.drop1(self.act(self.linear1(self.norm(x))))))


class _ResidualMLP(nn.Module):
    def __init__(self, owner: MLP, in_features: int, out_features: int) -> None:
        super().__init__()
        width = owner.hidden[0]
        self.stem = nn.Linear(in_features, width)
        self.blocks = BlockSequential(OrderedDict((f"block{k}", _Block(owner, width, h))
                                                  for k, h in enumerate(owner.hidden, start=1)),
                                      spans=[(k, k + 1) for k in range(len(owner.hidden))])  # fmt: skip
        self.norm = owner._norm(width)
        self.act = ACTIVATIONS[owner.activation]()
        self.head = nn.Linear(width, out_features)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.act(self.norm(self.blocks(self.stem(x)))))
        return out
