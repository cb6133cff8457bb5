"""Training: ``fit``, the callbacks that watch it, run folders and saved models."""

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
