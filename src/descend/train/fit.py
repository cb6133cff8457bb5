"""``descend.fit``: one function for batch, stochastic and mini-batch gradient descent.

Each step on a batch :math:`B` of the training rows updates the parameters :math:`\\theta` with the optimizer's
rule applied to the gradient of

.. math:: J_B(\\theta) = \\frac{1}{|B|}\\sum_{i\\in B} \\ell(f_\\theta(x_i), y_i)
          + \\lambda_1 \\sum_{w\\in P} |w| + \\frac{\\lambda_2}{2}\\sum_{w\\in P} w^2,

:math:`\\ell` the loss, :math:`P` the penalized parameters (``penalize``, by default the weights, not the biases),
:math:`\\lambda_1` = ``l1``, :math:`\\lambda_2` = ``l2``. ``batch_size="full"`` is batch gradient descent, ``1``
stochastic, ``n`` mini-batch.

Example:
    >>> import torch, descend
    >>> from types import SimpleNamespace
    >>> X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)); y = X @ torch.tensor([1.0, -2.0, 0.5])
    >>> data = SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task="regression")
    >>> result = descend.fit("linear", data, optimizer="sgd", lr=0.1, batch_size="full", loss_threshold=1e-10,
    ...                      epochs=1000)
    >>> result.converged, result.stop_reason
    (True, 'loss_threshold')
    >>> slopes = result.model(torch.eye(3)) - result.model(torch.zeros(1, 3))  # in y's units
    >>> [round(w, 3) for w in slopes[:, 0].tolist()]
    [1.0, -2.0, 0.5]
"""

from __future__ import annotations

import inspect
import math
import os
import re
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from descend import losses as _losses
from descend import metrics as _metrics
from descend import models, schedules
from descend.data.augment import Augment
from descend.data.text import is_text
from descend.errors import ConfigError, DataError, DescendError
from descend.models.blocks import set_checkpointing
from descend.optim.chain import ChainOptimizer
from descend.train.callbacks import Checkpoint, EarlyStopping, ProgressBar, Recorder
from descend.train.devices import Precision, resolve_device
from descend.train.distributed import active, join, leader
from descend.train.guard import DivergenceGuard
from descend.train.loop import Loop, closure_convention
from descend.train.options import BATCH_SIZE, OPTIONS, PREPARE, docstring
from descend.train.options import check as check_options
from descend.train.run import RunFolder, atomic_write, environment, jsonable
from descend.train.saved import save_model
from descend.train.setup import PenaltySpec, _pair, make_optimizer, make_penalty, resolve_data
from descend.train.state import Callback
from descend.train.text import text_data
from descend.train.threads import auto_threads

__all__ = ["ConvergenceWarning", "FitResult", "find_lr", "fit"]

CONVERGED = ("loss_threshold", "tolerance", "early_stopping")
LIMITS = ("max_epochs", "max_steps")  # stops on a budget: the run did not converge, and is warned about
DIVERGED_RISE = 1e3  # without a guard, an epoch loss this many times the first epoch's is a divergence
MODEL_SETTINGS = ("activation", "init", "dropout")  # options of a model fit builds from a name


class ConvergenceWarning(UserWarning):
    """Training stopped on a limit (epochs, steps) or diverged, not because a convergence rule was met."""


