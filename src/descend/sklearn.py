"""scikit-learn estimators: :class:`DescendClassifier` and :class:`DescendRegressor`, thin doors onto ``fit``.

Their parameters are the options of the one table (:data:`descend.train.options.OPTIONS`) that a word can give
and that mean something for in-memory arrays, with the table's defaults, so an estimator, ``descend.fit`` and
``descend train`` cannot disagree; a new option of the table is a new parameter here. Two defaults are the
estimators' own, scikit-learn MLP's (:data:`ESTIMATOR_DEFAULTS`: ``model="mlp:100"``, ``l2=1e-4``), measured
necessary to match it. ``random_state`` is fit's ``seed``, ``verbose`` its progress bar, ``warm_start``
continues from the fitted weights, ``refit`` is below. Left out, with why, in :data:`LEFT_OUT`. Each ``__init__``'s signature is built from the table (scikit-learn reads parameters
from it); ``__init__`` only stores them, and ``fit`` checks them with the table's message template.

Features are scaled inside (``scale``: standard by default, statistics of the training rows), as ``descend.fit``
scales a table: a default that trains well without a Pipeline, and harmless after a StandardScaler. A fraction
``validation`` (default 0.2, stratified for classification) is held out for early stopping, which finds the
best epoch; with ``refit=True`` (the default) ``fit`` then trains again, from the same seed, on every row for that
many epochs (about twice the time), and with ``refit=False`` it keeps the best epoch's weights. A sparse ``X``
(a one-hot encoder's output) is made dense. ``sample_weight`` is not supported: ``fit`` averages the loss over a
batch uniformly.

Example:
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DescendClassifier(model="mlp:16", lr=0.01, epochs=40, diagnostics=False).fit(X, y)
    >>> clf.classes_.tolist(), clf.predict_proba(X[:2]).shape, bool(clf.score(X, y) > 0.9)
    ([0, 1, 2], (2, 3), True)
"""

from __future__ import annotations

import copy
import inspect
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from descend.errors import ConfigError
from descend.train.options import OPTIONS
from descend.train.state import Callback

__all__ = ["ESTIMATOR_DEFAULTS", "LEFT_OUT", "DescendClassifier", "DescendRegressor"]

#: options of ``fit`` that are not estimator parameters, and why
LEFT_OUT: dict[str, str] = {
    "target": "y is given to fit",
    "task": "the estimator says it: classification (binary or multiclass, from classes_) or regression",
    **dict.fromkeys(("encoding", "impute", "unseen", "min_frequency", "drop", "keep", "dates", "categorical", "strict"),
                    "reads a table; an estimator takes numeric arrays (a ColumnTransformer encodes a DataFrame)"),
    **dict.fromkeys(("run_dir", "resume", "overwrite", "checkpoint_every"),
                    "a run folder: a search fits clones of an estimator side by side; save() writes the model"),
    "seed": "given as random_state",
}  # fmt: skip
RENAMED = {"seed": "random_state"}
#: the estimators' own defaults where they differ from the table's: scikit-learn's MLPClassifier / MLPRegressor
#: defaults (100 hidden units, L2 of 1e-4), the baseline an estimator is held to. With the table's (64 units, no
#: L2) the estimators score below MLP's defaults on digits in 5-fold cross-validation; each of the two alone is
#: still below, together they match or beat MLP on all five tables of benchmarks/sklearn_cv.py
#: (docs/benchmarks.md, scikit-learn estimators).
ESTIMATOR_DEFAULTS: dict[str, Any] = {"model": "mlp:100", "l2": 1e-4}
#: parameters of scikit-learn's contract, not of fit: (name, default)
EXTRA = (("refit", True), ("verbose", False), ("warm_start", False))
_PROBABILISTIC = (None, "bce", "cross_entropy", "log_loss", "binary_cross_entropy", "ce", "categorical_cross_entropy")


