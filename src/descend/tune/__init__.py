"""Tuning: the learning-rate range test, ``lr="auto"``, :func:`find_lr` (what ``lr="auto"`` would pick), and
hyperparameter search on Optuna (:func:`search`, imported on first use: Optuna is an optional dependency)."""

from typing import Any

from descend.train.fit import find_lr
from descend.tune.auto import auto_lr, sweep_steps
from descend.tune.lr_find import LRFindResult, Sweep, adaptive, lr_find, suggest

__all__ = ["LRFindResult", "Sweep", "adaptive", "auto_lr", "find_lr", "lr_find", "search", "suggest", "sweep_steps"]


def __getattr__(name: str) -> Any:
    if name == "search":
        from descend.tune.search import search

        return search
    raise AttributeError(f"module 'descend.tune' has no attribute {name!r}")
