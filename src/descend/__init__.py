"""descend: train models by gradient descent, and see what the descent did.

The core import is light: torch and the optimizer engine. Data readers, plotting and the command line are
imported when first used.
"""

from __future__ import annotations

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
    "fit",
    "load",
    "optim",
]