def _parameters(task: str) -> list[inspect.Parameter]:
    """The keyword parameters of an estimator for ``task`` ("classification" or "regression"), from the table."""
    names = [o.name for o in OPTIONS.values() if o.name in RENAMED or (o.flag is not None and o.name not in LEFT_OUT)]
    if task == "classification":
        names.remove("scale_target")  # it standardises a regression target
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        *(inspect.Parameter(RENAMED.get(n, n), kw, default=ESTIMATOR_DEFAULTS.get(n, OPTIONS[n].default))
          for n in names),
        *(inspect.Parameter(name, kw, default=default) for name, default in EXTRA),
    ]


def _init(task: str) -> Callable[..., None]:
    """An ``__init__`` that stores its keyword arguments, with the explicit signature scikit-learn's
    ``get_params`` reads (a misspelt name is a TypeError, as for a written-out signature)."""
    self_ = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = inspect.Signature([self_, *_parameters(task)])

    def __init__(self: Any, **params: Any) -> None:
        bound = signature.bind(self, **params)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            if name != "self":
                setattr(self, name, value)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    return __init__


@dataclass
class _Arrays:
    """A prepared dataset for ``fit`` (its ``X_train``, ``y_train``, ``X_val``, ``y_val``, ``task``)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    task: str
    n_classes: int | None


class _KeepOptimizer(Callback):
    """Holds on to the run's optimizer, so partial_fit's next call continues its state (moments, step count)."""

    def __init__(self) -> None:
        self.optimizer: torch.optim.Optimizer | None = None

    def on_fit_start(self, state: Any) -> None:
        self.optimizer = state.optimizer


class _StopAt(Callback):
    """Ends the refit after its planned epochs as a stop asked for, not as a budget run out: the number of epochs
    was chosen by early stopping, so fit's warning that the run stopped without converging does not apply."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, state: Any) -> None:
        if state.row["epoch"] >= self.epochs:
            state.stop = "refit"