@dataclass
class FitResult:
    """What ``fit`` returns. ``history`` has one dict per epoch (the rows of ``metrics.csv``)."""

    model: nn.Module
    history: list[dict[str, float]]
    converged: bool
    stop_reason: str
    epochs: int
    steps: int
    task: str
    loss: str
    best_epoch: int | None = None
    run_dir: Path | None = None
    data: Any = field(default=None, repr=False)
    lr_find: Any = field(default=None, repr=False)  # with lr="auto": the range test (descend.tune.LRFindResult)
    findings: list[Any] = field(default_factory=list)
    """What the diagnostics found (:class:`descend.inspect.Finding`: ``rule``, ``message``, ``evidence``,
    ``suggestion``, ``step``/``epoch``/``layer``); empty when ``diagnostics=False`` or all was well."""
    diverged: bool = False
    """Whether the descent blew up at some point, whatever stopped it: the divergence guard rolled it back or
    stopped it, or (without a guard) an epoch's training loss was non-finite or over ``DIVERGED_RISE`` times the
    first epoch's. A diverged run is never ``converged``."""
    guard: dict[str, Any] | None = None
    """What the divergence guard did: ``rollbacks``, ``skips`` (bad batches skipped), ``lr_scale`` (the product of
    its reductions); None without a guard."""
    step: str = ""
    """How the training steps ran, and why: ``"eager: ..."`` or ``"compiled: ..."`` (``compile``'s rule)."""

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's row (or the best epoch's, when best weights were restored)."""
        if self.best_epoch is not None:
            return self.history[self.best_epoch - 1]
        return self.history[-1] if self.history else {}

    def history_frame(self) -> Any:
        """``history`` as a pandas DataFrame."""
        import pandas

        return pandas.DataFrame(self.history)


def _describe(value: Any) -> Any:
    if isinstance(value, models.Model):
        return value.config()
    if isinstance(value, Callback):  # its settings (plain public attributes), so the config can rebuild it
        settings = {k: jsonable(v) for k, v in vars(value).items()
                    if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str)))}  # fmt: skip
        return {"class": type(value).__name__, **settings}
    if isinstance(value, (nn.Module, torch.optim.Optimizer)):
        return type(value).__name__
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, (list, tuple)) and not all(isinstance(v, (int, float, str)) for v in value):
        return [_describe(v) for v in value]
    return jsonable(value)


def _comparable(value: Any) -> Any:
    return re.sub(r" at 0x[0-9a-f]+", "", str(value))


def _check_arguments(args: dict[str, Any]) -> None:
    """Each option against the table (:mod:`descend.train.options`), then what one option says of another."""
    check_options(args)
    if args["schedule"] is not None and callable(args["lr"]):
        raise ConfigError("schedule: lr is already a schedule; expected lr a number (the peak) or 'auto' with "
                          "schedule=, or a schedule as lr without schedule=")  # fmt: skip
    for name in ("warmup_steps", "step_size", "gamma"):
        if args[name] is not None and not isinstance(args["schedule"], str):
            raise ConfigError(f"{name}: {name}={args[name]!r} sets a named schedule's shape; expected a schedule "
                              "name with it (schedule='step', ...) or None")  # fmt: skip
    if isinstance(args["early_stopping"], EarlyStopping):
        changed = [n for n in ("monitor", "patience", "min_delta") if args[n] != OPTIONS[n].default]
        if changed:
            raise ConfigError(f"{changed[0]}: {changed[0]}={args[changed[0]]!r} is a setting of fit's own early "
                              "stopping; expected it on the EarlyStopping given as early_stopping")  # fmt: skip
    if isinstance(args["device"], torch.device):
        args["device"] = str(args["device"])  # recorded as a word the command line reads back
    resolve_device(args["device"])  # a device this machine lacks is refused before a run folder is made
    if not isinstance(args["model"], (str, dict)):
        given = [n for n in MODEL_SETTINGS if args[n] is not None]
        if given:
            raise ConfigError(f"{given[0]}: {given[0]}={args[given[0]]!r} applies to a model fit builds from its "
                              f"name; expected None with {type(args['model']).__name__} (build it into the model)")  # fmt: skip


def _checked(args: dict[str, Any]) -> int:
    """Check fit's arguments; draw the seed when it is None (written back into ``args``) and return it."""
    _check_arguments(args)
    if args["seed"] is None:
        args["seed"] = secrets.randbelow(2**31)
    return int(args["seed"])


def _stream_batch(X_dtype: torch.dtype, y_dtype: torch.dtype, unsqueeze: bool,
                  transform: Callable[[Tensor], Tensor] | None, n_classes: int | None,
                  device: torch.device) -> Callable[..., Any]:
    """For a loader: a batch ``(X, y)`` as the loop needs it, converted as fit converts in-memory targets."""
    def batch(raw: Any, where: str) -> tuple[Tensor, Tensor, Tensor]:
        """``(X, y for the loss, y for the metrics)``."""
        X, y = _pair(raw, where)
        # non-blocking: asynchronous from a loader's pinned memory (DataLoader(pin_memory=True))
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        y = y_metric = y.to(y_dtype)
        if n_classes is not None and len(y) and int(y.max()) >= n_classes:
            raise DataError(f"data: {where} holds class {int(y.max())}, but the model has {n_classes} outputs (the "
                            "classes of the loader's first rows); expected a model built with out_features="
                            f"{int(y.max()) + 1} or more, e.g. descend.models.MLP(in_features, n_classes)")  # fmt: skip
        if unsqueeze:
            y = y.unsqueeze(1)
        if transform is not None:
            y = transform(y)
        return X.to(X_dtype), y, y_metric

    return batch


def _target_scale(
    option: bool | str, model: nn.Module, task: str, named_loss: bool, loader: bool, y: Tensor
) -> tuple[Tensor, Tensor] | None:
    """The (mean, std) to standardise a regression target with, or None (see ``fit``'s ``scale_target``)."""
    if option is False:
        return None
    why = ("the data is a loader (its target statistics are not known before training)" if loader else
           "the task is not regression" if task != "regression" else
           "the loss is a custom callable (it expects the target's units)" if not named_loss else
           f"{type(model).__name__} is not a descend model (it cannot carry an output scale)"
           if not isinstance(model, models.Model) else None)  # fmt: skip
    if why is not None:
        if option is True:
            raise ConfigError(f"scale_target: scale_target=True does not apply: {why}; expected 'auto' or False")
        return None
    assert isinstance(model, models.Model)
    if model.output_scale is not None and model.output_shift is not None:
        return model.output_shift, model.output_scale
    values = y.reshape(len(y), -1)
    mu = values.mean(0)
    sigma = values.std(0, correction=0) if len(values) > 1 else torch.ones_like(mu)
    sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    model.set_output_scale(mu, sigma)
    return mu, sigma


