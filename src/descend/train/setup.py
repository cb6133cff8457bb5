"""Turning fit's arguments into the objects the loop runs: data tensors, optimizer, penalty.

Each option's value was checked against the table (:mod:`descend.train.options`) before it gets here; what is
checked here is what one option says of another, or of the data, with the same template: the argument, the
value, and what would be accepted. Inside the loop nothing is checked again.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from descend import optim
from descend.errors import ConfigError, DataError
from descend.train.options import OPTIMIZERS

__all__ = ["OPTIMIZERS", "TrainData", "is_loader", "make_optimizer", "make_penalty", "resolve_data"]

PenaltySpec = str | Sequence[str] | Callable[[str, Tensor], bool]


@dataclass
class TrainData:
    """Training and validation tensors, with what ``fit`` needs to know about them."""

    X: Tensor
    y: Tensor
    X_val: Tensor
    y_val: Tensor
    task: str
    n_classes: int | None
    prepared: Any = None
    #: with a loader as the data: its batches (``X``, ``y`` above then hold a sample of its first rows)
    stream: Any = None
    #: the validation loader (re-iterable), with a loader as the data
    val_stream: Any = None
    #: with a loader: ``(raw batch, where) -> (X, y)`` converted as fit converts in-memory data (set by fit)
    batch: Any = None

    @property
    def n_features(self) -> int:
        """The values in one example: the columns of a table, C*L of a signal, C*H*W of an image."""
        return int(self.X[:1].numel()) if len(self.X) else int(torch.tensor(self.X.shape[1:]).prod())

    @property
    def example_shape(self) -> tuple[int, ...]:
        """One example's shape (without the batch): ``(features,)`` for a table, ``(C, H, W)`` for images."""
        return tuple(int(d) for d in self.X.shape[1:])

    def n_outputs(self) -> int:
        if self.task == "multiclass":
            return int(self.n_classes or 0)
        return 1 if self.y.dim() == 1 else int(self.y.shape[1])


def is_loader(data: Any) -> bool:
    """A ``torch.utils.data.DataLoader`` or a :class:`descend.data.LoaderBatches` (data that need not fit in memory)."""
    from descend.data.batching import LoaderBatches

    return isinstance(data, (torch.utils.data.DataLoader, LoaderBatches))


#: with a loader, task inference, lr="auto" and the sharpness monitor use this many of its first rows
SAMPLE_ROWS = 2048


def _pair(batch: Any, where: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2
            and all(isinstance(t, Tensor) for t in batch)):  # fmt: skip
        raise DataError(f"data: {where} is a {type(batch).__name__}; expected a pair (X, y) of tensors")
    X, y = batch
    if X.dim() < 2 or len(X) != len(y) or len(X) == 0:
        raise DataError(f"data: {where} has X of shape {tuple(X.shape)} and y of shape {tuple(y.shape)}; expected "
                        "X (rows, ...) with at least one feature axis (rows x features, N x C x L, N x C x H x W) "
                        "and y with as many rows")  # fmt: skip
    return X, y


def _stream_data(data: Any, task: str, validation: Any, seed: int) -> TrainData:
    from descend.data.batching import LoaderBatches

    stream = data if isinstance(data, LoaderBatches) else LoaderBatches(data, seed=seed)
    try:
        n_batches = len(stream)
    except TypeError:
        raise ConfigError(f"data: the loader ({type(stream.loader).__name__}) does not know its length; expected a "
                          "DataLoader whose dataset has __len__, or a list of batches") from None  # fmt: skip
    if n_batches == 0:
        raise DataError("data: the loader yields no batches")
    if validation is not None and not is_loader(validation) and validation != 0:
        raise ConfigError(f"validation: invalid validation={validation!r} with a loader as the data (a fraction "
                          "cannot split a stream); expected a loader of validation batches, 0 or None")  # fmt: skip
    val = None
    if is_loader(validation):
        val = validation.loader if isinstance(validation, LoaderBatches) else validation
    if isinstance(stream.loader, torch.utils.data.DataLoader) and stream.seed is not None:
        assert stream.loader.generator is not None
        stream.loader.generator.manual_seed(stream.seed)  # the sample: the first epoch's first batches
    xs, ys, rows = [], [], 0
    for k, batch in enumerate(stream.loader):
        X, y = _pair(batch, f"batch {k} of the loader")
        xs.append(X)
        ys.append(y)
        rows += len(X)
        if rows >= SAMPLE_ROWS:
            break
    X, y = torch.cat(xs)[:SAMPLE_ROWS], torch.cat(ys)[:SAMPLE_ROWS]
    if task == "auto":
        if y.is_floating_point():
            task = "regression"
        else:
            task = "binary" if set(torch.unique(y).tolist()) <= {0, 1} else "multiclass"
    n_classes = int(y.max()) + 1 if task == "multiclass" else None
    return TrainData(X, y, X[:0], y[:0], task, n_classes, None, stream=stream, val_stream=val)


