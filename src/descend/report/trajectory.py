"""The run's path over its loss surface: computed from a run folder, stored, and drawn in the run's report.

:func:`run_trajectory` reads the snapshots a run recorded (``trajectory.pt``, written by
:class:`~descend.inspect.trajectory.TrajectoryRecorder`, which ``fit`` adds to a run with a folder), finds their
principal plane around the saved final weights, evaluates the run's training objective (a target-scaled
regression's in standardised units, as in ``metrics.csv``) on a grid in that plane over the first ``rows`` training
or validation rows, rebuilt as the run prepared them (:func:`~descend.report.landscape.prepared_rows`), stores it
all in ``trajectory.json`` and rebuilds the report, whose "Path over the loss surface" section
(:func:`add_trajectory`) draws the path over the contours, coloured by epoch, with rollbacks and learning-rate
changes marked.

Example:
    >>> plot_trajectory({}) is None   # nothing recorded, nothing drawn
    True
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from descend.errors import ConfigError, ModelFolderError
from descend.inspect.trajectory import FILE, Snapshots, principal_plane, trajectory_surface
from descend.report.html import Page
from descend.report.plots import _figure, _style
from descend.report.record import RunRecord
from descend.train.run import atomic_write, jsonable

__all__ = ["TrajectoryResult", "add_trajectory", "plot_trajectory", "run_trajectory"]

RESULT = "trajectory.json"
SPLITS = ("train", "validation")


@dataclass
class TrajectoryResult:
    """What :func:`run_trajectory` found: the share of variance of each direction, the snapshots used, the loss
    at the final weights and the lowest on the grid, and where the record and the report were written."""

    explained: tuple[float, float]
    snapshots: int
    final_loss: float
    surface_min: float
    path: Path
    report: Path


def _rows(run: RunRecord, data: Any, target: str | None, rows: int, split: str) -> tuple[Any, Any, int]:
    from descend.report.landscape import prepared_rows

    prepared = prepared_rows(run, data, target)
    X, y = (prepared.X_train, prepared.y_train) if split == "train" else (prepared.X_val, prepared.y_val)
    if len(X) == 0:
        raise ConfigError(f"split: the run has no {split} rows; expected split='train'")
    return X[:rows], y[:rows], len(X)


def run_trajectory(run_dir: str | os.PathLike[str], *, data: Any = None, target: str | None = None,
                   points: int = 21, rows: int = 2000, split: str = "train", margin: float = 0.2) -> TrajectoryResult:
    """The path of the run in ``run_dir`` in its principal plane, over the loss on a ``points`` × ``points`` grid
    (the first ``rows`` rows of ``split``: train or validation); saved to ``trajectory.json`` and shown in the
    run's report."""
    import torch

    import descend
    from descend import losses
    from descend.report.run import run_report

    if split not in SPLITS:
        raise ConfigError(f"split: invalid split={split!r}; expected one of {', '.join(SPLITS)}")
    run = RunRecord.read(run_dir)
    if not (run.path / FILE).is_file():
        raise ModelFolderError(f"landscape: the run in {str(run.path)!r} recorded no trajectory ({FILE}); runs record "
                               "one when trained with a run folder and diagnostics on, or with a TrajectoryRecorder "
                               "callback")  # fmt: skip
    snapshots = Snapshots.load(run.path / FILE)
    saved = descend.load(run.path)
    model = saved.model
    X, y, available = _rows(run, data, target, rows, split)
    dtype = next(model.parameters()).dtype
    X = X.to(dtype)
    y = y.long() if run.task == "multiclass" else y.to(dtype)
    objective = losses.training_objective(losses.get(saved.meta.get("loss") or None, run.task), model)

    def loss_fn() -> torch.Tensor:
        return objective(model(X), y)

    model.eval()
    plane = principal_plane(snapshots, model)
    surface = trajectory_surface(model, loss_fn, plane, points=points, margin=margin)
    s = plane.snapshots
    record = {
        "split": split, "rows": len(X), "available": available, "loss": saved.meta.get("loss") or "",
        "snapshots": len(s), "every": s.every, "precision": str(s.offsets.dtype).removeprefix("torch."),
        "explained": plane.explained.tolist(), "steps": s.steps, "epochs": s.epochs, "lrs": s.lrs,
        "coords": plane.coords.tolist(), "residual": plane.residual.tolist(), "marks": s.marks,
        "alphas": surface.alphas.tolist(), "betas": surface.betas.tolist(), "surface": surface.loss.tolist(),
        "path_loss": surface.path_loss.tolist(), "snapshot_loss": surface.snapshot_loss.tolist(),
        "final_loss": surface.final_loss,
    }  # fmt: skip
    path = run.path / RESULT
    atomic_write(path, (json.dumps(jsonable(record)) + "\n").encode())
    report = run_report(run.path)
    finite = surface.loss[np.isfinite(surface.loss)]
    return TrajectoryResult((float(plane.explained[0]), float(plane.explained[1])), len(s), surface.final_loss,
                            float(finite.min()) if len(finite) else math.nan, path, report)  # fmt: skip


