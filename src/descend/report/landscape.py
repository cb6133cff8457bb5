"""Landscape pages: optimizer trajectories on a 2-D test function, and loss-surface slices of a trained run.

:func:`function_landscape` runs each optimizer on a test function (:mod:`descend.inspect.landscape`) and writes
one page with the paths over the contours and a table of where each ended. :func:`run_landscape` rebuilds the
training rows of a run exactly as the run saw them (same table, target, split seed, scaling), evaluates the
training loss along filter-normalised directions around the saved weights, stores ``landscape.json`` in the run
folder and rebuilds the run's report with a "Loss surface" section.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descend.errors import ModelFolderError
from descend.inspect.landscape import FUNCTIONS, Trajectory, loss_slice, loss_surface, trajectory
from descend.report.html import Page
from descend.report.plots import plot_trajectories
from descend.report.record import RunRecord
from descend.train.run import atomic_write, jsonable

__all__ = ["SurfaceResult", "function_landscape", "prepared_rows", "run_landscape", "trajectory_rows"]


def trajectory_rows(trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
    """One summary row per trajectory: final gap f − f*, distance to the nearest minimum, sign changes of y."""
    rows = []
    for t in trajectories:
        gap = float(t.values[-1] - t.minimum)
        rows.append({
            "optimizer": t.optimizer, "lr": t.lr, "steps": t.steps,
            "final_gap": gap if math.isfinite(gap) else math.inf,
            "distance_to_minimum": t.final_distance,
            "y_sign_changes": t.sign_changes(1),
            "steps_to_1e-3": t.steps_to(1e-3),
        })
    return rows


def function_landscape(function: str, optimizers: Sequence[str], *, lr: float | None = None, steps: int | None = None,
                       out: str | os.PathLike[str]) -> tuple[list[Trajectory], Path]:
    """Trajectories of ``optimizers`` on ``function`` and the page showing them, written to ``out``."""
    fn = FUNCTIONS.get(function)
    trajectories = [trajectory(function, name, lr=lr, steps=steps) for name in optimizers]
    assert fn is not None  # trajectory() has refused unknown names
    page = Page(f"descend landscape: {fn.name}",
                f"{len(trajectories)} optimizers from ({fn.start[0]:g}, {fn.start[1]:g}), "
                f"{trajectories[0].steps} steps each")
    page.figure(plot_trajectories(fn, trajectories),
                "Left: each optimizer's path over the contours (★ minima, ○ start). Right: f − f* per step.",
                f"trajectories on {fn.name}")
    rows = trajectory_rows(trajectories)
    header = list(rows[0])
    page.heading("Where each optimizer ended", "table")
    page.table([h.replace("_", " ") for h in header], [[r[h] for h in header] for r in rows])
    page.paragraph("y sign changes counts the steps on which the y coordinate crossed zero: on the "
                   "ill-conditioned quadratic (steep in y) it shows gradient descent's zig-zag.")
    return trajectories, page.write(out)


@dataclass
class SurfaceResult:
    """The slices computed by :func:`run_landscape` and where they were written."""

    center: float
    slice_min: float
    surface_min: float
    path: Path
    report: Path


def _training_rows(run: RunRecord, data: Any, target: str | None, rows: int) -> Any:
    prepared = prepared_rows(run, data, target)
    return prepared.X_train[:rows], prepared.y_train[:rows]


def prepared_rows(run: RunRecord, data: Any = None, target: str | None = None) -> Any:
    """The run's table prepared again exactly as training prepared it (same file, target, split seed, validation
    share and preparation options from config.json): a :class:`~descend.data.PreparedData`."""
    from descend.data import DataWarning, load_dataset, prepare
    from descend.train.options import PREPARE

    command, arguments = run.command, run.config.get("arguments", {})
    source = data
    if source is None:
        recorded = arguments.get("data")
        source = (load_dataset(str(command["dataset"])) if command.get("dataset") else
                  recorded if isinstance(recorded, str) and not recorded.startswith("<") else None)  # fmt: skip
    if source is None:
        raise ModelFolderError(
            f"landscape: the run in {str(run.path)!r} does not record its data file; pass --data FILE --target COL"
        )
    # The split the run trained on: fit records its options (validation None means its default of 0.2).
    recorded = arguments.get("validation")
    validation = recorded if isinstance(recorded, (int, float)) and not isinstance(recorded, bool) else 0.2
    options = {"validation": validation, "seed": int(run.config.get("seed", 0) or 0),
               **{n: arguments[n] for n in PREPARE if n in arguments}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        prepared = prepare(source, target=target or arguments.get("target") or command.get("target"), task=run.task,
                           **options)
    return prepared


def run_landscape(run_dir: str | os.PathLike[str], *, data: Any = None, target: str | None = None,
                  points: int = 21, span: float = 1.0, rows: int = 2000, seed: int = 0) -> SurfaceResult:
    """Slices of the training loss around the trained weights of the run in ``run_dir`` (the first ``rows``
    training rows), saved to ``landscape.json``; the run's report is rebuilt to show them."""
    import torch

    import descend
    from descend import losses
    from descend.report.run import run_report

    run = RunRecord.read(run_dir)
    saved = descend.load(run.path)
    X, y = _training_rows(run, data, target, rows)
    dtype = next(saved.model.parameters()).dtype
    X = X.to(dtype)
    y = y.long() if run.task == "multiclass" else y.to(dtype)
    model = saved.model
    # The loss the run trained on: a target-scaled regression's in standardised units, as in its metrics.csv.
    loss = losses.training_objective(losses.get(saved.meta.get("loss") or None, run.task), model)

    def loss_fn() -> torch.Tensor:
        return loss(model(X), y)

    one = loss_slice(model, loss_fn, points=2 * points - 1, span=span, seed=seed)
    two = loss_surface(model, loss_fn, points=points, span=span, seed=seed)
    record = {
        "rows": len(X), "span": span, "seed": seed, "center": one.center,
        "slice": {"alphas": one.alphas.tolist(), "loss": one.loss.tolist()},
        "surface": {"alphas": two.alphas.tolist(), "betas": two.betas.tolist(), "loss": two.loss.tolist()},
    }
    path = run.path / "landscape.json"
    atomic_write(path, (json.dumps(jsonable(record)) + "\n").encode())
    report = run_report(run.path)
    return SurfaceResult(one.center, float(one.loss.min()), float(two.loss.min()), path, report)
