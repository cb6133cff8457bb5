"""The table of named optimizers and configurations that the oracle tests run against torch.optim."""

from __future__ import annotations

from typing import Any

import torch

import descend.optim as D

# (id, descend class, torch class, keyword arguments shared by both)
CASES: list[tuple[str, type, type, dict[str, Any]]] = []


def _add(name: str, ours: type, theirs: type, configs: list[dict[str, Any]]) -> None:
    for i, kw in enumerate(configs):
        CASES.append((f"{name}-{i}", ours, theirs, kw))


_add("SGD", D.SGD, torch.optim.SGD, [
    {"lr": 0.05},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.5},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True},
    {"lr": 0.05, "maximize": True},
])
_add("Adagrad", D.Adagrad, torch.optim.Adagrad, [
    {"lr": 0.1},
    {"lr": 0.1, "lr_decay": 0.01},
    {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6},
    {"lr": 0.1, "weight_decay": 0.1, "lr_decay": 0.001},
    {"lr": 0.1, "maximize": True},
])
_add("RMSprop", D.RMSprop, torch.optim.RMSprop, [
    {"lr": 0.01},
    {"lr": 0.01, "alpha": 0.9, "eps": 1e-6},
    {"lr": 0.01, "centered": True},
    {"lr": 0.01, "momentum": 0.9},
    {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"lr": 0.01, "maximize": True, "momentum": 0.5},
])
_add("Adam", D.Adam, torch.optim.Adam, [
    {"lr": 0.01},
    {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 0.01, "amsgrad": True},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True},
])
_add("AdamW", D.AdamW, torch.optim.AdamW, [
    {"lr": 0.01},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True},
    {"lr": 0.01, "betas": (0.5, 0.9), "maximize": True},
])

# Param groups with their own values, per optimizer: the second group overrides one hyperparameter.
GROUP_OVERRIDES: dict[str, dict[str, Any]] = {
    "SGD": {"lr": 0.01, "momentum": 0.5},
    "Adagrad": {"lr": 0.02, "lr_decay": 0.1},
    "RMSprop": {"lr": 0.002, "alpha": 0.5},
    "Adam": {"lr": 0.003, "betas": (0.5, 0.6)},
    "AdamW": {"lr": 0.003, "weight_decay": 0.5},
}
