"""Tuning: the learning-rate range test, ``lr="auto"``, and :func:`find_lr` (what ``lr="auto"`` would pick)."""

from descend.train.fit import find_lr
from descend.tune.auto import auto_lr, sweep_steps
from descend.tune.lr_find import LRFindResult, Sweep, adaptive, lr_find, suggest

__all__ = ["LRFindResult", "Sweep", "adaptive", "auto_lr", "find_lr", "lr_find", "suggest", "sweep_steps"]
