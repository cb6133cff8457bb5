"""The base of descend's models: a ``torch.nn.Module`` whose sizes may be left for ``fit`` to fill in.

A model built with both sizes is an ordinary module at once. A model built without them (``MLP(hidden=(64,))``)
holds only its hyperparameters; ``descend.fit`` calls :meth:`Model.build` with the number of features and the
output size the task needs (1 for regression and binary targets, the number of classes for multiclass), so the
same line trains on any table. :meth:`Model.config` and :func:`from_config` round-trip a model's architecture
through JSON, which is how ``descend.load`` rebuilds a saved model.
"""

from __future__ import annotations

from typing import Any, ClassVar

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

    def __init__(self, in_features: int | None = None, out_features: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_features = _check_size(name, "in_features", in_features)
        out = _check_size(name, "out_features", out_features)
        if self.fixed_outputs is not None and out is not None and out != self.fixed_outputs:
            raise ConfigError(f"{name}: invalid out_features={out}; expected {self.fixed_outputs}")
        self.out_features = out if out is not None else self.fixed_outputs
        self.net: nn.Module | None = None

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
        return self.net(x)

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments other than the sizes."""
        return {}

    def config(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`from_config` rebuilds the same architecture."""
        return {
            "class": type(self).__name__,
            "in_features": self.in_features,
            "out_features": self.out_features,
            **self.hyperparameters(),
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "class")


def from_config(config: dict[str, Any]) -> Model:
    """Rebuild a model (with fresh weights) from :meth:`Model.config`'s output."""
    options = dict(config)
    cls_name = options.pop("class", None)
    cls = _REGISTRY.get(str(cls_name))
    if cls is None:
        raise ConfigError(f"unknown model class {cls_name!r}; expected one of {', '.join(sorted(_REGISTRY))}")
    return cls(**options)
