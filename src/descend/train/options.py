"""The one table of training options: every keyword ``descend.fit`` takes, declared once.

Each :class:`Option` has a name, the group it belongs to, its default, what it accepts and a one-line help.
From :data:`OPTIONS` come fit's validation (:func:`check`, one message template), the flags of
``descend train`` and ``descend lr-find`` and their grouped ``--help`` (:mod:`descend.cli._options`),
``config.json``'s description of a run, the check that a resumed run was given the same options, and the
reading of a config file (:func:`from_mapping`). A new option is one line here (and a keyword of ``fit``, which
a test holds to this table).

The message template, for a value an option does not accept::

    lr: invalid lr=-1; expected a number > 0, auto, a schedule (callable step -> lr) or None

This module imports nothing heavy: ``descend --help`` reads it.

Example:
    >>> OPTIONS["batch_size"].accepts.text
    "full, an int >= 1 or None"
    >>> check({"batch_size": 0})
    Traceback (most recent call last):
    ...
    descend.errors.ConfigError: batch_size: invalid batch_size=0; expected full, an int >= 1 or None
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from descend.errors import ConfigError

__all__ = ["GROUPS", "OPTIONS", "Option", "check", "defaults", "from_mapping"]

GROUPS = ("data", "model", "optimizer", "schedule", "regularisation", "stopping", "diagnostics", "run")

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "newton", "lbfgs")
SECOND_ORDER = ("newton", "lbfgs")  # full-batch optimizers: batch_size defaults to the whole training set
SCHEDULES = ("constant", "cosine", "warmup-cosine", "step", "exponential", "one-cycle", "plateau")
LOSSES = ("mse", "mae", "huber", "bce", "cross_entropy", "hinge")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
INITS = ("auto", "he", "xavier", "normal", "zeros")
TASKS = ("auto", "regression", "binary", "multiclass")
BATCH_SIZE = 32  # the mini-batch size when none is given (first-order optimizers)


class Accepts:
    """What an option accepts: ``ok(value)`` for a Python value, ``parse(word)`` for a word of a command line
    or a config file (ValueError if it is not one), ``text`` for the message and the help."""

    text = ""
    words = True  # whether a command line can say it

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def parse(self, word: str) -> Any:
        raise ValueError(word)

    def __or__(self, other: Accepts) -> AnyOf:
        return AnyOf(self, other)


class AnyOf(Accepts):
    def __init__(self, *parts: Accepts) -> None:
        self.parts: list[Accepts] = [q for p in parts for q in (p.parts if isinstance(p, AnyOf) else [p])]
        texts = [p.text for p in self.parts]
        self.text = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]
        self.words = any(p.words for p in self.parts)

    def ok(self, value: Any) -> bool:
        return any(p.ok(value) for p in self.parts)

    def parse(self, word: str) -> Any:
        for p in self.parts:
            if p.words:
                try:
                    return p.parse(word)
                except ValueError:
                    pass
        raise ValueError(word)


class Number(Accepts):
    """A real number in a range (an int or a float, not a bool, not NaN)."""

    def __init__(self, low: float = 0.0, high: float = math.inf, *, open_low: bool = False,
                 open_high: bool = False) -> None:  # fmt: skip
        self.low, self.high, self.open_low, self.open_high = low, high, open_low, open_high
        if low == -math.inf and high == math.inf:
            self.text = "a number"
        elif high == math.inf:
            self.text = f"a number {'>' if open_low else '>='} {low:g}"
        else:
            self.text = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def parse(self, word: str) -> float:
        value = float(word)
        if not self.ok(value):
            raise ValueError(word)
        return value


class Int(Accepts):
    def __init__(self, low: int = 1) -> None:
        self.low = low
        self.text = f"an int >= {low}"

    def ok(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= self.low

    def parse(self, word: str) -> int:
        value = int(word)
        if not self.ok(value):
            raise ValueError(word)
        return value


class Choice(Accepts):
    """One of a few names (a command line may write them in any case)."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.text = names[0] if len(names) == 1 else f"one of {', '.join(names)}"

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.names

    def parse(self, word: str) -> str:
        if word.strip().lower() not in self.names:
            raise ValueError(word)
        return word.strip().lower()


_TRUTH = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class Boolean(Accepts):
    text = "True or False"

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)

    def parse(self, word: str) -> bool:
        return _TRUTH[word.strip().lower()]  # KeyError: not a truth value


class Null(Accepts):
    text = "None"

    def ok(self, value: Any) -> bool:
        return value is None

    def parse(self, word: str) -> None:
        if word.strip().lower() not in ("none", "null"):
            raise ValueError(word)


class Text(Accepts):
    def __init__(self, text: str = "a string") -> None:
        self.text = text

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def parse(self, word: str) -> Any:
        if not word.strip():
            raise ValueError(word)
        return word