def _build_model(spec: Any, data: Any, settings: dict[str, Any]) -> nn.Module:
    if isinstance(spec, str):
        model = models.from_spec(spec, **settings)
    elif isinstance(spec, dict):
        model = models.from_config({**spec, **settings})
    else:
        model = spec
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: invalid model {spec!r}; expected a torch.nn.Module or one of {', '.join(models.NAMES)}")
    if isinstance(model, models.Model):
        if data.task not in model.tasks:
            raise ConfigError(
                f"model: {type(model).__name__} fits {' or '.join(model.tasks)} tasks, but the data is {data.task}"
            )
        if not model.built:
            n_in = model.in_features_for(data.example_shape)  # channels for a CNN, all values for a vector model
            models.check_size(model, n_in, data.n_outputs())  # before allocating, not by running out
            model.build(n_in, data.n_outputs())
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"model: {type(model).__name__} has no parameters to train")
    return model


def _checkpoint_blocks(model: nn.Module) -> None:
    """Gradient checkpointing on ``model``'s blocks (descend.models.blocks); refused for a model without any."""
    if set_checkpointing(model, True) == 0:
        raise ConfigError(f"checkpointing: {type(model).__name__} has no blocks to recompute (checkpointing applies "
                          "to mlp with hidden layers, cnn, cnn1d, gpt and ftt); expected checkpointing=False, or "
                          "torch.utils.checkpoint in your own module's forward")  # fmt: skip


def _callbacks(args: dict[str, Any], has_val: bool, run: RunFolder | None) -> list[Callback]:
    user = list(args["callbacks"])
    for cb in user:
        if not isinstance(cb, Callback):
            raise ConfigError(f"callbacks: invalid callback {cb!r}; expected instances of descend.train.Callback")
    kinds = {type(cb) for cb in user}
    stopping = args["early_stopping"]
    if isinstance(stopping, EarlyStopping):
        user.append(stopping)
    elif stopping is True or (stopping is None and has_val and EarlyStopping not in kinds):
        monitor = "val_loss" if args["monitor"] == "auto" else args["monitor"]
        if not has_val and monitor.startswith("val_"):
            raise ConfigError("early_stopping: needs a validation set; expected validation > 0 or early_stopping=False")
        user.append(EarlyStopping(monitor, patience=args["patience"], min_delta=args["min_delta"]))
    guard = args["guard"]
    if isinstance(guard, DivergenceGuard):
        user.insert(0, guard)
    elif guard is True and DivergenceGuard not in kinds:
        user.insert(0, DivergenceGuard())  # first: it repairs the epoch's row before others read it
    progress = args["progress"]
    if progress is not False and ProgressBar not in kinds:
        user.insert(0, ProgressBar(force=progress is True))
    if run is not None:
        if Recorder not in kinds:
            user.append(Recorder())
        if Checkpoint not in kinds:
            user.append(Checkpoint(every_steps=args["checkpoint_every"]))
    # Checkpoints last, so they see every other callback's state for the epoch.
    return sorted(user, key=lambda cb: isinstance(cb, Checkpoint))


def _augment(kind: str, data: Any, closure: str | None, seed: int) -> Any:
    """The loop's seeded augmentation, or None; refused where the loop cannot apply it to examples."""
    if kind == "none":
        return None
    if data.stream is not None:
        raise ConfigError(f"augment: augment={kind!r} applies to data in memory, and this data is a loader; expected "
                          "augment='none' (augment inside the loader's dataset instead)")  # fmt: skip
    if data.X.dim() < 3:
        raise ConfigError(f"augment: augment={kind!r} applies to examples with a channel and spatial axes (N x C x L, "
                          f"N x C x H x W), and the training features have shape {tuple(data.X.shape)}; expected "
                          "augment='none' for a table")  # fmt: skip
    if closure is not None:
        raise ConfigError(f"augment: augment={kind!r} needs a first-order optimizer (its batches change every step); "
                          "this one steps on the whole training set through a closure")  # fmt: skip
    return Augment(kind, seed=seed)


