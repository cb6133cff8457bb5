"""Models: linear, logistic, softmax, linear SVM, the MLP (normalised, residual), CNNs (1-D, 2-D), the GPT and the
FT-Transformer, with their initialisation schemes.

Any ``torch.nn.Module`` trains with ``descend.fit``; these add sizes that ``fit`` can fill in from the data and a
JSON description so a saved model can be rebuilt. :func:`get` turns a name (``"mlp"``, ``"softmax"``, ...) into a
model, :func:`from_spec` a spec such as ``"mlp:256,256,norm=layer,residual=true"`` or ``"cnn:32,64"``.
"""

from __future__ import annotations

from typing import Any

from descend.errors import ConfigError
from descend.models.base import Model, from_config, register
from descend.models.cnn import CNN, CNN1d
from descend.models.ft_transformer import FTTransformer
from descend.models.init import SCHEMES, initialize
from descend.models.linear import LinearRegression, LinearSVM, LogisticRegression, SoftmaxRegression
from descend.models.mlp import ACTIVATIONS, MLP
from descend.models.size import check_size, count_parameters
from descend.models.transformer import GPT

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "GPT",
    "MLP",
    "NAMES",
    "SCHEMES",
    "CNN1d",
    "FTTransformer",
    "LinearRegression",
    "LinearSVM",
    "LogisticRegression",
    "Model",
    "SoftmaxRegression",
    "check_size",
    "count_parameters",
    "from_config",
    "from_spec",
    "get",
    "initialize",
    "register",
]

NAMES: dict[str, type[Model]] = {
    "linear": LinearRegression,
    "logistic": LogisticRegression,
    "softmax": SoftmaxRegression,
    "svm": LinearSVM,
    "mlp": MLP,
    "cnn1d": CNN1d,
    "cnn": CNN,
    "gpt": GPT,
    "ftt": FTTransformer,
}

#: the constructor argument a spec's bare numbers fill: layer widths
_SIZES = ("hidden", "channels")


def get(name: str, **options: Any) -> Model:
    """The model called ``name`` (one of :data:`NAMES`), unbuilt unless sizes are given in ``options``.

    >>> get("mlp", hidden=(32,)).built
    False
    """
    cls = NAMES.get(name)
    if cls is None:
        raise ConfigError(f"model: unknown name {name!r}; expected one of {', '.join(NAMES)} or a torch.nn.Module")
    return cls(**options)


def _word(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def from_spec(spec: str, **options: Any) -> Model:
    """The model a spec names: ``NAME[:ITEM,ITEM...]``, each item a width (hidden sizes of ``mlp:64,32``, channels
    of ``cnn:32,64``) or a setting ``KEY=VALUE`` of the model's class (``mlp:128,dropout=0.1,norm=layer``,
    ``cnn1d:32,64,kernel=5,residual=true``); ``options`` add settings (a setting given both ways is refused).

    >>> from_spec("mlp:64,32,dropout=0.1").config()["hidden"]
    [64, 32]
    >>> from_spec("cnn:16,32,residual=true").config()["channels"]
    [16, 32]
    """
    import inspect

    name, colon, rest = spec.partition(":")
    name = name.strip().lower()
    if name not in NAMES:
        raise ConfigError(f"model: unknown model {spec!r}; expected one of {', '.join(NAMES)} (e.g. mlp:64,32) or a "
                          "torch.nn.Module")  # fmt: skip
    accepted = [p for p in inspect.signature(NAMES[name]).parameters if p not in ("in_features", "out_features")]
    widths = next((p for p in _SIZES if p in accepted), None)
    settable = [p for p in accepted if p != widths]
    sizes: list[int] = []
    settings: dict[str, Any] = {}
    for item in (w.strip() for w in rest.split(",")) if colon else ():
        key, eq, value = item.partition("=")
        if not eq:
            if not (item.isascii() and item.isdigit() and int(item) >= 1) or widths is None:
                raise ConfigError(f"model: invalid item {item!r} in {spec!r}; expected "
                                  + (f"positive widths ({widths}) and " if widths else "")
                                  + f"settings KEY=VALUE of {name} ({', '.join(settable) or 'none'})")  # fmt: skip
            sizes.append(int(item))
        elif key.strip() not in accepted or key.strip() == widths:
            raise ConfigError(f"model: {name} has no setting {key.strip()!r}; expected one of "
                              f"{', '.join(settable) or 'none'}")  # fmt: skip
        else:
            settings[key.strip()] = _word(value.strip())
    if sizes and widths is not None:
        settings[widths] = tuple(sizes)
    for key, value in options.items():
        if key not in accepted:
            raise ConfigError(f"{key}: does not apply to {name} (its settings: {', '.join(accepted) or 'none'})")
        if key in settings and settings[key] != value:
            raise ConfigError(f"{key}: {key}={value!r} and the model spec's {key}={settings[key]!r} differ; expected "
                              "one of them")  # fmt: skip
        settings[key] = value
    return NAMES[name](**settings)