def resolve_data(data: Any, *, target: Any, task: str, validation: Any, seed: int,
                 options: dict[str, Any] | None = None, changed: Sequence[str] = ()) -> TrainData:
    """Accept a prepared dataset (anything with ``X_train``, ``y_train``, ``X_val``, ``y_val``, ``task``),
    anything :func:`descend.data.prepare` reads (a path, a DataFrame, arrays, a tuple ``(X, y)``; ``options``
    holds its further options), examples of any shape (:func:`descend.data.arrays.prepare_arrays`: a pair or an
    ``.npz`` with X of more than two axes, a folder of images), or a loader of ``(X, y)`` batches (a DataLoader or
    :class:`descend.data.LoaderBatches`; ``validation`` then a loader too). ``changed``: the options of
    ``prepare`` given other than their defaults, refused for data that is not read here."""
    if changed and (is_loader(data) or hasattr(data, "X_train")):
        kind = "a loader" if is_loader(data) else "already prepared"
        raise ConfigError(f"{changed[0]}: {changed[0]}={(options or {}).get(changed[0])!r} applies to data fit reads "
                          f"itself, and this data is {kind}; expected it left at its default (prepare the data "
                          "with it instead)")  # fmt: skip
    if is_loader(data):
        return _stream_data(data, task, validation, seed)
    if is_loader(validation):
        raise ConfigError("validation: a loader of validation batches goes with a loader as the data; expected a "
                          "fraction in [0, 1) for this data")  # fmt: skip
    if validation is None:
        validation = 0.2
    prepared = data
    from descend.data.arrays import is_array_source, prepare_arrays

    options = dict(options or {})
    image_size = options.pop("image_size", None)
    folder = isinstance(data, (str, os.PathLike)) and Path(data).is_dir()
    if "image_size" in changed and not folder:
        raise ConfigError(f"image_size: image_size={image_size!r} applies to a folder of images, and this data is "
                          "not one; expected it left at its default (None)")  # fmt: skip
    if not hasattr(data, "X_train") and is_array_source(data):  # images, signals: examples, not table rows
        tabular = [n for n in changed if n not in ("scale", "image_size")]
        if tabular:
            raise ConfigError(f"{tabular[0]}: {tabular[0]}={options.get(tabular[0])!r} applies to tables, and "
                              "this data is examples of several axes (arrays or images); expected it left at its "
                              "default")  # fmt: skip
        prepared = prepare_arrays(data, target=target, task=task, validation=validation, seed=seed,
                                  scale=options.get("scale", "standard"), image_size=image_size)  # fmt: skip
    elif not hasattr(data, "X_train"):
        import descend.data

        prepare = getattr(descend.data, "prepare", None)
        if prepare is None:
            raise ConfigError(
                f"data: got {type(data).__name__}; expected a prepared dataset (with X_train, y_train, X_val, y_val, task)"
            )
        prepared = prepare(data, target=target, task=task, validation=validation, seed=seed, **options)
    elif task not in ("auto", prepared.task):
        raise ConfigError(f"task: task={task!r} differs from the prepared data's task {prepared.task!r}")
    X, y = torch.as_tensor(prepared.X_train), torch.as_tensor(prepared.y_train)
    X_val = torch.as_tensor(prepared.X_val) if prepared.X_val is not None else X[:0]
    y_val = torch.as_tensor(prepared.y_val) if prepared.y_val is not None else y[:0]
    if X.dim() < 2 or len(X) == 0:
        raise DataError(f"data: training features have shape {tuple(X.shape)}; expected (n, ...) with n >= 1 and "
                        "at least one feature axis")  # fmt: skip
    if len(y) != len(X) or len(y_val) != len(X_val):
        raise DataError(f"data: {len(X)} feature rows but {len(y)} targets; expected as many targets as rows")
    n_classes = getattr(prepared, "n_classes", None)
    if prepared.task == "multiclass" and not n_classes:
        n_classes = int(max(int(y.max()), int(y_val.max()) if len(y_val) else 0)) + 1
    return TrainData(X, y, X_val, y_val, prepared.task, n_classes, prepared)


def _optimizer_class(name: str) -> Callable[..., torch.optim.Optimizer]:
    classes: dict[str, Any] = {
        "sgd": optim.SGD,
        "momentum": optim.Momentum,
        "nesterov": optim.Nesterov,
        "adagrad": optim.Adagrad,
        "rmsprop": optim.RMSprop,
        "adam": optim.Adam,
        "adamw": optim.AdamW,
        # full-batch only (fit checks); by name, L-BFGS searches for its step (strong Wolfe) rather than taking lr
        "newton": optim.Newton,
        "lbfgs": functools.partial(optim.LBFGS, line_search_fn="strong_wolfe"),
    }
    key = name.lower()
    if key not in classes:
        raise ConfigError(
            f"optimizer: unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}, "
            "a torch.optim.Optimizer, or a factory params -> optimizer"
        )
    factory: Callable[..., torch.optim.Optimizer] = classes[key]
    return factory


