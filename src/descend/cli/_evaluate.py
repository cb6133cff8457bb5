"""``descend evaluate``: the metrics of a saved model on a labelled table."""

from __future__ import annotations

from pathlib import Path

import click

from descend.cli._output import Out, from_descend, output_options, shown_warnings
from descend.cli._predict import ENCODING, model_path
from descend.cli._train import DATA

__all__ = ["evaluate"]


@click.command()
@click.argument("model_folder", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
@click.argument("data", type=DATA)
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the evaluation as a self-contained HTML page to this file.")
@ENCODING
@output_options
def evaluate(model_folder: Path, data: Path, html: Path | None, encoding: str | None, quiet: bool,
             as_json: bool) -> None:
    """Score the model saved in RUN (a run folder or its model/ folder) on DATA, a table that holds the target:
    accuracy, log loss, F1, ROC AUC and the confusion matrix for classification; RMSE, MAE and R^2 for
    regression."""
    from descend.evaluation import evaluate as score
    from descend.evaluation import write_report

    o = Out(quiet=quiet, as_json=as_json)
    with shown_warnings(o, from_descend):
        ev = score(model_path(model_folder), data, encoding=encoding)
    if ev.left_out:
        o.warn(f"{data}: left out {ev.left_out} row(s) without a target value")
    o.line(f"{ev.model} on {data}: {ev.rows} rows, task {ev.task}", bold=True)
    o.line(ev.table())
    summary = ev.to_dict()
    if html is not None:
        summary["report"] = str(write_report(ev, html))
        o.line(f"report: {html}")
    o.result(summary)
