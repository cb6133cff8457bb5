"""The figures of a model's quality: confusion matrix, ROC and precision-recall, calibration, regression residuals,
permutation importance. Each takes the numbers :mod:`descend.report.quality` computed and only draws them.

Class and feature names are the user's: they are drawn as plain text (mathtext off), so ``$x$`` shows as typed.

Example:
    >>> fig = plot_confusion([[5, 1], [2, 4]], ["no", "yes"])
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['no', 'yes']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from descend.report.plots import COLORS, _style

__all__ = ["plot_calibration", "plot_confusion", "plot_importance", "plot_regression", "plot_roc_pr"]


def _fig(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(1, ncols)
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.25 / width, bottom=0.6 / height, top=1 - 0.4 / height,
                        wspace=0.3)
    return fig, axes


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[Any]) -> Figure:
    """The confusion matrix normalised per true class (each row sums to 1), each cell with its share and count."""
    m = np.asarray(matrix, dtype=float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    k = len(m)
    size = min(7.5, 2.2 + 0.45 * k)
    fig = Figure(figsize=(size + 1.2, size), dpi=100)
    ax = fig.subplots()
    fig.subplots_adjust(left=1.1 / (size + 1.2), right=1 - 0.9 / (size + 1.2), bottom=1.0 / size, top=1 - 0.4 / size)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    labels = [str(c) for c in classes]
    ax.set_xticks(range(k), labels, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_yticks(range(k), labels)
    for t in (*ax.get_xticklabels(), *ax.get_yticklabels()):
        t.set_parse_math(False)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{share[i, j]:.2f}\n{int(m[i, j])}", ha="center", va="center", fontsize=7 if k > 6 else 8,
                        color="white" if share[i, j] > 0.55 else "#222222")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (normalised per true class)", fontsize=10)
    return fig


def plot_roc_pr(curves: Sequence[dict[str, Any]]) -> Figure:
    """ROC (false against true positive rate) and precision-recall, one line per class (one-vs-rest) or one for
    the positive class; each labelled with its area (ROC AUC, average precision)."""
    fig, (a1, a2) = _fig(10.0, 3.8, 2)
    legend = len(curves) <= 10
    for i, c in enumerate(curves):
        color = COLORS[i % len(COLORS)]
        a1.plot(c["fpr"], c["tpr"], color=color, lw=1.3, label=f"{c['label']} (AUC {c['auc']:.3f})")
        a2.plot(c["recall"], c["precision"], color=color, lw=1.3, drawstyle="steps-post",
                label=f"{c['label']} (AP {c['ap']:.3f})")
    a1.plot([0, 1], [0, 1], color="#999999", ls="--", lw=0.8)
    _style(a1, "false positive rate", "true positive rate", "ROC (one-vs-rest)" if len(curves) > 1 else "ROC")
    _style(a2, "recall", "precision", "Precision-recall")
    a2.set_ylim(0, 1.02)
    if legend:
        for ax in (a1, a2):
            leg = ax.legend(fontsize=7, loc="lower right" if ax is a1 else "lower left")
            for t in leg.get_texts():
                t.set_parse_math(False)
    return fig


def plot_calibration(calibration: dict[str, Any]) -> Figure:
    """The reliability diagram: in each bin of predicted probability, the mean prediction against the observed
    frequency (the diagonal is perfect calibration); the number of rows per bin below."""
    fig = Figure(figsize=(5.5, 4.6), dpi=100)
    a1, a2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fig.subplots_adjust(left=0.9 / 5.5, right=1 - 0.25 / 5.5, bottom=0.55 / 4.6, top=1 - 0.4 / 4.6, hspace=0.12)
    mean, observed, counts = (np.asarray(calibration[k], dtype=float) for k in ("predicted", "observed", "counts"))
    used = counts > 0
    a1.plot([0, 1], [0, 1], color="#999999", ls="--", lw=0.8, label="perfectly calibrated")
    a1.plot(mean[used], observed[used], "o-", color=COLORS[0], ms=4, label=calibration["label"])
    a1.legend(fontsize=7, loc="upper left")
    _style(a1, "", "observed frequency", "Calibration")
    edges = np.asarray(calibration["edges"], dtype=float)
    a2.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=COLORS[0], alpha=0.5)
    _style(a2, calibration["axis"], "rows")
    return fig


def plot_regression(true: np.ndarray, predicted: np.ndarray, *, unit: str = "") -> Figure:
    """Predicted against actual (the diagonal is perfect), residuals (actual - predicted) against predicted, and
    the residuals' histogram."""
    fig, (a1, a2, a3) = _fig(11.0, 3.6, 3)
    residual = true - predicted
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    a1.scatter(true, predicted, s=8, alpha=0.6, color=COLORS[0], lw=0)
    a1.plot([low, high], [low, high], color="#999999", ls="--", lw=0.8)
    _style(a1, f"actual{unit}", f"predicted{unit}", "Predicted against actual")
    a2.scatter(predicted, residual, s=8, alpha=0.6, color=COLORS[0], lw=0)
    a2.axhline(0.0, color="#999999", ls="--", lw=0.8)
    _style(a2, f"predicted{unit}", "residual (actual - predicted)", "Residuals against predicted")
    a3.hist(residual, bins=min(40, max(10, len(residual) // 10)), color=COLORS[0], alpha=0.75)
    a3.axvline(0.0, color="#999999", ls="--", lw=0.8)
    _style(a3, "residual", "rows", "Residuals")
    return fig


def plot_importance(rows: Sequence[dict[str, Any]], *, score: str, shown: int = 20) -> Figure | None:
    """Horizontal bars: the mean drop of ``score`` when a feature's column is shuffled, with its standard
    deviation over the repeats; the ``shown`` largest."""
    top = sorted(rows, key=lambda r: -r["mean"])[:shown]
    if not top:
        return None
    height = 1.0 + 0.28 * len(top)
    fig = Figure(figsize=(7.0, height), dpi=100)
    ax = fig.subplots()
    fig.subplots_adjust(left=2.6 / 7.0, right=1 - 0.25 / 7.0, bottom=0.55 / height, top=1 - 0.35 / height)
    y = np.arange(len(top))[::-1]
    ax.barh(y, [r["mean"] for r in top], xerr=[r["std"] for r in top], color=COLORS[0], alpha=0.8,
            error_kw={"lw": 0.8})
    ax.set_yticks(y, [str(r["feature"]) for r in top], fontsize=7)
    for t in ax.get_yticklabels():
        t.set_parse_math(False)
    ax.axvline(0.0, color="#999999", lw=0.8)
    _style(ax, f"drop in {score} when shuffled", "", "Permutation feature importance")
    return fig