def make_optimizer(
    spec: Any,
    params: Sequence[Tensor],
    *,
    lr: float | Callable[[int], float] | None,
    weight_decay: float,
    options: dict[str, Any],
    clip_norm: float | None,
    clip_value: float | None,
    accumulate: int,
) -> torch.optim.Optimizer:
    """Build the optimizer. Clipping and accumulation are rules of descend's optimizer engine, placed before
    the named optimizer's own rules: accumulate k gradients, clip their mean, then update."""
    engine_rules = clip_norm is not None or clip_value is not None or accumulate > 1
    if isinstance(spec, torch.optim.Optimizer):
        if lr is not None or weight_decay or options:
            raise ConfigError(
                "optimizer: an optimizer instance carries its own lr, weight_decay and options; pass the optimizer "
                "by name or class (e.g. optimizer='adam', lr=1e-3) to set them here"
            )
        if engine_rules:
            raise ConfigError(
                "optimizer: clip_norm, clip_value and accumulate need the optimizer by name or class; for an instance "
                "build them into it with descend.optim.chain(...)"
            )
        return spec
    kwargs = dict(options)
    if lr is not None:
        kwargs["lr"] = lr
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    factory = _optimizer_class(spec) if isinstance(spec, str) else spec
    if not callable(factory):
        raise ConfigError(
            f"optimizer: invalid optimizer {spec!r}; expected one of {', '.join(OPTIMIZERS)}, "
            "a torch.optim.Optimizer, or a factory params -> optimizer"
        )
    try:
        opt = factory(params, **kwargs)
    except TypeError as e:
        raise ConfigError(f"optimizer: {getattr(factory, '__name__', factory)!s} rejected its arguments: {e}") from e
    if not isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(f"optimizer: the factory returned {type(opt).__name__}; expected a torch.optim.Optimizer")
    if not engine_rules:
        return opt
    if not isinstance(opt, optim.ChainOptimizer):
        raise ConfigError(
            f"optimizer: clip_norm, clip_value and accumulate are rules of descend's optimizer engine; "
            f"{type(opt).__name__} is not a descend optimizer; expected a name ({', '.join(OPTIMIZERS)}) or a "
            "descend.optim class"
        )
    rules: list[Any] = []
    if accumulate > 1:
        rules.append(optim.accumulate(accumulate))
    if clip_norm is not None:
        rules.append(optim.clip_by_global_norm(clip_norm))
    if clip_value is not None:
        rules.append(optim.clip_by_value(clip_value))
    return optim.ChainOptimizer(list(params), [*rules, *opt.transforms], name=opt.name, **opt.defaults)


def _penalized(model: nn.Module, spec: PenaltySpec) -> list[Tensor]:
    named = dict(model.named_parameters())
    if spec == "weights":
        return [p for p in named.values() if p.dim() >= 2]
    if spec == "all":
        return list(named.values())
    if callable(spec):
        return [p for n, p in named.items() if spec(n, p)]
    if isinstance(spec, str) or not all(isinstance(n, str) for n in spec):
        raise ConfigError(
            f"penalize: invalid penalize={spec!r}; expected 'weights', 'all', a list of parameter names or a "
            "callable (name, parameter) -> bool"
        )
    unknown = [n for n in spec if n not in named]
    if unknown:
        raise ConfigError(f"penalize: unknown parameter {unknown[0]!r}; expected some of {', '.join(named)}")
    return [named[n] for n in spec]


class Penalty:
    """:math:`\\lambda_1 \\sum |w| + \\tfrac{\\lambda_2}{2} \\sum w^2` over ``params``; call it for the value.

    :meth:`over` computes the same sum over other tensors standing for ``params`` (a compiled step's own
    copies of the parameters), so the penalty's gradient reaches them.
    """

    def __init__(self, params: list[Tensor], l1: float, l2: float) -> None:
        self.params, self.l1, self.l2 = params, l1, l2

    def __call__(self) -> Tensor:
        return self.over(self.params)

    def over(self, tensors: Sequence[Tensor]) -> Tensor:
        total = torch.zeros((), dtype=tensors[0].dtype)
        for p in tensors:
            if self.l1:
                total = total + self.l1 * p.abs().sum()
            if self.l2:
                total = total + (0.5 * self.l2) * p.pow(2).sum()
        return total


def make_penalty(model: nn.Module, l1: float, l2: float, spec: PenaltySpec) -> Penalty | None:
    """The penalty over the parameters ``spec`` chooses, or None when there is nothing to penalize."""
    params = _penalized(model, spec)
    if not (l1 or l2) or not params:
        return None
    return Penalty(params, l1, l2)
