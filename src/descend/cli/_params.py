"""Option types of the command line: each turns one word into the value the library takes, or refuses it
with a usage error (exit code 2) that names the option, the value and what is accepted."""

from __future__ import annotations

import math
from typing import Any

import click

__all__ = ["BATCH", "LR", "MODEL", "NAMES_LIST", "SCHEDULES", "ModelSpec", "NameList"]

MODELS = ("mlp", "linear", "logistic", "softmax", "svm")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "newton", "lbfgs")
SCHEDULES = ("constant", "cosine", "warmup-cosine", "step", "exponential", "one-cycle", "plateau")
LOSS_NAMES = ("auto", "mse", "mae", "huber", "bce", "cross_entropy", "hinge")


class ModelSpec(click.ParamType):
    """``mlp``, ``mlp:64,32`` (hidden sizes), ``linear``, ``logistic``, ``softmax``, ``svm``."""

    name = "model"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, dict[str, Any]]:
        if isinstance(value, tuple):
            return value
        kind, colon, sizes = str(value).partition(":")
        kind = kind.strip().lower()
        if kind not in MODELS:
            self.fail(f"unknown model {value!r}; expected one of {', '.join(MODELS)} (e.g. mlp:64,32)", param, ctx)
        if not colon:
            return kind, {}
        if kind != "mlp":
            self.fail(f"{kind!r} takes no sizes; only mlp does (e.g. mlp:64,32)", param, ctx)
        words = [s.strip() for s in sizes.split(",")]
        if not all(w.isascii() and w.isdigit() and int(w) >= 1 for w in words):
            self.fail(f"invalid hidden sizes {sizes!r}; expected positive integers separated by commas, e.g. mlp:64,32 "
                      "(or mlp for the default)", param, ctx)
        hidden = tuple(int(w) for w in words)
        self._check_size(value, hidden, param, ctx)
        return kind, {"hidden": hidden}

    def _check_size(self, value: Any, hidden: tuple[int, ...], param: Any, ctx: Any) -> None:
        """Refuse an MLP too large for memory even with one feature and one output (the data is not read yet)."""
        from descend.errors import ConfigError
        from descend.models.size import check_size, mlp_parameters

        try:
            check_size(mlp_parameters(1, 1, hidden), what=f"{value} (even with 1 feature)")
        except ConfigError as e:
            self.fail(str(e).removeprefix("model: "), param, ctx)


class LearningRate(click.ParamType):
    """A number > 0, or ``auto`` (the learning-rate range test picks it)."""

    name = "lr"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str:
        if value == "auto" or isinstance(value, float):
            return value
        try:
            lr = float(value)
        except ValueError:
            lr = math.nan
        if not (math.isfinite(lr) and lr > 0):
            self.fail(f"{value!r} is not a learning rate; expected a number > 0 (e.g. 1e-3) or auto", param, ctx)
        return lr


class BatchSize(click.ParamType):
    """``full`` (batch gradient descent), ``1`` (stochastic) or n rows per step."""

    name = "batch"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if value == "full" or isinstance(value, int):
            return value
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"{value!r} is not a batch size; expected full or an integer >= 1", param, ctx)
        return n


class NameList(click.ParamType):
    """Comma-separated names, each from ``choices``; no repeats."""

    name = "names"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def convert(self, value: Any, param: Any, ctx: Any) -> list[str]:
        if isinstance(value, list):
            return value
        names = [v.strip().lower() for v in str(value).split(",") if v.strip()]
        if not names:
            self.fail(f"expected one or more of {', '.join(self.choices)}, separated by commas", param, ctx)
        for n in names:
            if n not in self.choices:
                self.fail(f"unknown name {n!r}; expected some of {', '.join(self.choices)}", param, ctx)
        if len(set(names)) != len(names):
            self.fail(f"{value!r} repeats a name; expected each at most once", param, ctx)
        return names


class NumberList(click.ParamType):
    """Comma-separated positive numbers (learning rates) or batch sizes."""

    name = "list"

    def __init__(self, item: click.ParamType) -> None:
        self.item = item

    def convert(self, value: Any, param: Any, ctx: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail("expected one or more values separated by commas", param, ctx)
        return [self.item.convert(v, param, ctx) for v in items]


MODEL = ModelSpec()
LR = LearningRate()
BATCH = BatchSize()
NAMES_LIST = NameList
