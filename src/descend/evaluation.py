"""How well a saved model does on a labelled table: the metrics of its task, computed from raw rows.

The table goes through the model's own preprocessing (gaps, unseen categories and extra columns handled as at
prediction time); rows whose target is missing are left out and counted. With :math:`n` rows, predicted labels
:math:`\\hat y_i`, true labels :math:`y_i` and :math:`p_i` the predicted probability of the positive class:

- classification: ``accuracy``, ``log_loss`` (natural log, :mod:`descend.metrics`), ``f1`` (binary: of the second
  class, the positive one; multiclass: the unweighted mean over classes of :math:`2\\,TP / (2\\,TP + FP + FN)`),
  ``roc_auc`` (binary: the probability that a positive row scores above a negative one, ties counting half;
  multiclass: the mean one-vs-rest AUC over the classes present; None when only one class is present), and the
  ``confusion`` matrix (row: true class, column: predicted class).
- regression: ``rmse``, ``mae``, ``r2`` (:mod:`descend.metrics`).

Example:
    >>> import descend, tempfile, warnings
    >>> from descend.data import load_dataset
    >>> iris = load_dataset("iris").frame
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     run = descend.fit("softmax", iris, target=load_dataset("iris").target, epochs=30, progress=False,
    ...                       run_dir=tempfile.mkdtemp() + "/r")
    >>> found = descend.evaluate(run.run_dir, iris)
    >>> sorted(found.metrics)[:3], found.metrics["accuracy"] > 0.8
    (['accuracy', 'f1', 'log_loss'], True)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descend.errors import DataError, ModelFolderError

__all__ = ["Evaluation", "evaluate", "f1_score", "roc_auc"]


@dataclass
class Evaluation:
    """The metrics of one model on one labelled table."""

    task: str
    metrics: dict[str, float | None]
    rows: int
    source: str
    model: str
    target: list[str]
    classes: list[Any] = field(default_factory=list)
    confusion: list[list[int]] | None = None
    left_out: int = 0  # rows without a target value
    notes: list[str] = field(default_factory=list)  # what the preprocessing filled or pooled
    #: the raw outputs, targets and model behind the numbers, for the HTML page's figures (not in to_dict)
    predictions: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "source": self.source, "model": self.model, "target": self.target, "rows": self.rows,
            "rows_without_target": self.left_out, "metrics": self.metrics, "classes": self.classes,
            "confusion": self.confusion, "notes": self.notes,
        }  # fmt: skip

    def table(self) -> str:
        """The metrics (and the confusion matrix) as aligned plain text."""
        width = max(len(k) for k in self.metrics)
        lines = [f"{k:<{width}}  {_number(v)}" for k, v in self.metrics.items()]
        if self.confusion is not None:
            labels = [str(c) for c in self.classes]
            w = max(6, *(len(s) for s in labels), *(len(str(n)) for row in self.confusion for n in row))
            lines += ["", "confusion (rows: true, columns: predicted)", " " * (w + 2) + "  ".join(f"{s:>{w}}" for s in labels)]
            lines += [f"{labels[i]:>{w}}  " + "  ".join(f"{n:>{w}}" for n in row) for i, row in enumerate(self.confusion)]
        return "\n".join(lines)


def _number(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def evaluate(model: Any, data: Any, *, encoding: str | None = None) -> Evaluation:
    """Metrics of ``model`` (a run folder, a model folder, or a :class:`~descend.train.saved.SavedModel`) on the
    labelled table ``data`` (a path or anything :func:`descend.data.read_table` reads) that holds the target.

    Raises :class:`~descend.errors.ModelFolderError` for a model saved without its preprocessing (it cannot read a
    table), :class:`~descend.errors.DataError` (with the file, column and row) for a table it cannot score.
    """
    from descend.data.errors import MissingColumnError, TargetError
    from descend.data.read import read_with_origin, shown_names
    from descend.train.saved import SavedModel, load

    saved = model if isinstance(model, SavedModel) else load(model)
    name = str(model) if isinstance(model, (str, os.PathLike)) else "model"
    pre = saved.preprocessor
    if pre is None or pre.target_ is None:
        raise ModelFolderError(
            f"{name}: the model was saved without its preprocessing and target, so it cannot score a table"
        )
    if getattr(pre, "kind", None) == "array":
        return _evaluate_examples(saved, pre, data, name)
    frame, origin = read_with_origin(data, encoding=encoding)
    names = list(pre.target_.names)
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise MissingColumnError(
            f"{origin}: no target column {shown_names(absent)}; evaluation needs the true values (columns are "
            f"{shown_names(list(frame.columns))})"
        )
    present = frame[names].notna().all(axis=1).to_numpy()
    if not present.any():
        raise DataError(f"{origin}: every row's target is missing; nothing to evaluate")
    left_out = int((~present).sum())
    if left_out:
        frame = frame[present].reset_index(drop=True)
    try:
        y = pre.target_.encode(frame[names], origin)
    except TargetError as e:
        raise TargetError(f"{e}; the model knows only its training classes") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X = pre.transform_frame(frame, origin)
    notes = [str(w.message) for w in caught]
    out = saved.output(X).float()
    return Evaluation(
        task=saved.task, metrics=scores(out, y, saved.task, len(pre.target_.classes)), rows=len(frame),
        source=str(origin), model=name, target=names, classes=list(pre.target_.classes),
        confusion=confusion(out, y, saved.task, len(pre.target_.classes)) if saved.task != "regression" else None,
        left_out=left_out, notes=notes, predictions=_predictions(saved, X, out, y, str(origin)),
    )  # fmt: skip


def _predictions(saved: Any, X: Any, out: torch.Tensor, y: torch.Tensor, where: str) -> Any:
    """What the page's figures are drawn from (:class:`descend.report.quality.Predictions`)."""
    from descend.report.quality import Predictions

    features = torch.as_tensor(X)
    dtype = next(saved.model.parameters()).dtype

    def score_rows(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return saved.model(torch.as_tensor(rows).to(dtype)).float().numpy()

    names = list(saved.meta.get("feature_names") or [])
    output = out.numpy().reshape(-1) if saved.task == "binary" else out.numpy()
    return Predictions(saved.task, output, y.numpy(), list(saved.classes or []), where, features.numpy(), names,
                       score_rows)


def _evaluate_examples(saved: Any, pre: Any, data: Any, name: str) -> Evaluation:
    """:func:`evaluate` for a model trained on examples of several axes (arrays, images): ``data`` as it read them."""
    import pandas as pd

    from descend.data.arrays import read_arrays
    from descend.data.read import Origin

    where = str(data) if isinstance(data, (str, os.PathLike)) else "arrays"
    X, labels, _ = read_arrays(data) if pre.image is None or not os.path.isdir(data) else _images(pre, data)
    if labels is None:
        raise DataError(f"{where}: holds no targets; evaluation needs the true values (an .npz with 'X' and 'y', a "
                        "pair (X, y), or a folder of class folders)")  # fmt: skip
    n_classes = len(pre.target_.classes)
    y = pre.target_.encode(pd.DataFrame({pre.target_.names[0]: labels}), Origin(where))
    out = saved.output(pre.apply(torch.as_tensor(X), where)).float()
    return Evaluation(
        task=saved.task, metrics=scores(out, y, saved.task, n_classes), rows=len(X), source=where, model=name,
        target=list(pre.target_.names), classes=list(pre.target_.classes),
        confusion=confusion(out, y, saved.task, n_classes) if saved.task != "regression" else None,
    )  # fmt: skip


def _images(pre: Any, folder: Any) -> Any:
    from pathlib import Path

    from descend.data.images import read_image_folder

    return read_image_folder(Path(folder), size=pre.image["size"], mode=pre.image["mode"])


def scores(out: torch.Tensor, y: torch.Tensor, task: str, n_classes: int) -> dict[str, float | None]:
    """The metrics of the task from the model's raw output (logits for classification)."""
    from descend.metrics import evaluate as metric_values

    base: dict[str, float | None] = dict(metric_values(out, y, task))
    if task == "regression":
        return base
    pred = _labels(out, task).numpy()
    true = y.long().numpy()
    prob = _probabilities(out, task).numpy()
    base["f1"] = f1_score(true, pred, n_classes, binary=task == "binary")
    base["roc_auc"] = (roc_auc(true, prob[:, 1]) if task == "binary" else _macro_auc(true, prob))
    return base


def confusion(out: torch.Tensor, y: torch.Tensor, task: str, n_classes: int) -> list[list[int]]:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y.long().numpy(), _labels(out, task).numpy()), 1)
    return m.tolist()


