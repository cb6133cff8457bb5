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
    'full, an int >= 1 or None'
    >>> check({"batch_size": 0})
    Traceback (most recent call last):
    ...
    descend.errors.ConfigError: batch_size: invalid batch_size=0; expected full, an int >= 1 or None
"""

from __future__ import annotations

import functools
import math
import operator
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from descend.errors import ConfigError
from descend.train.accepts import (
    BOOLEAN,
    NONE,
    PATH,
    SETTINGS,
    SIZE,
    Kind,
    choice,
    columns,
    integer,
    names,
    number,
    python,
    text,
)

__all__ = ["GROUPS", "OPTIONS", "Option", "check", "from_mapping"]

GROUPS = ("data", "model", "optimizer", "schedule", "regularisation", "stopping", "diagnostics", "run")

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "newton", "lbfgs")
SECOND_ORDER = ("newton", "lbfgs")  # full-batch optimizers: batch_size defaults to the whole training set
SCHEDULES = ("constant", "cosine", "warmup-cosine", "step", "exponential", "one-cycle", "plateau")
LOSSES = ("mse", "mae", "huber", "bce", "cross_entropy", "hinge")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
INITS = ("auto", "he", "xavier", "normal", "zeros")
TASKS = ("auto", "regression", "binary", "multiclass")
BATCH_SIZE = 32  # the mini-batch size when none is given (first-order optimizers)
AUGMENTS = ("none", "flip", "crop", "flip+crop")  # descend.data.augment's, which a test holds to these


@dataclass(frozen=True)
class Option:
    """One training option.

    ``flag``: its spelling on the command line ("" for ``--name-with-dashes``; None where no word can give it).
    ``note``: what needs more than the one-line ``help`` (in ``fit``'s docstring only). ``resume_free``: a
    resumed run may give it differently (it does not change the descent). ``positional``: an argument of ``fit``
    before the ``*`` (its default here is the command line's).
    """

    name: str
    group: str
    default: Any
    accepts: Kind
    help: str
    note: str = ""
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
        parts = [p for p in self.accepts.parts or (self.accepts,) if p.read is not None and p is not NONE]
        return functools.reduce(operator.or_, parts).text if parts else self.accepts.text


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


def _object(value: Any) -> bool:
    return value is not None and not isinstance(value, (str, bytes))


PRECISIONS = ("32", "bf16", "16-mixed")  # descend.train.devices's, which a test holds to these


def _device(value: Any) -> bool:
    """A device's spelling (whether this machine has it is fit's check: descend.train.devices)."""
    if not isinstance(value, str):
        return False
    kind, colon, index = value.partition(":")
    return value in ("auto", "cpu", "cuda", "mps") or (kind == "cuda" and colon == ":" and index.isdigit())


DEVICE = Kind("auto, cpu, cuda, cuda:N or mps", _device, lambda w: w.strip().lower(), "auto|cpu|cuda|cuda:N|mps")
PRECISION = Kind("one of '32', 'bf16', '16-mixed' (text)", lambda v: isinstance(v, str) and v in PRECISIONS,
                 lambda w: w.strip().lower(), "|".join(PRECISIONS))  # fmt: skip


_TABLE = (
    Option("model", "model", "mlp", text("a model spec") | python("a torch.nn.Module or a model config", _object),
           "NAME[:WIDTHS][,KEY=VALUE...]: mlp (e.g. mlp:64,32, mlp:256,256,norm=layer,residual=true), cnn1d "
           "(signals, or a table's columns in order: cnn1d:32,64), cnn (images: cnn:32,64,residual=true), linear, "
           "logistic, softmax or svm.",
           "A descend model's sizes may be left out: they come from the data. A spec names a model, its widths "
           "(hidden sizes, or channels) and settings (descend.models.from_spec); a config is Model.config()'s dict.",
           positional=True, metavar="SPEC"),
    # data
    Option("data", "data", None, PATH | python("a DataFrame, arrays, a pair (X, y), a prepared dataset or a loader",
                                               lambda v: v is not None),
           "The training data: a table file (CSV, Parquet, ...), a DataFrame, arrays or a loader.",
           "What descend.data.prepare reads is prepared with the options of the data group. Data "
           "that does not fit in memory comes as a loader of (X, y) batches (a DataLoader, reseeded each epoch "
           "from seed so a resumed run sees the same batches, or a descend.data.LoaderBatches) that knows its "
           "length; its first 2,048 rows give the task (float targets regression, 0/1 binary, other integers "
           "classes), lr='auto' and the sharpness monitor; batch_size is the loader's.",
           flag=None, positional=True, resume_free=True),  # a resumed run's data is checked by its fingerprint
    Option("target", "data", None, columns("a column name (or a list of them)") | NONE,
           "Column(s) to predict (a table's; comma-separated for several regression targets).", metavar="COL"),
    Option("task", "data", "auto", choice(*TASKS), "Learning task (auto: inferred from the target)."),
    Option("validation", "data", None, number(0, 1, open_high=True) | NONE | python("a loader of validation batches",
                                                                                 _loader),
           "Fraction of rows held out for validation (None: 0.2 of a table, none with a loader)."),
    Option("scale", "data", "standard", choice("standard", "minmax", "none"),
           "Feature scaling, with the training rows' statistics."),
    Option("encoding", "data", None, text("a text encoding such as latin-1") | NONE,
           "Text encoding of a CSV/TSV file (default: UTF-8, with or without a BOM; UTF-16 by its mark)."),
    Option("impute", "data", "median", choice("median", "mean", "drop", "error"),
           "Numeric gaps: the training median (or mean) plus a was-missing column; drop the rows; or error.",
           "Text gaps become their own category."),
    Option("unseen", "data", "infrequent", choice("infrequent", "ignore", "error"),
           "A category not seen in training: pooled with the infrequent ones, all zeros, or an error."),
    Option("min_frequency", "data", 5, integer(1), "Categories with fewer training rows are pooled as infrequent."),
    Option("drop", "data", None, names("column names") | NONE, "Columns to leave out.", metavar="COLS"),
    Option("keep", "data", None, names("column names") | NONE,
           "Columns to use though they look like identifiers or are constant.", metavar="COLS"),
    Option("dates", "data", None, names("column names") | NONE,
           "Columns to read as dates (expanded into year, month, weekday, ...; found by default).", metavar="COLS"),
    Option("categorical", "data", None, names("column names") | NONE,
           "Columns to read as categories (e.g. integer codes).", metavar="COLS"),
    Option("strict", "data", False, BOOLEAN,
           "Refuse each problem of the table (gaps, unseen categories, identifiers, ...) instead of handling it."),
    Option("image_size", "data", None, SIZE | NONE,
           "Size a folder's images are resized to: N (square) or HxW (default: 32x32).", metavar="SIZE"),
    Option("augment", "data", "none", choice(*AUGMENTS),
           "Seeded random flips and/or crops of each training batch of signals or images (not tables).",
           "flip mirrors an example's last axis with probability 1/2; crop shifts it by up to an eighth of each "
           "spatial axis, zero-padded (descend.data.augment). The draws are a function of the seed and the step, "
           "so a resumed run sees the same batches. Not for a loader (augment in it) or a full-batch optimizer."),
    # model
    Option("activation", "model", None, choice(*ACTIVATIONS) | NONE,
           "Hidden-layer activation of a model built from its name (default: the model's, relu)."),
    Option("init", "model", None, choice(*INITS) | NONE,
           "Weight initialisation of a model built from its name (auto: he for relu-like, else xavier)."),
    Option("loss", "model", None, choice(*LOSSES) | NONE | python("a descend.losses.Loss or a callable", callable),
           "Loss (default: the model's, hinge for svm, or the task's).", "A callable takes (output, target)."),
    Option("scale_target", "model", "auto", choice("auto") | BOOLEAN,
           "Train a regression on the standardised target (auto: where it applies).",
           "The loss is taken on (y - mu) / sigma (the training rows' statistics) while a descend model predicts "
           "in the target's units (a fixed output scale sigma f(x) + mu): the recorded loss is in standardised "
           "units, the metrics in the target's. Without it a target in the hundreds needs weights in the "
           "hundreds, which a default learning rate takes thousands of steps to reach. auto: for regression with a "
           "named loss and a descend model; True: the same, an error where it cannot apply."),
    Option("metrics", "model", None, names("metric names") | NONE,
           "Validation metrics to record (default: the task's).", metavar="NAMES"),
    # optimizer
    Option("optimizer", "optimizer", "adam", choice(*OPTIMIZERS) | python(
        "a torch.optim.Optimizer or a factory params -> optimizer", _object), "Optimizer.",
           "A factory (such as a class) gets optimizer_options; newton and lbfgs step on the whole training set."),
    Option("lr", "optimizer", None,
           number(open_low=True) | choice("auto") | python("a schedule (callable step -> lr)", callable) | NONE,
           "Learning rate, or auto (the range test picks it). Default: the optimizer's.",
           "auto runs the learning-rate range test (descend.tune.auto) and trains at its rate; the sweep goes to "
           "lr_find.csv, its reason to FitResult.lr_find. A ReduceOnPlateau schedule is stepped each epoch with "
           "the validation loss."),
    Option("optimizer_options", "optimizer", None, SETTINGS | NONE,
           "A setting of the optimizer, e.g. momentum=0.9, betas=0.9,0.99 or eps=1e-6 (repeatable).",
           flag="--optimizer-option", metavar="KEY=VALUE"),
    Option("batch_size", "optimizer", None, choice("full") | integer(1) | NONE,
           f"Rows per step: full (batch descent), 1 (stochastic) or n. Default: {BATCH_SIZE}, or full for "
           f"{' and '.join(SECOND_ORDER)}.", metavar="N"),
    Option("accumulate", "optimizer", 1, integer(1), "Average the gradients of this many batches per update.",
           "accumulate, clip_norm and clip_value are rules of descend's optimizer engine, before the optimizer's."),
    Option("clip_norm", "optimizer", None, number(open_low=True) | NONE,
           "Clip the gradients' global norm to this value before each update."),
    Option("clip_value", "optimizer", None, number(open_low=True) | NONE,
           "Clip each gradient entry to [-value, value] before each update."),
    # schedule
    Option("schedule", "schedule", None, choice(*SCHEDULES) | python("a callable step -> multiplier", callable) | NONE,
           "Learning-rate schedule over the planned run, peaking at the learning rate (default: constant).",
           "The planned run is epochs x batches (or max_steps); the peak is lr (the range test's with 'auto', or "
           "the optimizer's default). See descend.schedules.named; the planned rates go to schedule.csv. Early "
           "stopping waits until the schedule has annealed (fallen to half its peak)."),
    Option("warmup_steps", "schedule", None, integer(1) | NONE,
           "Updates of linear warm-up (warmup-cosine; default: 5% of the run)."),
    Option("step_size", "schedule", None, integer(1) | NONE,
           "Updates between drops of the step schedule (default: a third of the run)."),
    Option("gamma", "schedule", None, number(0, 1, open_low=True) | NONE,
           "Factor of each drop (step: 0.1, plateau: 0.5) or of each update (exponential: to 1% at the end)."),
    # regularisation
    Option("weight_decay", "regularisation", 0.0, number(0), "Weight decay (the optimizer's own, decoupled in AdamW)."),
    Option("l1", "regularisation", 0.0, number(0), "L1 penalty l1 * sum |w| on the penalized parameters."),
    Option("l2", "regularisation", 0.0, number(0), "L2 penalty l2/2 * sum w^2 on the penalized parameters."),
    Option("penalize", "regularisation", "weights", choice("weights", "all") | names("parameter names") | python(
        "a callable (name, parameter) -> bool", callable),
           "Parameters the penalties apply to: weights (2+ dimensions), all, or names."),
    Option("dropout", "regularisation", None, number(0, 1, open_high=True) | NONE,
           "Dropout rate of a model built from its name (default: the model's, 0)."),
    # stopping
    Option("epochs", "stopping", 100, integer(1), "Most epochs to train."),
    Option("max_steps", "stopping", None, integer(1) | NONE, "Most optimizer steps to take."),
    Option("loss_threshold", "stopping", None, number(-math.inf) | NONE,
           "Stop once an epoch's training loss is at or below this."),
    Option("tol", "stopping", 1e-4, number(0) | NONE,
           "Stop when the training loss changes by less than this (relative), n-iter-no-change epochs in a row."),
    Option("n_iter_no_change", "stopping", 5, integer(1), "Epochs in a row for tol."),
    Option("early_stopping", "stopping", None, BOOLEAN | NONE | python(
        "an EarlyStopping", _instance("descend.train.callbacks.EarlyStopping")),
           "Stop when the monitored validation metric stops improving (default: on with a validation set).",
           "fit's own follows monitor, patience and min_delta and ends the run with the best epoch's weights."),
    Option("monitor", "stopping", "auto", choice("auto") | text("a recorded metric such as val_loss"),
           "Metric early stopping and best weights follow (auto: val_loss; or loss, val_accuracy, ...)."),
    Option("patience", "stopping", 10, integer(1), "Epochs without improvement before early stopping."),
    Option("min_delta", "stopping", 0.0, number(0), "Smallest change of the monitored metric counted as improvement."),
    # diagnostics
    Option("diagnostics", "diagnostics", True, BOOLEAN,
           "Watch the descent: gradient health per layer, sharpness against 2/lr, findings.",
           "See descend.inspect.diagnostics: sharpness on a fixed batch of 128 training rows, the findings at "
           "the end (finding events, FitResult.findings). Monitors of the same kinds in callbacks are used "
           "instead."),
    Option("guard", "diagnostics", True, BOOLEAN | python(
        "a DivergenceGuard", _instance("descend.train.guard.DivergenceGuard")),
           "Divergence guard: skip bad batches, roll a diverging descent back at a lower rate."),
    Option("health_every", "diagnostics", 100, integer(1), "Record per-layer gradient health every N steps."),
    Option("sharpness_every", "diagnostics", 1000, integer(1),
           "Measure sharpness (top Hessian eigenvalue) against 2/lr every N steps."),
    # run
    Option("seed", "run", 0, integer(0) | NONE, "Seed of the split, initialisation, batch order and dropout (None: drawn).",
           "The caller's global torch RNG is left as it was; a drawn seed is recorded in config.json."),
    Option("run_dir", "run", None, PATH | NONE, "Run folder to write (new or empty).",
           "See descend.train.run. One process at a time owns a run folder.",
           flag="--out", resume_free=True, metavar="DIR"),
    Option("resume", "run", None, PATH | NONE, "Continue the unfinished run in this folder (its options by default).",
           "From its newest whole checkpoint (a corrupt one is passed over, with a RunWarning), or from the "
           "beginning; the other options must be the run's.", resume_free=True, metavar="DIR"),
    Option("overwrite", "run", False, BOOLEAN, "Replace the run already in the --out folder.",
           "Without it a folder holding a run is refused, unless that run trained nothing yet.", resume_free=True),
    Option("checkpoint_every", "run", None, integer(1) | NONE,
           "Also checkpoint every N steps (there is always one per epoch).", resume_free=True),
    Option("threads", "run", "auto", choice("auto") | integer(1) | NONE,
           "torch threads during training (auto: 1 where a step does under 2**24 floating-point operations).",
           "Small matrix products lose more to waking threads than they gain (descend.train.threads); None leaves "
           "torch's setting."),
    Option("compile", "run", None, BOOLEAN | NONE,
           "Compile each training step with torch.compile (None: for runs of 20,000 planned steps or more).",
           "A compile costs seconds and saves about 250 us a step on a CPU (descend.train.compiled.step_path says "
           "when None compiles; the run record says which path ran and why); results equal the eager run's to "
           "rounding. Not for second-order optimizers."),
    Option("device", "run", "cpu", DEVICE | python("a torch.device", _instance("torch.device")),
           "Where to train: auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps.",
           "The model, the data in memory, the optimizer's state and the diagnostics live there; checkpoints are "
           "device-free, so a run resumes on another device (descend.train.devices). The model comes back on it.",
           resume_free=True, metavar="DEVICE"),
    Option("precision", "run", "32", PRECISION,
           "Arithmetic of the forward pass: 32 (float32), bf16 (bfloat16 autocast) or 16-mixed (float16 autocast "
           "with a gradient scaler).",
           "Parameters, gradients and the optimizer's state stay float32; under 16-mixed every reader of "
           "gradients sees them unscaled and a step the scaler skips is a guard_skip event, not divergence "
           "(descend.train.devices). First-order optimizers only; compile=True steps eagerly under autocast."),
    Option("checkpointing", "run", False, BOOLEAN,
           "Gradient checkpointing: recompute each block's activations in the backward pass (less memory, one "
           "more forward pass of the blocks).",
           "For descend's models with blocks (mlp's hidden layers, cnn's stages, gpt and ftt's transformer blocks); "
           "the gradients are those without it. A model without blocks is refused.", resume_free=True),
    Option("callbacks", "run", (), python("a sequence of descend.train.Callback", _object),
           "Extra callbacks (Python only).", flag=None, resume_free=True),
    Option("progress", "run", None, BOOLEAN | NONE, "A progress bar (None: when stderr is a terminal; Python only: the "
           "command line prints its own).", flag=None, resume_free=True),
)

OPTIONS: dict[str, Option] = {o.name: o for o in _TABLE}
"""Every option of ``fit``, in the order of its signature."""
#: the options ``fit`` passes on to :func:`descend.data.prepare` for data it reads itself, besides target, task
#: and validation (which also mean something for prepared data); image_size goes to a folder of images only, and
#: augment to the training loop
PREPARE = tuple(o.name for o in _TABLE if o.group == "data" and o.name not in ("data", "target", "task", "validation",
                                                                             "image_size", "augment"))


def docstring(indent: int = 8, width: int = 116) -> str:
    """The ``Args`` of ``fit``'s docstring: each option's help, what it accepts, its default and its note."""
    lines = []
    for o in _TABLE:
        default = "" if o.positional else f" Default: {o.default!r}."
        text = f"{o.name}: {o.help} Accepts {o.accepts.text}.{default} {o.note}".rstrip()
        lines += textwrap.wrap(text, width, initial_indent=" " * indent, subsequent_indent=" " * (indent + 4))
    return "\n".join(lines)


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
        if option.name == "optimizer_options" and isinstance(value, Mapping):
            value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        option.check(value)
        out[name] = value
    return out
