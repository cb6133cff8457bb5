"""A decoder-only transformer (GPT) for character- or byte-level language modelling.

Token and learned position embeddings, ``layers`` pre-norm blocks
:math:`x \\leftarrow x + \\mathrm{Attn}(\\mathrm{LN}(x))`, :math:`x \\leftarrow x + \\mathrm{MLP}(\\mathrm{LN}(x))`
(causal multi-head self-attention through ``torch.nn.functional.scaled_dot_product_attention``, an MLP of
``4 * dim`` GELU units), a final layer norm, and logits :math:`h W_e^\\top` through the token embedding
:math:`W_e` itself (weight tying). Initialisation as in GPT-2: every weight :math:`\\mathcal N(0, 0.02^2)`, the
projections back into the residual stream :math:`\\mathcal N(0, (0.02/\\sqrt{2L})^2)`, biases zero.

Input: token ids ``(batch, T)`` with ``T <= block``; output: logits ``(batch, T, vocab)``. The vocabulary size
is the model's ``in_features`` and ``out_features`` (``fit`` sets both from the corpus).

Example:
    >>> import torch
    >>> model = GPT(vocab=11, layers=2, heads=2, dim=16, block=8)
    >>> model(torch.zeros(3, 5, dtype=torch.long)).shape
    torch.Size([3, 5, 11])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from descend.errors import ConfigError
from descend.models.base import Model, register
from descend.models.blocks import Checkpointable

__all__ = ["GPT", "Block", "generate"]


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``causal``: a position attends only to itself and earlier ones (the GPT), else
    to every position (the FT-Transformer's feature tokens)."""

    def __init__(self, dim: int, heads: int, dropout: float, bias: bool, *, causal: bool = True) -> None:
        super().__init__()
        self.heads, self.dropout, self.causal = heads, dropout, causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        if not self.training and torch.is_grad_enabled():
            # evaluated for its derivatives (the sharpness monitor's Hessian-vector products differentiate twice):
            # the fused CPU kernel has no second derivative, the reference implementation does
            with sdpa_kernel(SDPBackend.MATH):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=self.causal)  # fmt: skip
        return self.drop(self.proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class Block(nn.Module):
    """A pre-norm transformer block: :math:`x + \\mathrm{Attn}(\\mathrm{LN}(x))`, then
    :math:`x + \\mathrm{MLP}(\\mathrm{LN}(x))` (``4 * dim`` GELU units)."""

    def __init__(self, dim: int, heads: int, dropout: float, bias: bool, *, causal: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, bias=bias)
        self.attn = SelfAttention(dim, heads, dropout, bias, causal=causal)
        self.norm2 = nn.LayerNorm(dim, bias=bias)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim, bias=bias), nn.GELU(), nn.Linear(4 * dim, dim, bias=bias),
                                 nn.Dropout(dropout))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Network(nn.Module, Checkpointable):
    def __init__(self, vocab: int, layers: int, heads: int, dim: int, block: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.block = block
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(block, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, bias) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, bias=bias)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():  # residual projections: the stream's variance does not grow with depth
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))

    def n_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.shape[1]
        if self.block < T:
            raise ConfigError(f"GPT: a sequence of {T} tokens is longer than the model's block={self.block}; expected "
                              f"at most {self.block} tokens")  # fmt: skip
        x = self.drop(self.embed(idx) + self.position.weight[:T])
        for block_ in self.blocks:
            x = self.run_block(block_, x)
        # tied: the token embedding scores the outputs too (one matrix, one entry in the state dict)
        return F.linear(self.norm(x), self.embed.weight)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"GPT: invalid {name}={value!r}; expected an int >= 1")
    return value


@register
class GPT(Model):
    """A decoder-only transformer language model (see the module docstring).

    Args:
        vocab: the vocabulary size (``in_features`` = ``out_features``); None lets ``fit`` take it from the corpus.
        layers: transformer blocks. heads: attention heads (``dim`` divisible by it). dim: the residual width.
        block: the longest context in tokens (and the training blocks' length). dropout: in [0, 1).
        bias: biases in the linear layers and layer norms (nanoGPT's default is none).
    """

    tasks: ClassVar[tuple[str, ...]] = ("multiclass",)
    input_dtype: ClassVar[torch.dtype] = torch.long
    default_loss: ClassVar[str] = "cross_entropy"

    def __init__(self, vocab: int | None = None, *, layers: int = 4, heads: int = 4, dim: int = 128, block: int = 64,
                 dropout: float = 0.0, bias: bool = False, in_features: int | None = None,
                 out_features: int | None = None) -> None:  # fmt: skip
        size = vocab if vocab is not None else (in_features if in_features is not None else out_features)
        super().__init__(size, size)
        self.layers, self.heads = _positive("layers", layers), _positive("heads", heads)
        self.dim, self.block = _positive("dim", dim), _positive("block", block)
        if dim % heads:
            raise ConfigError(f"GPT: invalid dim={dim} with heads={heads}; expected dim divisible by heads")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"GPT: invalid dropout={dropout!r}; expected a number in [0, 1)")
        self.dropout, self.bias = float(dropout), bool(bias)
        self._maybe_build()

    def build(self, in_features: int, out_features: int | None = None) -> GPT:
        out = out_features if out_features is not None else in_features
        if out != in_features:
            raise ConfigError(f"GPT: in_features={in_features} and out_features={out} differ; expected one "
                              "vocabulary size for both (tokens in, logits out)")  # fmt: skip
        super().build(in_features, out)
        return self

    def _build(self, in_features: int, out_features: int) -> nn.Module:
        return Network(out_features, self.layers, self.heads, self.dim, self.block, self.dropout, self.bias)

    def hyperparameters(self) -> dict[str, Any]:
        return {"layers": self.layers, "heads": self.heads, "dim": self.dim, "block": self.block,
                "dropout": self.dropout, "bias": self.bias}  # fmt: skip


@torch.no_grad()
def generate(model: nn.Module, prompt: Tensor, tokens: int, *, block: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """Continue the token ids ``prompt`` (1-D) by ``tokens`` ids drawn one at a time from the model's
    next-token distribution :math:`\\mathrm{softmax}(f_T / \\tau)` restricted to the ``top_k`` likeliest
    (:math:`\\tau` = ``temperature`` > 0), seeing at most the last ``block`` ids. Returns the new ids.

    >>> m = GPT(vocab=5, layers=1, heads=1, dim=8, block=4).eval()
    >>> out = generate(m, torch.tensor([1, 2]), 6, block=4, top_k=2, generator=torch.Generator().manual_seed(0))
    >>> out.shape
    torch.Size([6])
    """
    was_training = model.training
    model.eval()
    idx = prompt.reshape(1, -1).long()
    for _ in range(tokens):
        logits = model(idx[:, -block:])[0, -1] / temperature
        if top_k is not None and top_k < logits.numel():
            kth = torch.topk(logits, top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        idx = torch.cat([idx, nxt.view(1, 1)], dim=1)
    model.train(was_training)
    return idx[0, prompt.numel():]