def _floats(values: Any) -> np.ndarray:
    return np.array([float(v) if isinstance(v, (int, float)) else math.nan for v in values], dtype=float)


def _nearest(steps: np.ndarray, step: float) -> int:
    return int(np.argmin(np.abs(steps - step)))


def plot_trajectory(record: dict[str, Any]) -> Figure | None:
    """Left: the path over the loss contours in its principal plane, coloured by epoch (○ start, ★ final weights,
    red × rollbacks, grey ◆ learning-rate changes). Right: the loss along the path (in the plane, and of the
    snapshots' own weights) against the step."""
    grid = np.array([_floats(r) for r in record.get("surface", [])])
    coords = np.array(record.get("coords", []), dtype=float)
    if grid.size == 0 or coords.ndim != 2 or len(coords) < 2:
        return None
    alphas, betas = _floats(record["alphas"]), _floats(record["betas"])
    steps, epochs = _floats(record["steps"]), _floats(record["epochs"])
    fig, (a1, a2) = _figure(11, 4.6, 2)
    finite = grid[np.isfinite(grid)]
    # Log contours when a positive loss spans two decades or more, so the valley floor keeps its contours.
    log = bool(len(finite)) and float(finite.min()) > 0 and float(finite.max()) > 100 * float(finite.min())
    shown = np.log10(grid) if log else grid
    A, B = np.meshgrid(alphas, betas)
    a1.contourf(A, B, np.nan_to_num(shown, nan=float(np.nanmax(shown))), levels=25, cmap="Greys", alpha=0.55)
    a1.contour(A, B, np.nan_to_num(shown, nan=float(np.nanmax(shown))), levels=25, colors="#555555", linewidths=0.3)
    a1.plot(coords[:, 0], coords[:, 1], "-", color="#1f77b4", lw=0.8, alpha=0.7, zorder=3)
    points = a1.scatter(coords[:, 0], coords[:, 1], c=epochs, cmap="viridis", s=14, zorder=4)
    fig.colorbar(points, ax=a1, label="epoch", pad=0.01)
    a1.plot([coords[0, 0]], [coords[0, 1]], "o", color="black", ms=7, mfc="white", zorder=5, label="start")
    a1.plot([0.0], [0.0], "k*", ms=12, zorder=5, label="final weights")
    for kind, style, label in (("rollback", dict(marker="x", color="#d62728", ms=10, mew=2), "rollback"),
                               ("lr", dict(marker="D", color="#7f7f7f", ms=6, mfc="none"), "lr change")):
        at = [_nearest(steps, float(m.get("step", 0))) for m in record.get("marks", []) if m.get("kind") == kind]
        if at:
            a1.plot(coords[at, 0], coords[at, 1], ls="none", zorder=6, label=label, **style)
    explained = _floats(record.get("explained", [math.nan, math.nan]))
    _style(a1, f"PC1 ({100 * explained[0]:.1f}% of the path's variance)",
           f"PC2 ({100 * explained[1]:.1f}%)", "The path over the loss" + (" (log contours)" if log else ""))
    a1.legend(fontsize=8, loc="best")
    a2.plot(steps, _floats(record["snapshot_loss"]), "-", color="#2ca02c", label="snapshot weights")
    a2.plot(steps, _floats(record["path_loss"]), "--", color="#1f77b4", label="path point in the plane")
    both = np.concatenate([_floats(record["snapshot_loss"]), _floats(record["path_loss"])])
    if len(both[np.isfinite(both)]) and np.all(both[np.isfinite(both)] > 0):
        a2.set_yscale("log")
    _style(a2, "step", "loss", "Loss along the path")
    a2.legend(fontsize=8)
    return fig


def add_trajectory(page: Page, run: RunRecord) -> None:
    """The report's "Path over the loss surface" section, when the run folder holds ``trajectory.json``."""
    path = run.path / RESULT
    if not path.is_file():
        return
    record = json.loads(path.read_text())
    explained = _floats(record.get("explained", []))
    residual = _floats(record.get("residual", []))
    split = "training" if record.get("split") == "train" else "validation"
    rows, available = record.get("rows"), record.get("available")
    subsample = f"all {rows}" if rows == available else f"the first {rows} of {available}"
    page.heading("Path over the loss surface", "trajectory")
    page.figure(
        plot_trajectory(record),
        f"The run's weights at {record.get('snapshots')} points along its descent ({record.get('precision')} "
        f"snapshots, every {record.get('every')} steps and at the end of the last epoch), projected on the two "
        f"principal directions of their differences from the final weights (Li et al., 2018, §7). The two "
        f"directions explain {100 * explained[:2].sum():.1f}% of the path's variance "
        f"({100 * explained[0]:.1f}% and {100 * explained[1]:.1f}%); the largest distance of a snapshot from "
        f"the plane is {float(np.nanmax(residual)) if len(residual) else math.nan:.3g}. Contours: the training "
        f"objective ({record.get('loss') or 'the run’s loss'}, in the units of metrics.csv’s loss) on "
        f"{subsample} {split} rows. Where the path leaves the plane, the loss drawn at a path point differs "
        f"from the loss of the snapshot's own weights (right).",
        "trajectory over the loss surface",
    )
