"""Models: linear, logistic, softmax, linear SVM and the MLP, with their initialisation schemes.

Any ``torch.nn.Module`` trains with ``descend.fit``; these add sizes that ``fit`` can fill in from the data and a
JSON description so a saved model can be rebuilt. :func:`get` turns a name (``"mlp"``, ``"softmax"``, ...) into a
model.
"""

from __future__ import annotations

from typing import Any

from descend.errors import ConfigError
from descend.models.base import Model, from_config, register
from descend.models.init import SCHEMES, initialize
from descend.models.linear import LinearRegression, LinearSVM, LogisticRegression, SoftmaxRegression
from descend.models.mlp import ACTIVATIONS, MLP
from descend.models.size import check_size, count_parameters

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "NAMES",
    "SCHEMES",
    "LinearRegression",
    "LinearSVM",
    "LogisticRegression",
    "Model",
    "SoftmaxRegression",
    "check_size",
    "count_parameters",
    "from_config",
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
}


def get(name: str, **options: Any) -> Model:
    """The model called ``name`` (one of :data:`NAMES`), unbuilt unless sizes are given in ``options``.

    >>> get("mlp", hidden=(32,)).built
    False
    """
    cls = NAMES.get(name)
    if cls is None:
        raise ConfigError(f"model: unknown name {name!r}; expected one of {', '.join(NAMES)} or a torch.nn.Module")
    return cls(**options)
