"""The base of descend's models: a ``torch.nn.Module`` whose sizes may be left for ``fit`` to fill in.

A model built with both sizes is an ordinary module at once. A model built without them (``MLP(hidden=(64,))``)
holds only its hyperparameters; ``descend.fit`` calls :meth:`Model.build` with the number of features and the
output size the task needs (1 for regression and binary targets, the number of classes for multiclass), so the
same line trains on any table. :meth:`Model.config` and :func:`from_config` round-trip a model's architecture
through JSON, which is how ``descend.load`` rebuilds a saved model.

A model may carry a fixed *output scale*: :meth:`Model.set_output_scale` makes it predict
:math:`\\sigma \\, f(x) + \\mu` instead of :math:`f(x)`, with :math:`\\mu, \\sigma` buffers (not trained).
``descend.fit`` sets them to a regression target's training mean and standard deviation, so the network learns
a standardised target while the model itself predicts in the target's units.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from descend.errors import ConfigError

__all__ = ["Model", "from_config", "register"]

_REGISTRY: dict[str, type[Model]] = {}


def register(cls: type[Model]) -> type[Model]:
    """Class decorator: make ``cls`` rebuildable by :func:`from_config` under its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _check_size(owner: str, name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}: invalid {name}={value!r}; expected a positive int or None")
    return value


class Model(nn.Module):
    """A module that knows its hyperparameters and can be built once the data's sizes are known.

    Subclasses implement :meth:`_build` (create the layers) and :meth:`_forward`, and list their
    hyperparameters in :meth:`hyperparameters`. ``tasks`` names the tasks the model fits;
    ``fixed_outputs`` is set when the output size does not depend on the data (1 for logistic regression).
    """

    tasks: ClassVar[tuple[str, ...]] = ("regression", "binary", "multiclass")
    fixed_outputs: ClassVar[int | None] = None
    #: the rank of one example the layers take (1: a feature vector); an example of higher rank is flattened
    example_rank: ClassVar[int] = 1

    def __init__(self, in_features: int | None = None, out_features: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_features = _check_size(name, "in_features", in_features)
        out = _check_size(name, "out_features", out_features)
        if self.fixed_outputs is not None and out is not None and out != self.fixed_outputs:
            raise ConfigError(f"{name}: invalid out_features={out}; expected {self.fixed_outputs}")
        self.out_features = out if out is not None else self.fixed_outputs
        self.net: nn.Module | None = None
        self.output_shift: Tensor | None
        self.output_scale: Tensor | None
        self.register_buffer("output_shift", None)
        self.register_buffer("output_scale", None)

    def set_output_scale(self, shift: Any, scale: Any) -> Model:
        """Predict ``scale * f(x) + shift`` (per output; numbers or sequences of ``out_features`` values).

        ``scale`` must be positive and finite. Return ``self``.

        Example:
            >>> from descend.models import LinearRegression
            >>> m = LinearRegression(2, 1, init="zeros").set_output_scale([150.0], [77.0])
            >>> m(torch.ones(1, 2)).tolist()
            [[150.0]]
        """
        name = type(self).__name__
        dtype = next((p.dtype for p in self.parameters()), torch.get_default_dtype())
        mu = torch.as_tensor(shift, dtype=dtype).reshape(-1)
        sigma = torch.as_tensor(scale, dtype=dtype).reshape(-1)
        if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all() and (sigma > 0).all()):
            raise ConfigError(f"{name}: invalid output scale shift={mu.tolist()}, scale={sigma.tolist()}; "
                              "expected finite numbers and a positive scale")  # fmt: skip
        if mu.numel() != sigma.numel():
            raise ConfigError(f"{name}: invalid output scale: {mu.numel()} shift value(s) but {sigma.numel()} scale "
                              "value(s); expected as many of each")  # fmt: skip
        if self.out_features is not None and mu.numel() not in (1, self.out_features):
            raise ConfigError(f"{name}: invalid output scale of {mu.numel()} values; expected "
                              f"{self.out_features} (one per output)")  # fmt: skip
        self.output_shift, self.output_scale = mu, sigma
        return self

    @property
    def built(self) -> bool:
        """Whether the layers exist (both sizes known)."""
        return self.net is not None

    def build(self, in_features: int, out_features: int | None = None) -> Model:
        """Create the layers for ``in_features`` inputs and ``out_features`` outputs; return ``self``."""
        name = type(self).__name__
        self.in_features = _check_size(name, "in_features", in_features)
        if self.fixed_outputs is None:
            self.out_features = _check_size(name, "out_features", out_features)
        if self.out_features is None:
            raise ConfigError(f"{name}: out_features is needed to build the model")
        self.net = self._build(self.in_features or 0, self.out_features)
        return self

    def in_features_for(self, shape: tuple[int, ...]) -> int:
        """``in_features`` for examples of ``shape`` (one row's shape, without the batch): their number of values,
        as a vector model sees an image or a signal flattened.

        >>> from descend.models import MLP
        >>> MLP().in_features_for((1, 8, 8))
        64
        """
        n = 1
        for d in shape:
            n *= int(d)
        return n

    def _maybe_build(self) -> None:
        if self.in_features is not None and self.out_features is not None:
            self.build(self.in_features, self.out_features)

    def _build(self, in_features: int, out_features: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.net is None:
            raise RuntimeError(
                f"{type(self).__name__} is not built: pass in_features/out_features, call build(), or train it with "
                "descend.fit, which builds it from the data"
            )
        if self.example_rank == 1 and x.dim() > 2:
            x = x.flatten(1)
        out: Tensor = self.net(x)
        if self.output_scale is not None and self.output_shift is not None:
            out = out * self.output_scale + self.output_shift
        return out

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments other than the sizes."""
        return {}

    def config(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`from_config` rebuilds the same architecture."""
        out = {
            "class": type(self).__name__,
            "in_features": self.in_features,
            "out_features": self.out_features,
            **self.hyperparameters(),
        }
        if self.output_scale is not None and self.output_shift is not None:
            out["output_shift"] = self.output_shift.tolist()
            out["output_scale"] = self.output_scale.tolist()
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "class")


def from_config(config: dict[str, Any]) -> Model:
    """Rebuild a model (with fresh weights) from :meth:`Model.config`'s output."""
    options = dict(config)
    cls_name = options.pop("class", None)
    cls = _REGISTRY.get(str(cls_name))
    if cls is None:
        raise ConfigError(f"unknown model class {cls_name!r}; expected one of {', '.join(sorted(_REGISTRY))}")
    shift, scale = options.pop("output_shift", None), options.pop("output_scale", None)
    model = cls(**options)
    if scale is not None:
        model.set_output_scale(shift, scale)
    return model