class _DescendEstimator(BaseEstimator):
    _task: ClassVar[str]
    model_: torch.nn.Module
    n_iter_: int
    shift_: np.ndarray
    scale_: np.ndarray
    findings_: list[Any]

    # --- what fit is given ------------------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        """fit's keyword arguments from the parameters, checked against the table."""
        params = self.get_params(deep=False)
        options = {n: params[RENAMED.get(n, n)] for n in OPTIONS if RENAMED.get(n, n) in params}
        validation = options["validation"]
        if validation is not None and not (OPTIONS["validation"].accepts.ok(validation)
                                           and isinstance(validation, numbers.Real)):  # fmt: skip
            raise ConfigError(f"validation: invalid validation={validation!r}; expected a number in [0, 1) or None")
        for name in ("refit", "verbose", "warm_start"):
            if not isinstance(params[name], (bool, np.bool_, numbers.Integral)):
                raise ConfigError(f"{name}: invalid {name}={params[name]!r}; expected True or False")
        seed = options["seed"]
        if not (seed is None or (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**31)):
            seed = int(check_random_state(seed).randint(2**31))  # a RandomState draws fit's seed
        options["seed"] = None if seed is None else int(seed)
        options["progress"] = bool(params["verbose"])
        from descend.train.options import check

        check(options)
        return options

    def _fit_arrays(self, X: np.ndarray, y: np.ndarray, *, validation: float, seed: int | None, stratify: bool,
                    keep_scaling: bool) -> _Arrays:  # fmt: skip
        """Split off the validation rows, learn the scaling on the training rows (unless kept), make tensors."""
        from descend.data.errors import SplitError
        from descend.data.split import split_indices

        train, val = np.arange(len(X)), np.arange(0)
        if validation > 0:
            try:
                labels = y if stratify else None
                train, val, _ = split_indices(len(X), validation=validation, test=0.0, seed=seed or 0, labels=labels)
            except SplitError:
                if self.early_stopping is True:
                    raise
        if not keep_scaling:
            self.shift_, self.scale_ = _scaling(X[train], self.scale)
        Xs = torch.as_tensor(self._scaled(X), dtype=torch.float32)
        yt = torch.as_tensor(y)
        classes = len(self.classes_) if self._task == "classification" else None
        task = "regression" if classes is None else "binary" if classes == 2 else "multiclass"
        index_train, index_val = torch.as_tensor(train), torch.as_tensor(val)
        return _Arrays(Xs[index_train], yt[index_train], Xs[index_val], yt[index_val], task,
                       classes if task == "multiclass" else None)  # fmt: skip

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return (X - self.shift_) / self.scale_

    def _train(self, arrays: Callable[[float], _Arrays], options: dict[str, Any], *, warm: bool) -> None:
        """``fit``: train with the validation rows held out (``arrays(fraction)`` splits them off), then, with
        ``refit``, train again on every row for the number of epochs early stopping chose."""
        fraction = 0.2 if options["validation"] is None else float(options["validation"])
        refit = bool(self.refit) and fraction > 0 and options["early_stopping"] is not False
        before = {n: copy.deepcopy(getattr(self, n)) for n in ("model_", "loss_curve_", "n_iter_", "history_")
                  if refit and warm and hasattr(self, n)}  # fmt: skip
        chosen = self._descend(arrays(fraction), dict(options), warm=warm, partial=False)
        if not refit or chosen.best_epoch is None:  # too few rows to split: already trained on all of them
            return
        # The held-out rows chose the number of epochs; the final model learns from them as well. On small tables
        # a fifth of the rows is worth more than the stopping point it bought (docs/benchmarks.md, scikit-learn).
        kept = {n: getattr(self, n) for n in ("validation_scores_", "best_validation_score_", "best_loss_",
                                               "findings_", "stop_reason_", "converged_")}  # fmt: skip
        for name, value in before.items():
            setattr(self, name, value)
        lr = chosen.lr_find.lr if options["lr"] == "auto" and chosen.lr_find is not None else options["lr"]
        options = {**options, "epochs": chosen.best_epoch, "early_stopping": False, "validation": None, "tol": None,
                   "loss_threshold": None, "lr": lr}  # fmt: skip
        self._descend(arrays(0.0), options, warm=warm, partial=False, stop=_StopAt(chosen.best_epoch))
        self.best_epoch_ = chosen.best_epoch
        self.findings_ = kept.pop("findings_") + self.findings_
        for name, value in kept.items():
            setattr(self, name, value)

    def _descend(self, data: _Arrays, options: dict[str, Any], *, warm: bool, partial: bool,
                 stop: Callback | None = None) -> Any:  # fmt: skip
        """Run ``fit`` and keep what it learned; ``warm``: from the fitted model; ``partial``: one pass, carrying
        the optimizer's state from call to call."""
        from descend.train.fit import fit

        if warm:
            options["model"] = self.model_
            for name in ("activation", "init", "dropout"):  # settings of a model built from its name: it is built
                options[name] = None
        if partial:
            if options["schedule"] is not None:
                raise ConfigError(f"schedule: schedule={options['schedule']!r} shapes the rate over a planned run, and "
                                  "partial_fit has none; expected schedule=None with partial_fit")  # fmt: skip
            options.update(epochs=1, max_steps=None, early_stopping=False, tol=None, validation=None)
            if warm and options["seed"] is not None:  # each pass over a chunk in its own order, as fit's epochs
                options["seed"] = (options["seed"] + self.n_iter_) % 2**31
            optimizer = getattr(self, "_optimizer", None)
            if warm and optimizer is not None:
                options.update(optimizer=optimizer, lr=None, weight_decay=0.0, optimizer_options=None,
                               clip_norm=None, clip_value=None, accumulate=1)  # fmt: skip
        keep = _KeepOptimizer()
        options["callbacks"] = (keep,) if stop is None else (keep, stop)
        result = fit(options.pop("model"), data, **options)
        self._optimizer = keep.optimizer if partial else None
        self.model_, self._loss = result.model, result.loss
        rows = result.history
        before = list(getattr(self, "loss_curve_", [])) if warm else []
        self.loss_curve_ = before + [float(r["loss"]) for r in rows]
        self.n_iter_ = (getattr(self, "n_iter_", 0) if warm else 0) + result.epochs
        key = "val_accuracy" if self._task == "classification" else "val_r2"
        scores = [float(r[key]) for r in rows if key in r]
        self.validation_scores_ = scores or None
        self.best_validation_score_ = max(scores) if scores else None
        val_losses = [float(r["val_loss"]) for r in rows if "val_loss" in r]
        self.best_loss_ = min(val_losses) if val_losses else min(self.loss_curve_)
        self.history_ = (list(getattr(self, "history_", [])) if warm else []) + list(rows)
        self.findings_ = list(result.findings)
        self.stop_reason_ = result.stop_reason
        self.converged_ = result.converged
        self.best_epoch_ = result.best_epoch
        return result

    # --- what the model says ----------------------------------------------------------------------------------

    def _output(self, X: Any) -> np.ndarray:
        """The model's raw output (values, or logits) for validated, scaled ``X``, as float64."""
        check_is_fitted(self, "model_")
        X = _dense(validate_data(self, X, reset=False, dtype=np.float64, accept_sparse=True))
        # In float64, so a row's answer does not depend on the rows beside it (float32 matrix products round
        # differently for different batch sizes); the weights are the float32 ones, widened, on the CPU (where the
        # rows are, whatever device trained them).
        state = {k: v.detach().cpu().double() if v.is_floating_point() else v.cpu()
                 for k, v in (*self.model_.named_parameters(), *self.model_.named_buffers())}  # fmt: skip
        with torch.no_grad():
            out = torch.func.functional_call(self.model_, state, (torch.as_tensor(self._scaled(X)),))
        return out.numpy()

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the fitted model in descend's safe format (weights in safetensors, the rest in JSON), with the
        scaling, classes and feature names: ``descend.load(folder).predict(X)`` on raw rows gives ``predict``'s
        answers. Unlike a pickle, loading it runs no code from the file. Return the folder."""
        from descend.train.saved import save_model

        check_is_fitted(self, "model_")
        return save_model(self.model_, folder, task=self._saved_task(), data=self._saved_data(), loss=self._loss)

    def _saved_task(self) -> str:
        if self._task == "regression":
            return "regression"
        return "binary" if len(self.classes_) == 2 else "multiclass"

    def _saved_data(self) -> Any:
        """What ``save_model`` reads: a preprocessor holding the scaling (and the classes), the feature names."""
        from descend.data.fitting import Column
        from descend.data.preprocess import Preprocessor
        from descend.data.target import TargetEncoding

        names = [str(n) for n in getattr(self, "feature_names_in_", [f"x{j}" for j in range(self.n_features_in_)])]
        pre = Preprocessor(scale=self.scale)
        pre.columns_ = [Column(n, "numeric", shift=float(s), scale=float(c))
                        for n, s, c in zip(names, self.shift_, self.scale_)]  # fmt: skip
        pre.decisions_ = [f"{len(names)} numeric column(s) scaled ({self.scale}) by {type(self).__name__}"]
        classes = getattr(self, "classes_", None)
        if classes is not None:
            pre.target_ = TargetEncoding(["y"], self._saved_task(), classes.tolist())  # type: ignore[arg-type]
        return _Saved(pre, n_features=len(names), feature_names=names,
                      classes=None if classes is None else classes.tolist())  # fmt: skip


@dataclass
class _Saved:
    preprocessor: Any
    n_features: int
    feature_names: list[str]
    classes: list[Any] | None
    target_name: str = "y"


def _dense(X: Any) -> np.ndarray:
    """A sparse matrix (a one-hot encoder's output) as a dense array: fit trains on dense tensors."""
    return np.asarray(X.toarray()) if hasattr(X, "toarray") else np.asarray(X)


def _scaling(X: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, scale)`` per feature, so that ``(X - shift) / scale`` is scaled as descend.data scales a table;
    a constant feature is only shifted."""
    width = X.shape[1]
    if scale == "none" or len(X) == 0:
        return np.zeros(width), np.ones(width)
    if scale == "minmax":
        low = X.min(0)
        span = X.max(0) - low
        return low, np.where(span > 0, span, 1.0)
    std = X.std(0)
    return X.mean(0), np.where(std > 0, std, 1.0)


class DescendClassifier(ClassifierMixin, _DescendEstimator):
    """A classifier trained by ``descend.fit``: binary (one logit, bce) or multiclass (one logit per class,
    cross-entropy). Parameters: fit's options (see :mod:`descend.sklearn`), ``random_state``, ``refit``,
    ``verbose``, ``warm_start``.

    Learned attributes: ``classes_``, ``n_features_in_``, ``feature_names_in_`` (from a DataFrame), ``model_``
    (the torch module, in evaluation mode), ``n_iter_`` (epochs trained, summed over warm starts and partial_fit
    calls), ``loss_curve_`` (each epoch's training loss), ``validation_scores_`` (each epoch's validation accuracy;
    None without validation rows), ``best_validation_score_``, ``best_loss_`` (the lowest validation loss, or
    without validation rows the lowest training loss), ``best_epoch_`` (early stopping's; None without it),
    ``history_`` (fit's rows), ``findings_`` (what the diagnostics found), ``stop_reason_``, ``converged_``,
    ``shift_`` and ``scale_`` (the feature scaling). After a refit, ``model_``, ``n_iter_``, ``loss_curve_`` and
    ``history_`` are the refit's; the validation attributes, ``stop_reason_`` and ``converged_`` are those of the
    run that chose the epochs, and ``findings_`` holds both runs'.

    Example:
        >>> from sklearn.datasets import load_breast_cancer
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> clf = DescendClassifier(model="mlp:8", epochs=20, diagnostics=False, random_state=1).fit(X, y)
        >>> clf.decision_function(X[:3]).shape, clf.n_iter_ <= 20
        ((3,), True)
    """

    _task = "classification"
    __init__ = _init("classification")

    def fit(self, X: Any, y: Any) -> DescendClassifier:
        """Train on ``X`` (rows, features) and class labels ``y``; return self."""
        options = self._options()
        warm = bool(self.warm_start) and hasattr(self, "model_")
        X, y = validate_data(self, X, y, reset=not warm, dtype=np.float64, accept_sparse=True)
        X = _dense(X)
        check_classification_targets(y)
        if warm:
            codes = self._codes(y)
        else:
            self.classes_, codes = np.unique(y, return_inverse=True)
            self._check_classes()
        self._train(lambda fraction: self._arrays(X, codes, fraction, options["seed"], keep_scaling=warm), options,
                    warm=warm)  # fmt: skip
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> DescendClassifier:
        """One pass over the rows given (no validation rows, no early stopping), continuing the weights and the
        optimizer's state of the calls before; ``classes`` (every label there will be) on the first call."""
        options = self._options()
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, reset=first, dtype=np.float64, accept_sparse=True)
        X = _dense(X)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = np.unique(np.asarray(classes))
            self._check_classes()
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"`classes={np.asarray(classes)!r}` is not the same as on the first call to partial_fit; "
                             f"expected {self.classes_!r}")  # fmt: skip
        data = self._arrays(X, self._codes(y), 0.0, options["seed"], keep_scaling=not first)
        self._descend(data, options, warm=not first, partial=True)
        return self

    def _check_classes(self) -> None:
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data "
                             f"contains only one class: {self.classes_[0]!r}")  # fmt: skip

    def _codes(self, y: np.ndarray) -> np.ndarray:
        """Class indices of labels ``y`` (each one of ``classes_``)."""
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(f"y contains labels not in classes_ {self.classes_.tolist()}: {unknown.tolist()}")
        return np.searchsorted(self.classes_, y)

    def _arrays(self, X: np.ndarray, codes: np.ndarray, validation: float, seed: int | None, *,
                keep_scaling: bool) -> _Arrays:  # fmt: skip
        y = codes.astype(np.float32 if len(self.classes_) == 2 else np.int64)
        return self._fit_arrays(X, y, validation=validation, seed=seed, stratify=True, keep_scaling=keep_scaling)

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits: shape (rows,) for two classes (positive: ``classes_[1]``), else (rows, classes)."""
        out = self._output(X)
        return out.reshape(-1) if len(self.classes_) == 2 else out

    def _probabilistic(self) -> bool:
        return self.loss in _PROBABILISTIC

    @available_if(_probabilistic)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (rows, classes): the sigmoid of the logit, or the softmax of the logits (the
        losses bce and cross_entropy train them; not offered with hinge)."""
        z = self.decision_function(X)
        if z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.stack([1.0 - p, p], axis=1)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    @available_if(_probabilistic)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The class of each row: ``classes_[1]`` where the logit is positive, else the largest logit's."""
        z = self.decision_function(X)
        index = (z > 0).astype(int) if z.ndim == 1 else z.argmax(axis=1)
        return np.asarray(self.classes_[index])

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        tags.target_tags.multi_output = False
        return tags


