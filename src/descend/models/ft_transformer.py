"""The FT-Transformer for tables (Gorishniy et al., "Revisiting Deep Learning Models for Tabular Data", 2021).

Each of the :math:`F` features becomes a token through its own linear embedding, :math:`t_j = x_j w_j + b_j`
(:math:`w_j, b_j \\in \\mathbb R^d`, ``dim`` = :math:`d`); a learned CLS token :math:`t_0` joins them, and
``layers`` pre-norm transformer blocks (the GPT's own blocks, without the causal mask: every token attends to
every feature) mix the :math:`F + 1` tokens. The head reads the CLS token alone:
:math:`\\hat y = W \\, \\mathrm{ReLU}(\\mathrm{LN}(h_0)) + c`. Categories reach it one-hot encoded by descend's
table preparation, one token per indicator column.

Initialisation as in the paper's reference code: :math:`w_j, b_j, t_0 \\sim \\mathcal U(-1/\\sqrt d, 1/\\sqrt d)`,
the blocks' linear layers torch's default.

Example:
    >>> import torch
    >>> model = FTTransformer(5, 3, layers=1, dim=16, heads=4)
    >>> model(torch.zeros(7, 5)).shape
    torch.Size([7, 3])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from descend.errors import ConfigError
from descend.models.base import Model, register
from descend.models.blocks import Checkpointable
from descend.models.transformer import Block

__all__ = ["FTTransformer"]


class FeatureTokenizer(nn.Module):
    """Feature :math:`j` of a row to the token :math:`x_j w_j + b_j`, with the CLS token first."""

    def __init__(self, features: int, dim: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(features, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(features, dim).uniform_(-bound, bound))
        self.cls = nn.Parameter(torch.empty(1, 1, dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.unsqueeze(-1) * self.weight + self.bias  # (batch, F, d)
        return torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)


class Network(nn.Module, Checkpointable):
    def __init__(self, features: int, outputs: int, layers: int, heads: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.tokenizer = FeatureTokenizer(features, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, True, causal=False) for _ in range(layers))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, outputs))

    def n_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        h = self.tokenizer(x)
        for block in self.blocks:
            h = self.run_block(block, h)
        out: Tensor = self.head(h[:, 0])
        return out


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"FTTransformer: invalid {name}={value!r}; expected an int >= 1")
    return value


@register
class FTTransformer(Model):
    """The FT-Transformer (see the module docstring): ``layers`` blocks of width ``dim`` (divisible by ``heads``),
    ``dropout`` in [0, 1) on attention weights and each block's two residual branches."""

    def __init__(self, in_features: int | None = None, out_features: int | None = None, *, layers: int = 3,
                 dim: int = 64, heads: int = 8, dropout: float = 0.1) -> None:  # fmt: skip
        super().__init__(in_features, out_features)
        self.layers, self.dim, self.heads = _positive("layers", layers), _positive("dim", dim), _positive("heads", heads)
        if dim % heads:
            raise ConfigError(f"FTTransformer: invalid dim={dim} with heads={heads}; expected dim divisible by heads")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"FTTransformer: invalid dropout={dropout!r}; expected a number in [0, 1)")
        self.dropout = float(dropout)
        self._maybe_build()

    def _build(self, in_features: int, out_features: int) -> nn.Module:
        return Network(in_features, out_features, self.layers, self.heads, self.dim, self.dropout)

    def hyperparameters(self) -> dict[str, Any]:
        return {"layers": self.layers, "dim": self.dim, "heads": self.heads, "dropout": self.dropout}
