"""descend: train models by gradient descent, and see what the descent did.

``import descend`` is light (no torch, numpy or pandas): the names below, and the subpackages, are imported on
first use, so the command line starts fast and ``descend.tune.find_lr`` works after a bare ``import descend``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from descend.errors import ConfigError, DataError, DescendError, ModelFolderError

if TYPE_CHECKING:
    from descend import optim
    from descend.evaluation import evaluate
    from descend.sampling import sample
    from descend.train import FitResult, fit, load

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DescendError",
    "FitResult",
    "ModelFolderError",
    "__version__",
    "evaluate",
    "fit",
    "load",
    "optim",
    "sample",
]

# Subpackages imported on first use.
_LAZY = ("data", "inspect", "losses", "metrics", "models", "optim", "report", "schedules", "sklearn", "train", "tune")
# Names imported on first use, from their modules.
_NAMES = {"fit": "descend.train", "load": "descend.train", "FitResult": "descend.train",
          "evaluate": "descend.evaluation", "sample": "descend.sampling"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if name in _LAZY:
        return importlib.import_module(f"descend.{name}")
    raise AttributeError(f"module 'descend' has no attribute {name!r}")