class DescendRegressor(RegressorMixin, _DescendEstimator):
    """A regressor trained by ``descend.fit``, one output per target column (multi-output for a 2-D ``y``).
    Parameters: fit's options (see :mod:`descend.sklearn`), ``random_state``, ``refit``, ``verbose``,
    ``warm_start``.

    Learned attributes as :class:`DescendClassifier`'s, without ``classes_``; ``validation_scores_`` are each
    epoch's validation R^2. With ``scale_target`` (by default) the losses are in standardised target units.

    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> X, y = load_diabetes(return_X_y=True)
        >>> reg = DescendRegressor(model="mlp:8", epochs=20, diagnostics=False).fit(X, y)
        >>> reg.predict(X[:3]).shape, len(reg.loss_curve_) == reg.n_iter_
        ((3,), True)
    """

    _task = "regression"
    __init__ = _init("regression")

    def fit(self, X: Any, y: Any) -> DescendRegressor:
        """Train on ``X`` (rows, features) and targets ``y`` (rows,) or (rows, outputs); return self."""
        options = self._options()
        warm = bool(self.warm_start) and hasattr(self, "model_")
        X, y = self._validate(X, y, reset=not warm)
        self._train(lambda fraction: self._fit_arrays(X, y, validation=fraction, seed=options["seed"], stratify=False,
                                                      keep_scaling=warm), options, warm=warm)  # fmt: skip
        return self

    def partial_fit(self, X: Any, y: Any) -> DescendRegressor:
        """One pass over the rows given (no validation rows, no early stopping), continuing the weights and the
        optimizer's state of the calls before."""
        options = self._options()
        first = not hasattr(self, "model_")
        X, y = self._validate(X, y, reset=first)
        data = self._fit_arrays(X, y, validation=0.0, seed=options["seed"], stratify=False, keep_scaling=not first)
        self._descend(data, options, warm=not first, partial=True)
        return self

    def _validate(self, X: Any, y: Any, *, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float64, accept_sparse=True, multi_output=True,
                             y_numeric=True)  # fmt: skip
        X = _dense(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if reset:
            self.n_outputs_ = 1 if y.ndim == 1 else int(y.shape[1])
        elif (1 if y.ndim == 1 else y.shape[1]) != self.n_outputs_:
            raise ValueError(f"y has {1 if y.ndim == 1 else y.shape[1]} output(s), but {type(self).__name__} was "
                             f"fitted with {self.n_outputs_}")  # fmt: skip
        return X, y.astype(np.float32)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets: (rows,) for one target, else (rows, outputs)."""
        out = self._output(X)
        return out.reshape(-1) if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        return tags
