"""Training: ``fit``, the callbacks that watch it, run folders and saved models; the one table of its options
(:mod:`descend.train.options`).

The names are imported on first use, so the table (which the command line reads for ``--help``) comes without
torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from descend.train.callbacks import Checkpoint, EarlyStopping, ProgressBar, Recorder
    from descend.train.fit import ConvergenceWarning, FitResult, fit
    from descend.train.guard import DivergenceGuard
    from descend.train.run import RunFolder
    from descend.train.saved import SavedModel, load, save_model
    from descend.train.state import Callback, TrainState

__all__ = [
    "Callback",
    "Checkpoint",
    "ConvergenceWarning",
    "DivergenceGuard",
    "EarlyStopping",
    "FitResult",
    "ProgressBar",
    "Recorder",
    "RunFolder",
    "SavedModel",
    "TrainState",
    "fit",
    "load",
    "save_model",
]

_HOMES = {
    "callbacks": ("Checkpoint", "EarlyStopping", "ProgressBar", "Recorder"),
    "fit": ("ConvergenceWarning", "FitResult", "fit"),
    "guard": ("DivergenceGuard",),
    "run": ("RunFolder",),
    "saved": ("SavedModel", "load", "save_model"),
    "state": ("Callback", "TrainState"),
}
_MODULE = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _MODULE:
        return getattr(importlib.import_module(f"descend.train.{_MODULE[name]}"), name)
    raise AttributeError(f"module 'descend.train' has no attribute {name!r}")


class _Package(types.ModuleType):
    """This package, keeping ``descend.train.fit`` the function: importing the submodule ``fit.py`` would
    otherwise set the package's attribute ``fit`` to the module, hiding the function that ``__getattr__`` gives."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name == "fit" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