class Names(Accepts):
    """A list of names; on a command line, separated by commas."""

    def __init__(self, text: str = "names separated by commas") -> None:
        self.text = text

    def ok(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value)

    def parse(self, word: str) -> list[str]:
        names = [w.strip() for w in word.split(",") if w.strip()]
        if not names:
            raise ValueError(word)
        return names


class Settings(Accepts):
    """Keyword arguments of another object: a dict; on a command line, ``KEY=VALUE`` words (values are numbers,
    true/false, none, comma-separated numbers for a tuple, or text)."""

    text = "a dict of settings (KEY=VALUE on the command line)"

    def ok(self, value: Any) -> bool:
        return isinstance(value, Mapping) and all(isinstance(k, str) and k.isidentifier() for k in value)

    def parse(self, word: str) -> dict[str, Any]:
        key, eq, text = word.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(word)
        return {key.strip(): setting(text)}


def setting(text: str) -> Any:
    """A settings value from its word: ``0.9`` a float, ``3`` an int, ``true`` a bool, ``none``, ``0.9,0.99`` a
    tuple, anything else the text itself."""
    text = text.strip()
    if "," in text:
        return tuple(setting(t) for t in text.split(","))
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Python(Accepts):
    """Objects only Python can give (a callable, a module, a callback): never a word."""

    words = False

    def __init__(self, text: str, test: Callable[[Any], bool]) -> None:
        self.text, self.test = text, test

    def ok(self, value: Any) -> bool:
        return self.test(value)


class PathText(Accepts):
    """A path (a word is taken as it is written)."""

    def __init__(self, text: str = "a path") -> None:
        self.text = text

    def ok(self, value: Any) -> bool:
        return isinstance(value, (str, os.PathLike)) and bool(str(value).strip())

    def parse(self, word: str) -> str:
        if not word.strip():
            raise ValueError(word)
        return word


class Columns(Text):
    """A column name, or several separated by commas (a list)."""

    def ok(self, value: Any) -> bool:
        return super().ok(value) or (isinstance(value, (list, tuple)) and bool(value)
                                     and all(isinstance(v, str) and v for v in value))  # fmt: skip

    def parse(self, word: str) -> str | list[str]:
        names = [w.strip() for w in word.split(",") if w.strip()]
        if not names:
            raise ValueError(word)
        return names if len(names) > 1 else word.strip()


PATH = PathText()


def _instance(dotted: str) -> Callable[[Any], bool]:
    """A test ``isinstance(value, <dotted class>)``, importing the class only when a value needs testing."""

    def test(value: Any) -> bool:
        import importlib

        module, _, name = dotted.rpartition(".")
        return isinstance(value, getattr(importlib.import_module(module), name))

    return test


def _loader(value: Any) -> bool:
    from descend.train.setup import is_loader

    return is_loader(value)


def _not_text(value: Any) -> bool:
    return not isinstance(value, (str, bytes))


@dataclass(frozen=True)
class Option:
    """One training option.

    ``flag``: its spelling on the command line ("" for the default ``--name-with-dashes``; None where no word
    can give it). ``resume_free``: a resumed run may give it differently (it does not change the descent).
    ``positional``: an argument of ``fit`` before the ``*`` (its default here is the command line's).
    """

    name: str
    group: str
    default: Any
    accepts: Accepts
    help: str
    flag: str | None = ""
    resume_free: bool = False
    positional: bool = False
    metavar: str | None = None

    @property
    def spelling(self) -> str | None:
        return None if self.flag is None else self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        if not self.accepts.ok(value):
            raise ConfigError(f"{self.name}: invalid {self.name}={value!r}; expected {self.accepts.text}")

    def parse(self, word: str) -> Any:
        """The value of a word of the command line or a config file; the template error (naming what a word
        can say) if it says none."""
        try:
            return self.accepts.parse(str(word))
        except (ValueError, KeyError):
            raise ConfigError(f"{self.name}: invalid {self.name}={word!r}; expected {self.word_text}") from None

    @property
    def word_text(self) -> str:
        """What a word may say for this option (the Python-only alternatives left out)."""
        kind = self.accepts
        parts = [p for p in (kind.parts if isinstance(kind, AnyOf) else [kind]) if p.words and not isinstance(p, Null)]
        return AnyOf(*parts).text if parts else kind.text


N = Null()
CALLABLE = Python("a callable", callable)