def fit(
    model: nn.Module | str | dict[str, Any],
    data: Any,
    *,
    target: str | Sequence[str] | None = None,
    task: str = "auto",
    validation: Any = None,
    scale: str = "standard",
    encoding: str | None = None,
    impute: str = "median",
    unseen: str = "infrequent",
    min_frequency: int = 5,
    drop: Sequence[str] | None = None,
    keep: Sequence[str] | None = None,
    dates: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    strict: bool = False,
    image_size: int | Sequence[int] | None = None,
    augment: str = "none",
    activation: str | None = None,
    init: str | None = None,
    loss: str | _losses.Loss | Callable[..., Any] | None = None,
    scale_target: bool | str = "auto",
    metrics: Sequence[str] | None = None,
    optimizer: Any = "adam",
    lr: float | Callable[[int], float] | str | None = None,
    optimizer_options: dict[str, Any] | None = None,
    batch_size: int | str | None = None,
    accumulate: int = 1,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    schedule: str | Callable[[int], float] | None = None,
    warmup_steps: int | None = None,
    step_size: int | None = None,
    gamma: float | None = None,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    l2: float = 0.0,
    penalize: PenaltySpec = "weights",
    dropout: float | None = None,
    epochs: int = 100,
    max_steps: int | None = None,
    loss_threshold: float | None = None,
    tol: float | None = 1e-4,
    n_iter_no_change: int = 5,
    early_stopping: bool | EarlyStopping | None = None,
    monitor: str = "auto",
    patience: int = 10,
    min_delta: float = 0.0,
    diagnostics: bool = True,
    guard: bool | DivergenceGuard = True,
    health_every: int = 100,
    sharpness_every: int = 1000,
    seed: int | None = 0,
    run_dir: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    threads: int | str | None = "auto",
    compile: bool | None = None,
    device: str | torch.device = "cpu",
    precision: str = "32",
    checkpointing: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` by gradient descent and return a :class:`FitResult`.

    Every option is declared once, in :mod:`descend.train.options` (what it accepts, its default, a one-line help,
    its group); ``descend train --help`` prints the same table as flags.

    Args:
        {options}

    ``converged`` is True when a convergence rule stopped the run (``loss_threshold``, ``tol``, early stopping)
    and the descent never diverged (``FitResult.diverged``); a run that ends on ``epochs`` or ``max_steps``, or
    that diverged, whatever stopped it, is not converged and issues a :class:`ConvergenceWarning`. A stop asked
    for by a callback of the caller's (``state.stop = "my_reason"``) is not converged and not warned about. The
    returned model is in evaluation mode.
    """
    args = dict(locals())
    seed = _checked(args)
    dist = join()  # under torchrun: the process group (descend.train.distributed)
    run: RunFolder | None = None
    finished = False
    try:
        if dist is not None:  # one seed and one run folder, process 0's
            seed = args["seed"] = dist.broadcast(seed)
            run = dist.on_leader(lambda: _own_folder(resume, run_dir, overwrite))
        else:
            run = _own_folder(resume, run_dir, overwrite)
        result = _seeded(args, seed, run)
        finished = True
    except DescendError:
        if run is not None and resume is None and not run.started:
            run.discard()  # refused before it trained: nothing is left behind
        raise
    finally:
        if run is not None:  # an interrupted run keeps its lock file: the mark of a run folder, however early
            run.release(remove_lock=finished)
        if dist is not None:
            dist.finish()
    assert isinstance(result, FitResult)
    return result


def _own_folder(resume: Any, run_dir: Any, overwrite: bool) -> RunFolder | None:
    if resume is not None:
        return RunFolder.open(resume)
    if run_dir is not None:
        return RunFolder.create(run_dir, overwrite=overwrite)
    return None


if fit.__doc__:  # the options' help, from the table (absent under python -OO)
    fit.__doc__ = fit.__doc__.replace("        {options}", docstring())


def find_lr(model: nn.Module | str, data: Any, **options: Any) -> Any:
    """The learning rate ``fit(model, data, lr="auto", **options)`` would train at, without the training.

    It runs fit's own code up to the range test: the same data preparation and split, target scaling, model and
    initialisation, loss, optimizer, batch size and planned steps (which size the sweeps), with the same seed,
    so the rate is the one that run picks, to the last digit. ``options`` are fit's keyword arguments
    (``run_dir``, ``resume`` and ``callbacks`` do not apply). Returns the
    :class:`~descend.tune.LRFindResult` (``lr``, ``reason``, the sweeps).

    Example:
        >>> import torch
        >>> X = torch.randn(256, 3); y = X @ torch.tensor([1.0, -2.0, 0.5])
        >>> found = find_lr("linear", (X, y), optimizer="sgd", epochs=20)
        >>> bool(found.lr > 0)
        True
    """
    for name in ("lr", "run_dir", "resume", "callbacks"):
        if name in options:
            raise ConfigError(f"find_lr: {name} does not apply (the range test chooses lr and trains nothing); "
                              f"expected fit's other options")  # fmt: skip
    try:
        bound = inspect.signature(fit).bind(model, data, lr="auto", **options)
    except TypeError as e:
        raise ConfigError(f"find_lr: {e}; expected fit's keyword arguments") from e
    bound.apply_defaults()
    args = dict(bound.arguments)
    return _seeded(args, _checked(args), None, range_test_only=True)


def _seeded(args: dict[str, Any], seed: int, run: RunFolder | None, *, range_test_only: bool = False) -> Any:
    before = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _fit(args, seed, run, range_test_only=range_test_only)
    finally:
        torch.set_num_threads(before)


def _fit(args: dict[str, Any], seed: int, run: RunFolder | None, *, range_test_only: bool = False) -> Any:
    settings = {n: args[n] for n in MODEL_SETTINGS if args[n] is not None}
    if is_text(args["data"]):  # the model first: its block is the length the text is cut into
        data, model = text_data(args["data"], args["model"], batch_size=args["batch_size"], seed=seed,
                                settings=settings, validation=args["validation"])  # fmt: skip
    else:
        read = (*PREPARE, "image_size")
        data = resolve_data(args["data"], target=args["target"], task=args["task"], validation=args["validation"],
                            seed=seed, options={n: args[n] for n in read},
                            changed=[n for n in read if args[n] != OPTIONS[n].default])  # fmt: skip
        model = _build_model(args["model"], data, settings)
    param = next(model.parameters())
    # a language model reads token ids (its input_dtype); other models read features in their parameters' dtype
    X_dtype = getattr(model, "input_dtype", None) or (param.dtype if param.is_floating_point() else torch.float32)
    data.X, data.X_val = data.X.to(X_dtype), data.X_val.to(X_dtype)
    y_dtype = torch.long if data.task == "multiclass" else X_dtype
    data.y, data.y_val = data.y.to(y_dtype), data.y_val.to(y_dtype)
    device = resolve_device(args["device"])
    model.to(device)  # before the optimizer is made: its state follows the parameters
    data.X, data.y, data.X_val, data.y_val = (t.to(device) for t in (data.X, data.y, data.X_val, data.y_val))
    if args["checkpointing"]:
        _checkpoint_blocks(model)

    spec = args["loss"]
    if spec is None:
        spec = getattr(model, "default_loss", None)
        if spec is not None and data.task not in _losses.LOSSES.get(spec, {}):
            spec = None
    named_loss = isinstance(spec, _losses.Loss) or not callable(spec)
    y, y_val = data.y, data.y_val
    if not named_loss:
        loss_fn, loss_name = spec, getattr(spec, "__name__", type(spec).__name__)
    else:
        loss_obj = _losses.get(spec, data.task)
        loss_fn, loss_name = loss_obj.fn, loss_obj.name
        was_training = model.training
        model.eval()
        with torch.no_grad():
            probe = model(data.X[:2])
        model.train(was_training)
        unsqueeze = _losses.check_output(tuple(probe.shape), tuple(y.shape), data.task, data.n_classes)
        if unsqueeze:
            y, y_val = y.unsqueeze(1), y_val.unsqueeze(1)
        if data.task == "multiclass" and probe.dim() > 2:  # logits per position: the loss per token
            loss_fn = _losses.per_position(loss_fn)
        if loss_obj.target_transform is not None:
            y, y_val = loss_obj.target_transform(y), loss_obj.target_transform(y_val)
    metric_names = _metrics.check(args["metrics"], data.task)
    recorded = ("loss", "val_loss", *(f"val_{m}" for m in metric_names))
    if args["monitor"] not in ("auto", *recorded):
        raise ConfigError(f"monitor: invalid monitor={args['monitor']!r}; expected auto or a recorded metric of this "
                          f"{data.task} run: {', '.join(recorded)}")  # fmt: skip
    if data.stream is not None:
        transform = None if not named_loss else loss_obj.target_transform
        shaped = named_loss and unsqueeze
        classes = int(probe.shape[-1]) if named_loss and data.task == "multiclass" else None  # the model's outputs
        data.batch = _stream_batch(X_dtype, y_dtype, shaped, transform, classes, device)
    scaled = _target_scale(args["scale_target"], model, data.task, named_loss, data.stream is not None, y)
    if scaled is not None:
        loss_fn = _losses.standardised(loss_fn, scaled[0].to(y.dtype), scaled[1].to(y.dtype))

    auto = args["lr"] == "auto"
    lr = None if auto else args["lr"]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(
        args["optimizer"],
        params,
        lr=lr,
        weight_decay=args["weight_decay"],
        options=dict(args["optimizer_options"] or {}),
        clip_norm=args["clip_norm"],
        clip_value=args["clip_value"],
        accumulate=args["accumulate"],
    )
    closure = closure_convention(optimizer)
    if closure is not None and args["compile"]:
        raise ConfigError(f"compile: {type(optimizer).__name__} re-evaluates the loss through a closure, which the "
                          "compiled step does not; expected compile=False, or a first-order optimizer")  # fmt: skip
    precision = Precision(args["precision"], device)
    if closure is not None and precision.mixed:
        raise ConfigError(f"precision: precision={args['precision']!r} applies to first-order optimizers, and "
                          f"{type(optimizer).__name__} re-evaluates the loss through a closure; expected "
                          "precision='32'")  # fmt: skip
    if closure is not None and data.stream is not None:
        raise ConfigError(f"optimizer: {type(optimizer).__name__} steps on the whole training set, which a loader does "
                          "not hold; expected a first-order optimizer (sgd, momentum, adam, ...) or in-memory data")  # fmt: skip
    dist = active()
    if dist is not None:
        dist.check(optimizer=optimizer, closure=closure, compile=args["compile"], stream=data.stream is not None)
    augment = _augment(args["augment"], data, closure, seed)
    bs = args["batch_size"]
    if bs is None:
        bs = "full" if closure is not None else BATCH_SIZE
    if closure is not None and bs != "full" and bs < len(data.X):
        raise ConfigError(
            f"batch_size: {type(optimizer).__name__} steps on the whole training set (its step re-evaluates the "
            f"loss through a closure); got batch_size={bs!r}, expected batch_size='full' or None"
        )
    penalty = make_penalty(model, args["l1"], args["l2"], args["penalize"])
    # under torchrun batch_size is each process's: the loop draws global batches (descend.train.distributed)
    batch_size = len(data.X) if bs == "full" else min(int(bs) * (dist.world if dist else 1), len(data.X))
    threads = args["threads"]
    if threads == "auto":  # the work of one step decides, so the batch size must be known (descend.train.threads)
        threads = auto_threads(model, data.X[:1], batch_size)
    if threads is not None:
        torch.set_num_threads(threads)
    n_batches = math.ceil(len(data.X) / batch_size) if data.stream is None else len(data.stream)
    planned = min(args["epochs"] * n_batches, args["max_steps"] or args["epochs"] * n_batches)
    # a schedule runs on the optimizer's updates: with accumulation (descend's engine), one per k batches
    updates = math.ceil(planned / args["accumulate"])
    config = _config(args, data, model, loss_name, batch_size)
    from descend.train.compiled import step_path

    compiled, path = step_path(args["compile"], planned=planned, model=model, penalty=penalty, closure=closure,
                               mixed=precision.mixed, distributed=dist is not None, device=device,
                               checkpointing=args["checkpointing"])  # fmt: skip
    if isinstance(optimizer, ChainOptimizer):  # under compile="auto" it weighs its compile against the plan
        optimizer.plan(0 if compiled else updates)  # a compiled step runs the rules in its own graph
        if optimizer.compiles:
            size = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
            path += f"; the optimizer's rules compiled ({size:,} parameters x {updates:,} updates)"
    config["resolved"].update(device=str(device), precision=precision.name, compile=compiled, step=path)
    if scaled is not None:
        config["resolved"]["target_scale"] = {"mean": scaled[0].tolist(), "std": scaled[1].tolist()}
    if dist is not None:
        config["resolved"]["distributed"] = dist.describe(batch_size, bs)
    # the config first, before the range test or anything long: a killed run can be resumed
    leader(dist, lambda: _open_record(run, args, config) if run is not None else None)
    found = None
    resumed = leader(dist, lambda: bool(args["resume"] is not None and run is not None and run.list_checkpoints()))
    if auto and not resumed:
        from descend.tune.auto import auto_lr

        if closure is not None:
            raise ConfigError(f"lr: lr='auto' does not apply to {type(optimizer).__name__}; expected a number > 0")
        # the run's schedule peaking at 1: the range test's rate will be its peak
        shape = None if args["schedule"] is None else _shaped(args, 1.0, updates)
        found = auto_lr(model, optimizer, loss_fn, data.X, y, batch_size=batch_size, planned=planned, seed=seed,
                        penalty=penalty, schedule=shape)  # fmt: skip
        if dist is not None:  # process 0's rate, should another machine's arithmetic differ in the last digit
            found = dist.broadcast(found)
            for group in optimizer.param_groups:
                group["lr"] = found.lr
        if range_test_only:
            return found
    if args["schedule"] is not None:
        if auto and resumed:  # the range test ran when the run started: its rate is the schedule's peak
            peak = leader(dist, lambda: float(run.read_json("config.json")["resolved"]["lr"]))  # type: ignore[union-attr]
        else:
            peak = float(optimizer.param_groups[0]["lr"])  # the given rate, the range test's, or the optimizer's
        lr = _shaped(args, peak, updates)
        _install_schedule(optimizer, lr)
    plateau = lr if (callable(lr) and hasattr(lr, "step") and hasattr(lr, "state_dict")) else None
    set_lr = None
    if callable(lr) and not any("lr_schedule" in g for g in optimizer.param_groups):
        schedule = lr

        def set_lr(step: int) -> None:
            value = float(schedule(step))
            for group in optimizer.param_groups:
                group["lr"] = value * group.get("lr_scale", 1.0)  # the divergence guard's reductions

        set_lr(0)
    callbacks = _callbacks(args, len(data.X_val) > 0 or data.val_stream is not None, run)
    if dist is not None:
        callbacks = dist.callbacks(callbacks, dist.broadcast(run is not None), args["checkpoint_every"])
    if callable(lr) and plateau is None:
        # the epoch in which the schedule has annealed
        annealed = schedules.annealing_start(lr, updates) * args["accumulate"] // n_batches
        for cb in callbacks:
            if isinstance(cb, EarlyStopping) and cb.start_epoch is None:
                cb.start_epoch = annealed
    if args["diagnostics"]:
        from descend.inspect.diagnostics import default_callbacks, sharpness_rows, training_loss
        from descend.inspect.monitor import HealthMonitor, SharpnessMonitor
        from descend.inspect.trajectory import TrajectoryRecorder

        # the findings' probe of 128 rows; sharpness on fewer when the batches are small (see sharpness_rows)
        probe = None if closure is not None else training_loss(model, loss_fn, data.X, y, penalty=penalty, seed=seed)
        rows = sharpness_rows(batch_size)
        sharp = probe if probe is None or rows >= len(probe.X) else \
            training_loss(model, loss_fn, data.X, y, penalty=penalty, seed=seed, rows=rows)
        if not any(isinstance(cb, HealthMonitor) for cb in callbacks):
            callbacks.append(HealthMonitor(every=args["health_every"]))
        if sharp is not None and not any(isinstance(cb, SharpnessMonitor) for cb in callbacks):
            callbacks.append(SharpnessMonitor(sharp, every=args["sharpness_every"]))
        if run is not None and not any(isinstance(cb, TrajectoryRecorder) for cb in callbacks):
            callbacks.append(TrajectoryRecorder())  # the run's path, for `descend landscape RUN --trajectory`
        callbacks = sorted([*callbacks, *default_callbacks(callbacks, loss=probe, options=args)],
                           key=lambda cb: isinstance(cb, Checkpoint))  # checkpoints still last
    loop = Loop(
        model=model, optimizer=optimizer, data=data, loss_fn=loss_fn, y=y, y_val=y_val, metrics=metric_names,
        penalty=penalty, set_lr=set_lr, plateau=plateau, batch_size=batch_size, epochs=args["epochs"],
        max_steps=args["max_steps"], loss_threshold=args["loss_threshold"], tol=args["tol"],
        n_iter_no_change=args["n_iter_no_change"], callbacks=callbacks, seed=seed,
        compile=compiled, augment=augment, precision=precision,
    )  # fmt: skip
    state = loop.state
    if run is not None:
        state.run_dir = run
        state.log_event = run.log_event
        state.save_checkpoint = lambda keep=2: run.save_checkpoint(loop.checkpoint(), keep)
        if found is not None:
            config["resolved"]["lr"] = found.lr
            run.write_json("config.json", {**run.read_json("config.json"), "resolved": config["resolved"]})
            found.to_csv(run.path / "lr_find.csv")
            run.log_event("lr_find", **found.summary())
        if callable(lr) and plateau is None:
            _write_schedule(run, lr, updates)
        if dist is None:
            _start_run(run, loop)
    if dist is not None:  # every process from process 0's checkpoint, the model wrapped in DDP
        dist.start(loop, lambda: _start_run(run, loop) if run is not None else None, seed=seed,
                   accumulate=args["accumulate"])
    for cb in callbacks:
        cb.on_fit_start(state)
    if run is not None:
        run.started = True
    try:
        loop.run()
    except BaseException as e:
        if run is not None:
            run.log_event("interrupted", step=state.step, error=type(e).__name__)
        for cb in callbacks:
            if isinstance(cb, ProgressBar):
                cb.on_fit_end(state)
        raise
    for cb in callbacks:
        cb.on_fit_end(state)
    result = _finish(run, loop, data, loss_name, path)
    result.lr_find = found
    return result


def _shaped(args: dict[str, Any], peak: float, planned: int) -> Callable[[int], float]:
    """The run's ``schedule`` (a name of :data:`descend.schedules.NAMES`, shaped by ``warmup_steps``, ``step_size``
    and ``gamma`` where given, or a multiplier ``step -> factor``) peaking at ``peak`` over ``planned`` updates."""
    spec = args["schedule"]
    if isinstance(spec, str):
        settings = {n: args[n] for n in ("warmup_steps", "step_size", "gamma") if args[n] is not None}
        return schedules.named(spec, peak, total_steps=planned, **settings)

    def shaped(step: int) -> float:
        return peak * float(spec(step))

    return shaped


def _install_schedule(optimizer: torch.optim.Optimizer, schedule: Callable[[int], float]) -> None:
    """Give a descend optimizer ``schedule`` as its learning rate (it evaluates it before each update and keeps
    its place in checkpoints); other optimizers get it from the loop before each step."""
    if isinstance(optimizer, ChainOptimizer):
        for group in optimizer.param_groups:
            group["lr_schedule"] = schedule
            group["lr"] = float(schedule(optimizer.updates))


def _write_schedule(run: RunFolder, schedule: Callable[[int], float], planned: int, points: int = 10_000) -> None:
    """``schedule.csv``: the planned learning rate of every update (every k-th past ``points`` updates)."""
    stride = max(1, math.ceil(planned / points))
    lines = ["step,lr", *(f"{t},{float(schedule(t))!r}" for t in range(0, planned, stride))]
    atomic_write(run.path / "schedule.csv", ("\n".join(lines) + "\n").encode())


def _config(args: dict[str, Any], data: Any, model: nn.Module, loss_name: str, batch_size: int) -> dict[str, Any]:
    described = {k: _describe(v) for k, v in args.items()}  # every option of the table, in its order
    source = args["data"]
    # a file by its path (a config file can name it again); other data by its kind, in angle brackets
    described["data"] = str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"
    if not isinstance(args["model"], (str, dict)):
        described["model"] = _describe(model)
    return {
        "arguments": described,
        "seed": args["seed"],
        "resolved": {"loss": loss_name, "batch_size": batch_size, "task": data.task, "model": _describe(model)},
        "data": {
            "source": args["data"] if isinstance(args["data"], (str, os.PathLike)) else type(args["data"]).__name__,
            "n_train": len(data.X) if data.stream is None else None,
            "n_val": len(data.X_val) if data.val_stream is None else None,
            "n_batches": len(data.stream) if data.stream is not None else None,
            "n_features": data.n_features,
            "n_classes": data.n_classes,
            "fingerprint": float(data.X.cpu().double().sum()),  # on the CPU: the same on any device
            "decisions": list(getattr(data.prepared, "decisions", None) or []),  # how prepare read the table
        },
        "environment": environment(),
    }


def _open_record(run: RunFolder, args: dict[str, Any], config: dict[str, Any]) -> None:
    """A new run (or one that never got as far as its config): write config.json. A resumed one: check that it
    is the same run."""
    if run.fresh:
        run.write_json("config.json", {**config, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        run.log_event("start", seed=args["seed"])
        return
    saved = run.read_json("config.json")
    now = jsonable(config)
    for key, value in now["arguments"].items():
        if OPTIONS[key].resume_free:
            continue
        before = saved["arguments"].get(key)
        if _comparable(before) != _comparable(value):
            raise ConfigError(f"resume: {key}={value!r} differs from the run's {key}={before!r}; expected the same")
    if _comparable(saved["data"]) != _comparable(now["data"]):
        raise ConfigError(f"resume: the data differs from the run's ({saved['data']} vs {now['data']})")


def _start_run(run: RunFolder, loop: Loop) -> dict[str, Any] | None:
    """On resume: back to the newest whole checkpoint (or the beginning), every record cut to it; returns it."""
    if run.fresh:
        return None
    ckpt = run.latest_checkpoint()
    if ckpt is not None:
        loop.restore(ckpt)
    run.rewrite_metrics(loop.state.history)
    run.truncate_steps(loop.state.step)
    run.log_event("resume", step=loop.state.step, epoch=loop.state.epoch, batch=loop.state.batch)
    return ckpt


def _divergence(history: list[dict[str, float]], guard: DivergenceGuard | None, reason: str) -> str | None:
    """Why the run counts as diverged (a sentence), or None."""
    if reason == "diverged":
        return "the descent diverged: the training loss is not finite, or the divergence guard ran out of rollbacks"
    if guard is not None and guard.rollbacks:
        return (f"the divergence guard rolled the descent back {guard.rollbacks} time(s) and scaled the learning rate "
                f"by {guard.scale:g}")  # fmt: skip
    losses = [float(r["loss"]) for r in history]
    if guard is None and losses:
        first = abs(losses[0]) or 1e-300
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v) or abs(v) > DIVERGED_RISE * first), None)
        if bad is not None:
            return (f"the training loss reached {losses[bad]:.3g} at epoch {bad + 1}, {DIVERGED_RISE:g}+ times the "
                    f"first epoch's {losses[0]:.3g}")  # fmt: skip
    return None


def _finish(run: RunFolder | None, loop: Loop, data: Any, loss_name: str, path: str) -> FitResult:
    state = loop.state
    loop.model.eval()  # predictions from the returned model are deterministic (dropout off, running statistics)
    reason = state.stop or "max_epochs"
    guard = next((cb for cb in loop.callbacks if isinstance(cb, DivergenceGuard)), None)
    diverged = _divergence(state.history, guard, reason)
    converged = reason in CONVERGED and diverged is None
    best = next((cb.best_epoch for cb in loop.callbacks if isinstance(cb, EarlyStopping) and cb.restore_best), None)
    message = None
    if reason in LIMITS:
        limit = f"{state.epochs} epochs" if reason == "max_epochs" else f"{state.step} steps"
        message = f"stopped after the maximum of {limit} without converging"
    elif reason == "diverged" or (diverged is not None and reason in CONVERGED):
        message = (f"{diverged} (see the guard_* events; try a smaller lr)" if reason == "diverged" else
                   f"stopped by {reason}, but not converged: {diverged}")  # fmt: skip
    if message is not None:  # a stop asked for by the caller's own callback is not warned about
        warnings.warn(message, ConvergenceWarning, stacklevel=4)
        if run is not None:
            run.log_event("warning", category="not_converged", message=message)
    from descend.inspect.diagnostics import collect_findings

    result = FitResult(
        model=loop.model, history=state.history, converged=converged, stop_reason=reason, epochs=len(state.history),
        steps=state.step, task=data.task, loss=loss_name, best_epoch=best,
        run_dir=run.path if run is not None else None, data=data.prepared, findings=collect_findings(loop.callbacks),
        diverged=diverged is not None,
        guard=None if guard is None else {"rollbacks": guard.rollbacks, "skips": guard.skips, "lr_scale": guard.scale},
        step=path,
    )  # fmt: skip
    if run is not None:
        save_model(loop.model, run.path / "model", task=data.task, data=data.prepared, loss=loss_name)
        run.log_event("end", stop_reason=reason, converged=converged, steps=state.step)
        run.write_json(
            "summary.json",
            {"status": "complete", "stop_reason": reason, "converged": converged, "diverged": diverged is not None,
             "divergence": diverged, "guard": result.guard, "epochs": result.epochs, "steps": state.step,
             "device": str(loop.device), "precision": loop.precision.name, "step": path,
             "best_epoch": best, "final": result.final},
        )  # fmt: skip
    return result
