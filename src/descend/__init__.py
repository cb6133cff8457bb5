"""descend: train models by gradient descent, and see what the descent did.

The core import is light: torch and the optimizer engine. Data readers, plotting and the command line are
imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from descend import optim
from descend.errors import ConfigError, DataError, DescendError, ModelFolderError
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
]

# Subpackages imported on first use (``descend.tune.find_lr`` works after a bare ``import descend``).
_LAZY = ("data", "inspect", "losses", "metrics", "models", "report", "schedules", "train", "tune")


def __getattr__(name: str) -> Any:
    if name == "evaluate":  # the function, from its module (imported on first use, like the subpackages)
        return importlib.import_module("descend.evaluation").evaluate
    if name in _LAZY:
        return importlib.import_module(f"descend.{name}")
    raise AttributeError(f"module 'descend' has no attribute {name!r}")