_TABLE = (
    # data
    Option("data", "data", None, PATH | Python("a DataFrame, arrays, a pair (X, y), a prepared dataset or a loader",
                                               lambda v: v is not None),
           "The training data: a table file (CSV, Parquet, ...), a DataFrame, arrays or a loader.", flag=None,
           positional=True),
    Option("target", "data", None, Columns("a column name (or a list of them)") | N,
           "Column(s) to predict (a table's; comma-separated for several regression targets).", metavar="COL"),
    Option("task", "data", "auto", Choice(*TASKS), "Learning task (auto: inferred from the target)."),
    Option("validation", "data", None,
           Number(0, 1, open_high=True) | N | Python("a loader of validation batches", _loader),
           "Fraction of rows held out for validation (None: 0.2 of a table, none with a loader)."),
    Option("scale", "data", "standard", Choice("standard", "minmax", "none"),
           "Feature scaling, with the training rows' statistics."),
    Option("encoding", "data", None, Text("a text encoding such as latin-1") | N,
           "Text encoding of a CSV/TSV file (default: UTF-8, with or without a BOM; UTF-16 by its mark)."),
    # model
    Option("model", "model", "mlp", Text("a model name such as mlp:64,32")
           | Python("a torch.nn.Module or a model config (dict)", lambda v: v is not None and _not_text(v)),
           "mlp[:SIZES][,KEY=VALUE...] (e.g. mlp:64,32 or mlp:128,dropout=0.1), linear, logistic, softmax or svm.",
           positional=True, metavar="SPEC"),
    Option("activation", "model", None, Choice(*ACTIVATIONS) | N,
           "Hidden-layer activation of a model built from its name (default: the model's, relu)."),
    Option("init", "model", None, Choice(*INITS) | N,
           "Weight initialisation of a model built from its name (auto: he for relu-like, else xavier)."),
    Option("loss", "model", None, Choice(*LOSSES) | N | Python("a descend.losses.Loss or a callable", callable),
           "Loss (default: the model's or the task's)."),
    Option("scale_target", "model", "auto", Choice("auto") | Boolean(),
           "Train a regression on the standardised target (auto: where it applies)."),
    Option("metrics", "model", None, Names("metric names") | N,
           "Validation metrics to record (default: the task's).", metavar="NAMES"),
    # optimizer
    Option("optimizer", "optimizer", "adam",
           Choice(*OPTIMIZERS) | Python("a torch.optim.Optimizer or a factory params -> optimizer",
                                         lambda v: v is not None and _not_text(v)), "Optimizer."),
    Option("lr", "optimizer", None,
           Number(open_low=True) | Choice("auto") | Python("a schedule (callable step -> lr)", callable) | N,
           "Learning rate, or auto (the range test picks it). Default: the optimizer's."),
    Option("optimizer_options", "optimizer", None, Settings() | N,
           "A setting of the optimizer, e.g. momentum=0.9, betas=0.9,0.99 or eps=1e-6 (repeatable).",
           flag="--optimizer-option", metavar="KEY=VALUE"),
    Option("batch_size", "optimizer", None, Choice("full") | Int(1) | N,
           f"Rows per step: full (batch descent), 1 (stochastic) or n. Default: {BATCH_SIZE}, or full for "
           f"{' and '.join(SECOND_ORDER)}.", metavar="N"),
    Option("accumulate", "optimizer", 1, Int(1), "Average the gradients of this many batches per update."),
    Option("clip_norm", "optimizer", None, Number(open_low=True) | N,
           "Clip the gradients' global norm to this value before each update."),
    Option("clip_value", "optimizer", None, Number(open_low=True) | N,
           "Clip each gradient entry to [-value, value] before each update."),
    # schedule
    Option("schedule", "schedule", None, Choice(*SCHEDULES) | Python("a callable step -> multiplier", callable) | N,
           "Learning-rate schedule over the planned run, peaking at the learning rate (default: constant)."),
    Option("warmup_steps", "schedule", None, Int(1) | N,
           "Updates of linear warm-up (warmup-cosine; default: 5% of the run)."),
    Option("step_size", "schedule", None, Int(1) | N, "Updates between drops of the step schedule (default: a third "
           "of the run)."),
    Option("gamma", "schedule", None, Number(0, 1, open_low=True) | N,
           "Factor of each drop: step (default 0.1) and plateau (default 0.5)."),
    # regularisation
    Option("weight_decay", "regularisation", 0.0, Number(0), "Weight decay (the optimizer's own, decoupled in AdamW)."),
    Option("l1", "regularisation", 0.0, Number(0), "L1 penalty on the penalized parameters."),
    Option("l2", "regularisation", 0.0, Number(0), "L2 penalty (lambda/2 * sum w^2) on the penalized parameters."),
    Option("penalize", "regularisation", "weights",
           Choice("weights", "all") | Names("parameter names") | Python("a callable (name, parameter) -> bool",
                                                                        callable),
           "Parameters the penalties apply to: weights (2+ dimensions), all, or names."),
    Option("dropout", "regularisation", None, Number(0, 1, open_high=True) | N,
           "Dropout rate of a model built from its name (default: the model's, 0)."),
    # stopping
    Option("epochs", "stopping", 100, Int(1), "Most epochs to train."),
    Option("max_steps", "stopping", None, Int(1) | N, "Most optimizer steps to take."),
    Option("loss_threshold", "stopping", None, Number(-math.inf) | N,
           "Stop once an epoch's training loss is at or below this."),
    Option("tol", "stopping", 1e-4, Number(0) | N,
           "Stop when the training loss changes by less than this (relative), n-iter-no-change epochs in a row."),
    Option("n_iter_no_change", "stopping", 5, Int(1), "Epochs in a row for tol."),
    Option("early_stopping", "stopping", None,
           Boolean() | N | Python("an EarlyStopping", _instance("descend.train.callbacks.EarlyStopping")),
           "Stop when the monitored validation metric stops improving (default: on with a validation set)."),
    Option("monitor", "stopping", "auto", Choice("auto") | Text("a recorded metric such as val_loss"),
           "Metric early stopping and best weights follow (auto: val_loss; or loss, val_accuracy, ...)."),
    Option("patience", "stopping", 10, Int(1), "Epochs without improvement before early stopping."),
    Option("min_delta", "stopping", 0.0, Number(0), "Smallest change of the monitored metric counted as improvement."),
    # diagnostics
    Option("diagnostics", "diagnostics", True, Boolean(),
           "Watch the descent: gradient health per layer, sharpness against 2/lr, findings."),
    Option("guard", "diagnostics", True, Boolean() | Python("a DivergenceGuard",
                                                            _instance("descend.train.guard.DivergenceGuard")),
           "Divergence guard: skip bad batches, roll a diverging descent back at a lower rate."),
    Option("health_every", "diagnostics", 50, Int(1), "Record per-layer gradient health every N steps."),
    Option("sharpness_every", "diagnostics", 1000, Int(1),
           "Measure sharpness (top Hessian eigenvalue) against 2/lr every N steps."),
    # run
    Option("seed", "run", 0, Int(0) | N, "Seed of the split, initialisation, batch order and dropout (None: drawn)."),
    Option("run_dir", "run", None, PATH | N, "Run folder to write (new or empty).", flag="--out", resume_free=True,
           metavar="DIR"),
    Option("resume", "run", None, PATH | N, "Continue the unfinished run in this folder (its options by default).",
           resume_free=True, metavar="DIR"),
    Option("overwrite", "run", False, Boolean(), "Replace the run already in the --out folder.", resume_free=True),
    Option("checkpoint_every", "run", None, Int(1) | N,
           "Also checkpoint every N steps (there is always one per epoch).", resume_free=True),
    Option("threads", "run", "auto", Choice("auto") | Int(1) | N,
           "torch threads during training (auto: 1 for models under 2**20 parameters)."),
    Option("compile", "run", False, Boolean(),
           "Compile each training step with torch.compile: faster steps after a compile of seconds."),
    Option("callbacks", "run", (), Python("a sequence of descend.train.Callback", _not_text),
           "Extra callbacks (Python only).", flag=None, resume_free=True),
    Option("progress", "run", None, Boolean() | N, "A progress bar (None: when stderr is a terminal; Python only: the "
           "command line prints its own progress).", flag=None, resume_free=True),
)

