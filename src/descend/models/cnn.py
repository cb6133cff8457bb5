"""Convolutional networks over signals (1-D: N x C x L) and images (2-D: N x C x H x W).

Each width :math:`c_s` in ``channels`` is a stage: a block of convolution (kernel ``kernel``, padding that keeps
the size), normalisation and ReLU,

.. math:: a_s = \\mathrm{ReLU}(\\mathrm{norm}(W_s * a_{s-1} + b_s)),

then 2x max pooling between stages. ``residual=True`` makes each block a basic residual block,
:math:`a_s = \\mathrm{ReLU}(S a_{s-1} + \\mathrm{norm}(W_s'' * \\mathrm{ReLU}(\\mathrm{norm}(W_s * a_{s-1}))))`,
with :math:`S` the identity, or a 1x1 convolution where the width changes. After the last stage, global average
pooling gives one value per channel, and a linear head (after ``dropout``) the outputs; so the network takes
inputs of any length or size. ``in_features`` is the number of input channels: a table (N x F) is one channel
of length F to :class:`CNN1d`, its feature columns in order, and N x H x W one channel of an image to
:class:`CNN`. Layers are named ``stage1.conv``, ``stage1.norm``, ..., ``head``.

``norm`` is ``"batch"`` (the default), ``"layer"`` (one group over all channels, :class:`torch.nn.GroupNorm`)
or ``"none"``. Batch norm trains on each batch's statistics and predicts with the running ones; the curvature
monitors evaluate the model in eval mode, so their Hessian-vector products use, and never update, the running
statistics.

Example:
    >>> import torch
    >>> from descend.models import CNN, CNN1d
    >>> _ = torch.manual_seed(0)
    >>> CNN1d(1, 10, channels=(8, 16))(torch.zeros(5, 40)).shape
    torch.Size([5, 10])
    >>> CNN(3, 2, channels=(8,), residual=True)(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from descend.errors import ConfigError
from descend.models.base import Model, register
from descend.models.blocks import BlockSequential, spans_of
from descend.models.init import SCHEMES, initialize

__all__ = ["CNN", "CNN_NORMS", "CNN1d"]

CNN_NORMS = ("batch", "layer", "none")


class _Residual(nn.Module):
    def __init__(self, conv: Any, norm: Any, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1, self.norm1 = conv(c_in, c_out, kernel, padding=pad), norm(c_out)
        self.conv2, self.norm2 = conv(c_out, c_out, kernel, padding=pad), norm(c_out)
        self.shortcut = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.shortcut(x) + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x))))))
        return out


class _Head(nn.Module):
    def __init__(self, width: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(width, out_features)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(self.dropout(x.flatten(2).mean(-1)))  # global average pooling
        return out


class _ConvNet(Model):
    dims: ClassVar[int] = 2
    example_rank = 3

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | None = None,
        *,
        channels: Sequence[int] = (32, 64),
        kernel: int = 3,
        norm: str = "batch",
        residual: bool = False,
        dropout: float = 0.0,
        init: str = "he",
    ) -> None:
        super().__init__(in_features, out_features)
        name = type(self).__name__
        if isinstance(channels, int):
            channels = (channels,)
        if not channels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels):
            raise ConfigError(f"{name}: invalid channels={channels!r}; expected positive widths, e.g. (32, 64)")
        if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise ConfigError(f"{name}: invalid kernel={kernel!r}; expected an odd positive int (3, 5, ...)")
        if norm not in CNN_NORMS:
            raise ConfigError(f"{name}: unknown norm {norm!r}; expected one of {', '.join(CNN_NORMS)}")
        if not isinstance(residual, bool):
            raise ConfigError(f"{name}: invalid residual={residual!r}; expected true or false")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{name}: invalid dropout={dropout!r}; expected a number in [0, 1)")
        if init not in SCHEMES or init == "zeros":
            raise ConfigError(f"{name}: unknown initialisation {init!r}; expected he, xavier or normal")
        self.channels = tuple(int(c) for c in channels)
        self.kernel, self.norm, self.residual, self.dropout, self.init = kernel, norm, residual, float(dropout), init
        self._maybe_build()

    def in_features_for(self, shape: tuple[int, ...]) -> int:
        """The input channels for examples of ``shape``: ``C`` of ``(C, *size)``, 1 for ``size`` alone."""
        if len(shape) == self.dims + 1:
            return int(shape[0])
        if len(shape) == self.dims:
            return 1
        want = "(C, L) or (L,)" if self.dims == 1 else "(C, H, W) or (H, W)"
        raise ConfigError(f"model: {type(self).__name__} takes examples of shape {want}; the data's examples have "
                          f"shape {tuple(shape)}")  # fmt: skip

    def _layers(self) -> tuple[Any, Any, Any]:
        conv = nn.Conv1d if self.dims == 1 else nn.Conv2d
        pool = nn.MaxPool1d if self.dims == 1 else nn.MaxPool2d
        batch = nn.BatchNorm1d if self.dims == 1 else nn.BatchNorm2d
        norms = {"batch": batch, "layer": lambda c: nn.GroupNorm(1, c), "none": lambda c: nn.Identity()}
        return conv, pool, norms[self.norm]

    def _build(self, in_features: int, out_features: int) -> nn.Module:
        conv, pool, norm = self._layers()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = in_features
        for s, c in enumerate(self.channels, start=1):
            if s > 1:
                layers[f"pool{s - 1}"] = pool(2, ceil_mode=True)
            if self.residual:
                layers[f"stage{s}"] = _Residual(conv, norm, width, c, self.kernel)
            else:
                layers[f"stage{s}"] = nn.Sequential(OrderedDict(
                    [("conv", conv(width, c, self.kernel, padding=self.kernel // 2)), ("norm", norm(c)),
                     ("act", nn.ReLU())]))  # fmt: skip
            width = c
        layers["head"] = _Head(width, out_features, self.dropout)
        stages = spans_of(list(layers), lambda name: name.startswith("stage"))  # the blocks checkpointing recomputes
        return initialize(BlockSequential(layers, spans=stages), self.init)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == self.dims + 1:  # one channel given without its axis
            x = x.unsqueeze(1)
        return super().forward(x)

    def hyperparameters(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "kernel": self.kernel, "norm": self.norm, "residual": self.residual,
                "dropout": self.dropout, "init": self.init}  # fmt: skip


@register
class CNN1d(_ConvNet):
    """A 1-D convolutional network over signals N x C x L (or a table's columns as one channel); see the module."""

    dims = 1
    example_rank = 2

    def __init__(self, in_features: int | None = None, out_features: int | None = None, *,
                 channels: Sequence[int] = (32, 64), kernel: int = 5, norm: str = "batch", residual: bool = False,
                 dropout: float = 0.0, init: str = "he") -> None:  # fmt: skip
        super().__init__(in_features, out_features, channels=channels, kernel=kernel, norm=norm, residual=residual,
                         dropout=dropout, init=init)  # fmt: skip


@register
class CNN(_ConvNet):
    """A 2-D convolutional network over images N x C x H x W (or N x H x W, one channel); see the module."""

    dims = 2
