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

# Param groups with their own values, per optimizer: groups 2 and 3 override these hyperparameters (group 1 keeps
# the case's own). Group 3 changes several at once (momentum/betas, weight decay, eps, amsgrad, ...), so state that
# depends on a group's value (RMSprop's momentum buffer and centering, AMSGrad's running max) is held to torch per group. Every override is valid with every case of its optimizer (e.g. Nesterov: dampening 0).
GROUP_OVERRIDES: dict[str, list[dict[str, Any]]] = {
    "SGD": [
        {"lr": 0.01, "momentum": 0.5},
        {"lr": 0.02, "momentum": 0.7, "weight_decay": 0.05},
    ],
    "Adagrad": [
        {"lr": 0.02, "lr_decay": 0.1},
        # Not initial_accumulator_value: torch.optim.Adagrad fills "sum" from the constructor's value and ignores a
        # group's own; descend uses the group's (test_adagrad_initial_accumulator_is_per_group).
        {"lr": 0.05, "weight_decay": 0.2, "eps": 1e-6, "lr_decay": 0.05},
    ],
    "RMSprop": [
        {"lr": 0.002, "alpha": 0.5},
        {"lr": 0.005, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.05},
    ],
    "Adam": [
        {"lr": 0.003, "betas": (0.5, 0.6)},
        {"lr": 0.02, "betas": (0.7, 0.95), "eps": 1e-6, "weight_decay": 0.05, "amsgrad": True},
    ],
    "AdamW": [
        {"lr": 0.003, "weight_decay": 0.5},
        {"lr": 0.005, "betas": (0.8, 0.9), "weight_decay": 0.3, "amsgrad": True},
    ],
}