OPTIONS: dict[str, Option] = {o.name: o for o in _TABLE}
"""Every option of ``fit``, in the order of its signature."""


def defaults() -> dict[str, Any]:
    """Each option's default."""
    return {o.name: o.default for o in _TABLE}


def check(values: Mapping[str, Any]) -> None:
    """Raise the template :class:`~descend.errors.ConfigError` for the first value its option does not accept."""
    for name, value in values.items():
        OPTIONS[name].check(value)


def from_mapping(values: Mapping[str, Any], *, where: str, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Options from a config file's mapping (TOML or a run's config.json): names with ``_`` or ``-``, values
    as the file types them or as words; an unknown name, or an option no word can give, is refused."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in skip:
            continue
        option = OPTIONS.get(name)
        if option is None:
            raise ConfigError(f"config: {where} names an unknown option {key!r}; expected training options such as "
                              f"{', '.join(list(OPTIONS)[:6])}, ... (see descend train --help)")  # fmt: skip
        if isinstance(value, str) and not option.accepts.ok(value):
            value = option.parse(value)
        elif isinstance(value, list) and isinstance(option.accepts, AnyOf) and not option.accepts.ok(value):
            value = tuple(value)
        if option.name == "optimizer_options" and isinstance(value, Mapping):
            value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        option.check(value)
        out[name] = value
    return out
