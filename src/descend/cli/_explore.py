"""``descend compare``, ``descend landscape``, ``descend report`` and ``descend runs``: parse, call, print."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import click

from descend.cli._options import TableType
from descend.cli._output import Out, output_options
from descend.cli._params import NameList, NumberList
from descend.cli._train import DATA, BadInput, prepare_table
from descend.train.options import OPTIMIZERS, OPTIONS

LR, BATCH, MODEL = (TableType(OPTIONS[n]) for n in ("lr", "batch_size", "model"))

__all__ = ["compare", "landscape", "report", "runs"]

FUNCTION_NAMES = ("rosenbrock", "beale", "himmelblau", "saddle", "quadratic")


@click.command()
@click.argument("data", type=DATA)
@click.option("--target", required=True, help="Column to predict.")
@click.option("--optimizers", type=NameList(OPTIMIZERS), default="sgd,momentum,adam", show_default=True,
              help=f"Optimizers to compare, separated by commas ({', '.join(OPTIMIZERS)}).")
@click.option("--lrs", type=NumberList(LR), default=None,
              help="Learning rates to try with each optimizer, e.g. 1e-3,1e-2 (default: each optimizer's own).")
@click.option("--batch-sizes", type=NumberList(BATCH), default=None, help="Batch sizes to try, e.g. 32,full.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per setting.")
@click.option("--epochs", type=click.IntRange(min=1), default=OPTIONS["epochs"].default, show_default=True,
              help="Epochs per run.")
@click.option("--model", "model", type=MODEL, default=OPTIONS["model"].default, show_default=True,
              help=OPTIONS["model"].help)
@click.option("--batch-size", type=BATCH, default=None, help="Batch size when not compared (default: as for train).")
@click.option("--target-loss", type=float, default=None,
              help="Training loss to reach (default: the median of the runs' lowest training losses).")
@click.option("--validation", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Fraction of rows held out for validation.")
@click.option("--scale", type=click.Choice(("standard", "minmax", "none")), default="standard", show_default=True,
              help="Feature scaling.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the runs and the report (new or empty). Default: runs/compare-<data>-<time>.")
@output_options
def compare(data: Path, target: str, optimizers: list[str], lrs: list[float] | None, batch_sizes: list[Any] | None,
            seeds: int, epochs: int, model: str, batch_size: int | str | None,
            target_loss: float | None, validation: float, scale: str, out: Path | None, quiet: bool,
            as_json: bool) -> None:
    """Train the same model on DATA under several optimizers (and learning rates, batch sizes), several seeds
    each; print the epochs and time each needed to reach a target loss, and write one report.

    Example: descend compare houses.csv --target price --optimizers sgd,momentum,adam --seeds 3
    """
    from descend import models
    from descend.report import Setting
    from descend.report import compare as run_comparison

    o = Out(quiet=quiet, as_json=as_json)
    prepared = prepare_table(o, data, target=target, task="auto", validation=validation, seed=0, scale=scale)
    lr_options: list[float | None] = [*lrs] if lrs else [None]
    batch_options: list[int | str | None] = [*batch_sizes] if batch_sizes else [None]
    settings = [Setting(opt, lr, bs) for opt, lr, bs in itertools.product(optimizers, lr_options, batch_options)]
    folder = out or Path("runs") / f"compare-{data.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    o.line(f"{data}: {len(settings)} settings x {seeds} seeds, {epochs} epochs each, model {model}")

    def progress(label: str, seed: int, result: Any) -> None:
        o.line(f"  {label:<24} seed {seed}  loss {result.history[-1]['loss']:.4f}  ({result.epochs} epochs)")

    result = run_comparison(prepared, settings=settings, seeds=seeds, out=folder,
                            model=lambda: models.from_spec(model), epochs=epochs, batch_size=batch_size,
                            target_loss=target_loss, on_run=progress, data_name=str(data))
    table = result.table()
    o.line(f"target training loss {result.target_loss:.4g}:")
    for row in table:
        epochs_to = row["epochs_to_target"]
        reached = f"{epochs_to:g} epochs, {row['seconds_to_target']:.2f} s" if epochs_to is not None else "not reached"
        o.line(f"  {row['setting']:<24} reached {row['reached']}  {reached}  final loss {row['final_loss']:.4f}")
    o.line(f"report: {folder / 'report.html'}", bold=True)
    o.result({"folder": str(folder), "report": str(folder / "report.html"), "target_loss": result.target_loss,
              "table": table})


@click.command()
@click.argument("target_name", metavar="FUNCTION|RUN_FOLDER")
@click.option("--optimizers", type=NameList(OPTIMIZERS), default="sgd,momentum,adam", show_default=True,
              help="Optimizers to run on a test function, separated by commas.")
@click.option("--lr", type=LR, default=None, help="One learning rate for all (default: per function and optimizer).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Steps per optimizer (default: per function).")
@click.option("--data", type=DATA, default=None, help="Run folder mode: the training table (default: the run's).")
@click.option("--target", default=None, help="Run folder mode: the target column (default: the run's).")
@click.option("--points", type=click.IntRange(min=3, max=101), default=21, show_default=True,
              help="Run folder mode: grid points per axis of the 2-D slice.")
@click.option("--span", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Run folder mode: the slice covers [-span, span] along each direction.")
@click.option("--rows", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Run folder mode: training rows used to evaluate the loss.")
@click.option("--trajectory", is_flag=True, default=False,
              help="Run folder mode: the run's own path over the loss in the plane of its two principal directions.")
@click.option("--split", type=click.Choice(["train", "validation"]), default="train", show_default=True,
              help="Run folder mode, with --trajectory: the rows the loss is evaluated on.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Function mode: HTML file to write (default: landscape-<function>.html).")
@output_options
def landscape(target_name: str, optimizers: list[str], lr: float | str | None, steps: int | None, data: Path | None,
              target: str | None, points: int, span: float, rows: int, trajectory: bool, split: str, out: Path | None,
              quiet: bool, as_json: bool) -> None:
    """Show a loss landscape. With a FUNCTION (rosenbrock, beale, himmelblau, saddle, quadratic): the paths of
    several optimizers over its contours. With a RUN_FOLDER: 1-D and 2-D filter-normalised slices of the training
    loss around the trained weights (Li et al., 2018), added to the run's report.

    With --trajectory, the path the run took instead: its snapshots projected on their two principal directions
    around the final weights, over the loss in that plane (Li et al., 2018, section 7).

    Examples: descend landscape quadratic --optimizers sgd,momentum,adam;  descend landscape runs/my-run;
    descend landscape runs/my-run --trajectory
    """
    from descend.report import function_landscape, run_landscape
    from descend.report.landscape import trajectory_rows

    o = Out(quiet=quiet, as_json=as_json)
    if lr == "auto":
        raise BadInput("--lr auto has no meaning on a test function; give a number or leave it out")
    if target_name in FUNCTION_NAMES:
        path = out or Path(f"landscape-{target_name}.html")
        trajectories, page = function_landscape(target_name, optimizers, lr=lr if isinstance(lr, float) else None,
                                                steps=steps, out=path)
        table = trajectory_rows(trajectories)
        for r in table:
            o.line(f"{r['optimizer']:<9} lr {r['lr']:<8g} f-f* {r['final_gap']:<10.3g} distance to minimum "
                   f"{r['distance_to_minimum']:<10.3g} y sign changes {r['y_sign_changes']}")
        o.line(f"report: {page}", bold=True)
        o.result({"function": target_name, "report": str(page), "trajectories": table})
        return
    folder = Path(target_name)
    if not folder.is_dir():
        raise BadInput(f"{target_name!r} is neither a test function ({', '.join(FUNCTION_NAMES)}) nor a run folder")
    if trajectory:
        from descend.report import run_trajectory

        found = run_trajectory(folder, data=data, target=target, points=points, rows=rows, split=split)
        o.line(f"{found.snapshots} snapshots; the two principal directions explain {100 * found.explained[0]:.1f}% and "
               f"{100 * found.explained[1]:.1f}% of the path's variance")
        o.line(f"loss at the final weights {found.final_loss:.4g}; lowest on the grid {found.surface_min:.4g}")
        o.line(f"trajectory: {found.path}")
        o.line(f"report: {found.report}", bold=True)
        o.result({"run_dir": str(folder), "explained": list(found.explained), "snapshots": found.snapshots,
                  "final_loss": found.final_loss, "surface_min": found.surface_min, "report": str(found.report)})
        return
    result = run_landscape(folder, data=data, target=target, points=points, span=span, rows=rows)
    o.line(f"loss at the trained weights {result.center:.4g}; lowest on the 1-D slice {result.slice_min:.4g}, "
           f"on the 2-D slice {result.surface_min:.4g}")
    o.line(f"slices: {result.path}")
    o.line(f"report: {result.report}", bold=True)
    o.result({"run_dir": str(folder), "center": result.center, "slice_min": result.slice_min,
              "surface_min": result.surface_min, "report": str(result.report)})


@click.command()
@click.argument("run_folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: RUN_FOLDER/report.html).")
@output_options
def report(run_folder: Path, out: Path | None, quiet: bool, as_json: bool) -> None:
    """(Re)build the report of a run folder, or of a comparison folder (made by descend compare)."""
    from descend.report import comparison_report, read_comparison, run_report

    o = Out(quiet=quiet, as_json=as_json)
    if (run_folder / "comparison.json").is_file():
        path = comparison_report(read_comparison(run_folder), out)
    else:
        path = run_report(run_folder, out)
    o.line(f"report: {path}", bold=True)
    o.result({"report": str(path)})


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), required=False)
@output_options
def runs(folder: Path, quiet: bool, as_json: bool) -> None:
    """List the runs in FOLDER (default: runs) and below, with their key figures."""
    from descend.report import find_runs

    o = Out(quiet=quiet, as_json=as_json)
    rows = [{**r.headline(), "run": str(r.path.relative_to(folder))} for r in find_runs(folder)]
    o.result({"folder": str(folder), "runs": rows})
    if not rows:
        o.line(f"no runs in {folder}")
        return
    columns = ["run", "status", "task", "model", "optimizer", "epochs", "stop", "loss", "val_loss", "val_accuracy",
               "val_r2"]
    columns = [c for c in columns if any(c in r for r in rows)]

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "-")

    table = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    o.line("  ".join(c.ljust(w) for c, w in zip(columns, widths)), bold=True)
    for t in table:
        o.line("  ".join(v.ljust(w) for v, w in zip(t, widths)))
