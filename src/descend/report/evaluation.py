"""The evaluation of a model on a labelled table, as an HTML section or a page of its own.

Every string from the user's side (file names, column names, class labels, notes) goes through the page's escaping
(:func:`descend.report.html.esc`), so a label like ``<script>`` is shown, never run.

Example:
    >>> from descend.evaluation import Evaluation
    >>> ev = Evaluation("binary", {"accuracy": 0.75}, rows=4, source="t.csv", model="run", target=["y"],
    ...                 classes=["<no>", "yes"], confusion=[[1, 1], [0, 2]])
    >>> "&lt;no&gt;" in evaluation_page(ev).render()
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from descend.report.html import Page

if TYPE_CHECKING:
    from descend.evaluation import Evaluation

__all__ = ["add_evaluation", "evaluation_page", "evaluation_report"]

_NAMES = {"accuracy": "accuracy", "log_loss": "log loss", "f1": "F1", "roc_auc": "ROC AUC", "rmse": "RMSE",
          "mae": "MAE", "r2": "R\u00b2"}  # fmt: skip


def add_evaluation(page: Page, ev: Evaluation, *, figures: bool = True) -> None:
    """Append the evaluation's section to ``page``: what was scored, the metrics, the confusion matrix, notes; and,
    with ``figures``, the model-quality figures of its task (:mod:`descend.report.quality`)."""
    page.heading(f"Evaluation on {ev.source}", anchor="evaluation")
    facts: list[tuple[str, object]] = [("model", ev.model), ("task", ev.task), ("target", ", ".join(ev.target)),
                                       ("rows scored", ev.rows)]  # fmt: skip
    if ev.left_out:
        facts.append(("rows without a target (left out)", ev.left_out))
    page.pairs(facts)
    page.table(["metric", "value"], [(_NAMES.get(k, k), v) for k, v in ev.metrics.items()])
    if ev.confusion is not None:
        page.paragraph("Confusion matrix: one row per true class, one column per predicted class.")
        labels = [str(c) for c in ev.classes]
        page.table(["true \\ predicted", *labels], [(labels[i], *row) for i, row in enumerate(ev.confusion)])
    for note in ev.notes:
        page.paragraph(note, css="sub")
    if ev.predictions is not None and figures:
        from descend.report.quality import add_quality

        add_quality(page, ev.predictions)


def evaluation_page(ev: Evaluation) -> Page:
    page = Page("descend evaluation", f"{ev.model} on {ev.source}")
    add_evaluation(page, ev)
    return page


def evaluation_report(ev: Evaluation, path: str | os.PathLike[str]) -> Path:
    """Write the evaluation as a self-contained HTML page at ``path`` (atomically); return the path."""
    return evaluation_page(ev).write(path)