def _labels(out: torch.Tensor, task: str) -> torch.Tensor:
    return (out.reshape(-1) > 0).long() if task == "binary" else out.argmax(dim=-1)


def _probabilities(out: torch.Tensor, task: str) -> torch.Tensor:
    if task == "binary":
        p = torch.sigmoid(out.reshape(-1).double())
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(out.double(), dim=-1)


def f1_score(true: np.ndarray, pred: np.ndarray, n_classes: int, *, binary: bool) -> float:
    """F1 of class 1 (``binary``) or the unweighted mean F1 over classes (0 for a class never true nor predicted,
    as scikit-learn's ``zero_division=0``)."""
    def one(c: int) -> float:
        tp = int(((pred == c) & (true == c)).sum())
        wrong = int(((pred == c) != (true == c)).sum())
        return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0

    return one(1) if binary else float(np.mean([one(c) for c in range(n_classes)]))


def roc_auc(true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve: the Mann-Whitney statistic with average ranks for ties; None with one class."""
    import pandas as pd

    pos = true == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _macro_auc(true: np.ndarray, prob: np.ndarray) -> float | None:
    aucs = [roc_auc((true == c).astype(np.int64), prob[:, c]) for c in range(prob.shape[1]) if (true == c).any()]
    present = [a for a in aucs if a is not None]
    return float(np.mean(present)) if present and len(present) == len(aucs) else None


def write_report(evaluation: Evaluation, path: str | os.PathLike[str]) -> Path:
    """The evaluation as a self-contained HTML page (see :mod:`descend.report.evaluation`)."""
    from descend.report.evaluation import evaluation_report

    return evaluation_report(evaluation, path)
