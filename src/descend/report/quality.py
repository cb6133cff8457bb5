"""How good the model is, section by task, on rows it did not train on: the run's validation rows (rebuilt from
the run folder's config.json exactly as training split and scaled them), or a labelled table given to
``descend evaluate``.

- classification: the confusion matrix normalised per true class; ROC and precision-recall curves (the positive
  class, or each class one-vs-rest); calibration (binary: the positive class's probability; multiclass: the
  predicted class's, against how often it was right).
- regression: predicted against actual, residuals against predicted, the residuals' histogram.
- both: permutation feature importance, the mean drop in the task's score (accuracy, R²) when one feature's
  column is shuffled, over ``repeats`` shuffles of at most ``rows`` validation rows.

The headline numbers come from :func:`descend.evaluation.scores` and :func:`descend.evaluation.confusion`, the
ones ``descend evaluate`` prints; the curves are computed here, and their areas equal those numbers.

Example:
    >>> import numpy as np
    >>> fpr, tpr, _ = roc_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    >>> float(np.trapezoid(tpr, fpr))
    0.75
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from descend.report.html import Page

__all__ = ["Predictions", "add_quality", "calibration_bins", "permutation_importance", "precision_recall_points",
           "roc_points", "run_predictions"]

#: permutation importance: at most this many rows, shuffled this many times per feature
ROWS, REPEATS = 1000, 5


@dataclass
class Predictions:
    """A model's raw output on labelled rows: logits (binary: one column) or values, and the true targets (class
    indices, or values). ``score_rows`` (features in, raw output out) and ``X`` allow permutation importance."""

    task: str
    output: np.ndarray
    y: np.ndarray
    classes: list[Any] = field(default_factory=list)
    where: str = "the validation rows"
    X: np.ndarray | None = None
    features: list[str] = field(default_factory=list)
    score_rows: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def probabilities(self) -> np.ndarray:
        """Class probabilities, one column per class (binary: two)."""
        out = self.output.astype(np.float64)
        if self.task == "binary":
            p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
            return np.stack([1 - p, p], axis=1)
        z = np.exp(out - out.max(axis=1, keepdims=True))
        return np.asarray(z / z.sum(axis=1, keepdims=True))

    @property
    def labels(self) -> np.ndarray:
        return (self.output.reshape(-1) > 0).astype(np.int64) if self.task == "binary" else self.output.argmax(1)


def roc_points(true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from the highest score down, starting at (0, 0):
    scikit-learn's ``roc_curve(..., drop_intermediate=False)``. ``true`` is 1 for the positive rows."""
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], true[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each run of equal scores
    tp, fp = np.cumsum(t)[last], (last + 1) - np.cumsum(t)[last]
    fpr = np.r_[0.0, fp / max(fp[-1], 1)]
    tpr = np.r_[0.0, tp / max(tp[-1], 1)]
    return fpr, tpr, np.r_[np.inf, s[last]]


def precision_recall_points(true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Precision and recall at every distinct threshold, from recall 0 (precision 1) up, and the average precision
    :math:`\\sum_n (R_n - R_{n-1}) P_n` (scikit-learn's ``average_precision_score``)."""
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], true[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / max(tp[-1], 1)
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[1.0, precision], np.r_[0.0, recall], ap


def calibration_bins(true: np.ndarray, prob: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Rows grouped by predicted probability into ``bins`` equal-width bins of [0, 1]: per bin the mean
    prediction, the observed frequency of ``true`` (NaN for an empty bin) and the count (scikit-learn's
    ``calibration_curve(strategy="uniform")``, which leaves out the empty bins)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], prob, side="right")
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(which, weights=prob, minlength=bins) / counts
        observed = np.bincount(which, weights=true.astype(np.float64), minlength=bins) / counts
    return {"edges": edges, "predicted": predicted, "observed": observed, "counts": counts}


def _score(task: str, output: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (classification) or R² (regression) of raw outputs."""
    if task == "regression":
        pred, true = output.reshape(len(y), -1).astype(np.float64), y.reshape(len(y), -1).astype(np.float64)
        return float(1.0 - ((true - pred) ** 2).sum() / ((true - true.mean(axis=0)) ** 2).sum())
    labels = (output.reshape(-1) > 0).astype(np.int64) if task == "binary" else output.argmax(1)
    return float((labels == y).mean())


def permutation_importance(p: Predictions, *, rows: int = ROWS, repeats: int = REPEATS, seed: int = 0
                           ) -> list[dict[str, Any]]:
    """For each feature column: the mean and standard deviation over ``repeats`` shuffles of the drop in the
    task's score (accuracy or R²) on at most ``rows`` rows (a seeded subsample), the other columns unchanged."""
    if p.X is None or p.score_rows is None or p.X.ndim != 2:
        return []
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(p.X), size=min(rows, len(p.X)), replace=False) if len(p.X) > rows else np.arange(len(p.X))
    X, y = p.X[pick], p.y[pick]
    base = _score(p.task, p.score_rows(X), y)
    n, d = X.shape
    # The shuffled copies go through the model in large batches (a forward per copy costs more in call overhead
    # than in arithmetic for the small models this is for), a group of features at a time to bound the memory.
    group = max(1, 20_000_000 // (repeats * n * d))
    parts = []
    for first in range(0, d, group):
        features = range(first, min(d, first + group))
        copies = np.repeat(X[None], len(features) * repeats, axis=0)  # (features * repeats, n, d)
        for k, j in enumerate(features):
            for r in range(repeats):
                copies[k * repeats + r, :, j] = X[rng.permutation(n), j]
        parts.append(p.score_rows(copies.reshape(-1, d)))
    outputs = np.concatenate(parts)
    outputs = outputs.reshape(d * repeats, n, *outputs.shape[1:])
    out = []
    for j in range(d):
        drops = [base - _score(p.task, outputs[j * repeats + r], y) for r in range(repeats)]
        name = p.features[j] if j < len(p.features) else f"feature {j + 1}"
        out.append({"feature": name, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
    return out


def _headline(p: Predictions) -> dict[str, float | None]:
    import torch

    from descend.evaluation import scores

    y = torch.as_tensor(p.y)
    return scores(torch.as_tensor(p.output).float(), y.float() if p.task != "multiclass" else y, p.task,
                  len(p.classes))


def add_quality(page: Page, p: Predictions, *, importance: bool = True, seed: int = 0) -> None:
    """Append the sections of ``p``'s task: the model's quality on its rows, with figures."""
    import torch

    from descend.evaluation import confusion
    from descend.report.quality_plots import (
        plot_calibration,
        plot_confusion,
        plot_importance,
        plot_regression,
        plot_roc_pr,
    )

    page.heading("Model quality", "quality")
    if not np.isfinite(p.output).all():
        page.paragraph(f"The model's output on {p.where} is not finite everywhere: no quality figures.")
        return
    numbers = _headline(p)
    page.paragraph(f"On {p.where} ({len(p.y)} rows): " + ", ".join(
        f"{k.replace('_', ' ')} {v:.4g}" for k, v in numbers.items() if isinstance(v, float)) + ".")
    if p.task == "regression":
        page.figure(plot_regression(p.y.reshape(-1).astype(np.float64), p.output.reshape(-1).astype(np.float64)),
                    "Left: each row's prediction against its true value (on the dashed line the prediction is exact). "
                    "Middle: the error against the prediction (a pattern here is something the model missed). Right: "
                    "how the errors are spread.", "regression residuals")
    else:
        y = torch.as_tensor(p.y)
        matrix = confusion(torch.as_tensor(p.output).float(), y, p.task, len(p.classes))
        page.figure(plot_confusion(matrix, p.classes), "Each row is a true class; a cell is the share of that class's "
                    "rows predicted as the column's class (and their count). The diagonal is right.", "confusion matrix")
        page.figure(plot_roc_pr(_curves(p)), "ROC: the true positive rate against the false positive rate as the "
                    "threshold moves. Precision-recall: how precise the model is at each share of a class found.",
                    "ROC and precision-recall curves")
        page.figure(plot_calibration(_calibration(p)), "Rows binned by predicted probability: a calibrated model's "
                    "points lie on the diagonal (of rows predicted at 0.8, 80% are right).", "calibration")
    if importance:
        found = permutation_importance(p, seed=seed)
        score = "R²" if p.task == "regression" else "accuracy"
        n = min(ROWS, len(p.y))
        page.figure(plot_importance(found, score=score),
                    f"The drop in {score} when one feature's column is shuffled (mean and spread over {REPEATS} "
                    f"shuffles, on {n} of {p.where}, seed {seed}); a drop near 0 means the model does not use it.",
                    "permutation feature importance")


def _curves(p: Predictions) -> list[dict[str, Any]]:
    prob = p.probabilities
    wanted = [1] if p.task == "binary" else range(prob.shape[1])
    curves = []
    for c in wanted:
        true = (p.y.astype(np.int64) == c).astype(np.int64)
        if true.all() or not true.any():
            continue  # one-vs-rest needs both sides present
        fpr, tpr, _ = roc_points(true, prob[:, c])
        precision, recall, ap = precision_recall_points(true, prob[:, c])
        label = str(p.classes[c]) if c < len(p.classes) else str(c)
        curves.append({"label": label, "fpr": fpr, "tpr": tpr, "auc": float(np.trapezoid(tpr, fpr)),
                       "precision": precision, "recall": recall, "ap": ap})
    return curves


def _calibration(p: Predictions) -> dict[str, Any]:
    prob = p.probabilities
    if p.task == "binary":
        bins = calibration_bins(p.y.astype(np.int64), prob[:, 1])
        positive = p.classes[1] if len(p.classes) > 1 else 1
        return {**bins, "label": f"class {positive}", "axis": f"predicted probability of {positive}"}
    confidence = prob.max(axis=1)
    bins = calibration_bins((p.labels == p.y).astype(np.int64), confidence)
    return {**bins, "label": "predicted class", "axis": "probability of the predicted class"}


def run_predictions(run: Any) -> Predictions | str:
    """The saved model of ``run`` (a :class:`~descend.report.record.RunRecord`) on its validation rows, rebuilt
    as training made them; or, when they cannot be rebuilt, the reason in words."""
    import torch

    from descend.errors import ModelFolderError
    from descend.report.landscape import prepared_rows

    if run.task not in ("regression", "binary", "multiclass"):
        return f"no quality view for a {run.task} run"
    if not (run.path / "model" / "model.json").is_file():
        return "the run folder holds no saved model"
    try:
        import descend

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepared_rows(run, None, None)
            saved = descend.load(run.path)
    except ModelFolderError:
        return "the run does not record a data file to read its validation rows from (it trained on data in memory)"
    except Exception as e:  # a report is still written; the section says why it is missing
        return f"the validation rows could not be rebuilt ({type(e).__name__}: {e})"
    X, y = prepared.X_val, prepared.y_val
    if X is None or len(X) == 0:
        return "the run had no validation rows"
    dtype = next(saved.model.parameters()).dtype

    def score_rows(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return saved.model(torch.as_tensor(rows).to(dtype)).float().numpy()

    Xn = X.numpy()
    out = score_rows(Xn)
    if run.task != "regression" and out.ndim == 2 and out.shape[1] == 1 and run.task == "binary":
        out = out.reshape(-1)
    classes = list(getattr(prepared, "classes", []) or [])
    features = list(getattr(prepared, "feature_names", []) or [])
    return Predictions(run.task, out, y.numpy(), classes, "the validation rows", Xn, features, score_rows)
