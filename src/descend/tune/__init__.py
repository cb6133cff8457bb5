"""Tuning: the learning-rate range test and ``lr="auto"``."""

from descend.tune.auto import auto_lr, sweep_steps
from descend.tune.lr_find import LRFindResult, Sweep, adaptive, lr_find, suggest

__all__ = ["LRFindResult", "Sweep", "adaptive", "auto_lr", "lr_find", "suggest", "sweep_steps"]
