"""The report's plots, drawn with matplotlib (Agg, no pyplot state) and embedded as base64 PNG.

Each ``plot_*`` function takes plain numbers (lists of dicts as read from a run folder) and returns a
:class:`matplotlib.figure.Figure`, or None when there is nothing to draw; :func:`to_png` turns a figure into a
``data:`` URI that an ``<img>`` shows without any network access.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "gap_floor",
    "plot_comparison",
    "plot_loss_slices",
    "plot_lr_range",
    "plot_sharpness",
    "plot_trajectories",
    "to_png",
]

Rows = Sequence[dict[str, Any]]
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def _figure(width: float = 7.0, height: float = 3.6, ncols: int = 1) -> tuple[Figure, Any]:
    # Fixed margins: a layout engine would double the time to draw (the report's main cost).
    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(1, ncols)
    fig.subplots_adjust(left=0.95 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.35 / height,
                        wspace=0.28)
    return fig, axes


def _style(ax: Any, xlabel: str, ylabel: str, title: str = "") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _column(rows: Rows, key: str) -> np.ndarray:
    return np.array([float(r.get(key, math.nan)) if isinstance(r.get(key), (int, float)) else math.nan for r in rows])


def _positive(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(len(finite)) and bool(np.all(finite > 0))


def to_png(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_lr_range(lr_range: dict[str, Any]) -> Figure | None:
    """The range test: loss against a growing learning rate (log axis), raw and smoothed per sweep, the
    suggested rate and the range of the sweeps' suggestions. Also takes a single sweep (``lrs``, ``losses``)."""
    sweeps = lr_range.get("sweeps") or ([{"lrs": lr_range["lrs"], "losses": lr_range["losses"]}]
                                        if lr_range.get("lrs") and lr_range.get("losses") else [])
    if not sweeps:
        return None
    fig, ax = _figure(7, 3.2)
    for i, sw in enumerate(sweeps):
        color = COLORS[i % len(COLORS)]
        ax.plot(sw["lrs"], sw["losses"], color=color, alpha=0.35, lw=0.8)
        smoothed = np.asarray(sw.get("smoothed") or [], dtype=float)
        if len(smoothed) and np.isfinite(smoothed).any():
            ax.plot(sw["lrs"], smoothed, color=color, lw=1.6, label=f"sweep {i + 1} (smoothed)")
    ax.set_xscale("log")
    low, high = lr_range.get("low"), lr_range.get("high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0 < low < high:
        ax.axvspan(low, high, color=COLORS[1], alpha=0.12, label="sweeps' suggestions")
    suggestion = lr_range.get("suggestion")
    if isinstance(suggestion, (int, float)) and suggestion > 0:
        ax.axvline(suggestion, color=COLORS[1], ls="--", label=f"chosen lr {suggestion:.3g}")
    finite = np.array([v for sw in sweeps for v in sw["losses"] if isinstance(v, (int, float)) and math.isfinite(v)])
    if len(finite):
        first = float(np.median([sw["losses"][0] for sw in sweeps if sw["losses"]]))
        lowest = float(finite.min())
        ax.set_ylim(lowest - 0.05 * abs(lowest), first + 0.5 * abs(first - lowest) + 1e-12)
    ax.legend(fontsize=8)
    _style(ax, "learning rate", "loss", "Learning-rate range test")
    return fig


def plot_sharpness(curvature: Rows) -> Figure | None:
    """Sharpness (top Hessian eigenvalue) against the stability edge 2/lr, and Adam's preconditioned sharpness
    against its edge."""
    if not curvature:
        return None
    steps = _column(curvature, "step")
    fig, ax = _figure(7, 3.2)
    if "sharpness" in curvature[0]:  # Adam's runs measure only the preconditioned sharpness by default
        ax.plot(steps, _column(curvature, "sharpness"), "o-", ms=3, color=COLORS[0], label="sharpness")
        ax.plot(steps, _column(curvature, "threshold"), "--", color=COLORS[1], label="2 / lr")
    if "preconditioned_sharpness" in curvature[0]:
        ax.plot(steps, _column(curvature, "preconditioned_sharpness"), "o-", ms=3, color=COLORS[2],
                label="preconditioned sharpness (Adam)")
        ax.plot(steps, _column(curvature, "preconditioned_threshold"), "--", color=COLORS[3],
                label="its stability edge")
    values = np.concatenate([_column(curvature, k) for k in curvature[0] if "sharpness" in k or "threshold" in k])
    if _positive(values):
        ax.set_yscale("log")
    _style(ax, "step", "eigenvalue", "Sharpness against the stability edge")
    ax.legend(fontsize=8)
    return fig


def plot_loss_slices(landscape: dict[str, Any]) -> Figure | None:
    """The 1-D slice L(θ* + αd) and the contours of the 2-D slice L(θ* + αd₁ + βd₂)."""
    one, two = landscape.get("slice"), landscape.get("surface")
    if not one or not two:
        return None
    fig, (a1, a2) = _figure(10, 4, 2)
    a1.plot(one["alphas"], one["loss"], color=COLORS[0])
    a1.axvline(0.0, color="#999999", lw=0.8)
    _style(a1, "α (filter-normalised direction)", "loss", "1-D slice")
    Z = np.array(two["loss"], dtype=float)
    A, B = np.meshgrid(two["alphas"], two["betas"])
    finite = Z[np.isfinite(Z)]
    levels = np.quantile(finite, np.linspace(0.0, 1.0, 16)) if len(finite) else 10
    cs = a2.contourf(A, B, Z, levels=np.unique(levels), cmap="viridis")
    a2.contour(A, B, Z, levels=np.unique(levels), colors="white", linewidths=0.4)
    a2.plot([0], [0], "r*", ms=10)
    fig.colorbar(cs, ax=a2, label="loss")
    _style(a2, "α", "β", "2-D slice (trained weights at ★)")
    return fig


def plot_comparison(curves: dict[str, list[list[float]]], *, ylabel: str, title: str,
                    log: bool = True) -> Figure | None:
    """One line per setting: the mean over seeds of a per-epoch series, with a band from the lowest to the
    highest seed. ``curves`` maps a label to one list per seed (lists may differ in length: early stops)."""
    if not curves:
        return None
    fig, ax = _figure(7, 3.6)
    for i, (label, runs) in enumerate(curves.items()):
        n = max(len(r) for r in runs)
        grid = np.full((len(runs), n), np.nan)
        for j, r in enumerate(runs):
            grid[j, : len(r)] = r
        x = np.arange(1, n + 1)
        with np.errstate(all="ignore"):
            mean, low, high = np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)
        color = COLORS[i % len(COLORS)]
        ax.plot(x, mean, color=color, label=f"{label} (n={len(runs)})")
        ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)
    if log and all(_positive(np.array(r, dtype=float)) for runs in curves.values() for r in runs):
        ax.set_yscale("log")
    _style(ax, "epoch", ylabel, title)
    ax.legend(fontsize=8)
    return fig


def gap_floor(gaps: Sequence[np.ndarray]) -> float:
    """The bottom of a log axis of f − f*: a tenth of the smallest positive gap reached, but no lower than
    1e-12 of the largest (a run that reaches exactly 0, as Newton's can, would otherwise pull the axis down to
    1e-300 and squash every other curve against the top).

    >>> gap_floor([np.array([10.0, 1.0, 0.0]), np.array([10.0, 1e-3])])
    0.0001
    >>> gap_floor([np.array([1.0, 1e-30, 0.0])])
    1e-12
    """
    values = np.concatenate([np.asarray(g, dtype=float).ravel() for g in gaps]) if gaps else np.array([])
    positive = values[np.isfinite(values) & (values > 0)]
    if not len(positive):
        return 1e-12
    return float(max(positive.min() / 10.0, positive.max() * 1e-12))


def plot_trajectories(function: Any, trajectories: Sequence[Any]) -> Figure:
    """Optimizer paths (``Trajectory``) over the contours of a 2-D test function, and f − f* against the step."""
    fig, (a1, a2) = _figure(11, 4.6, 2)
    X, Y, Z = function.grid(200)
    floor = function.minimum
    shown = np.log1p(np.maximum(Z - floor, 0.0)) if function.log_contours else Z
    a1.contourf(X, Y, shown, levels=30, cmap="Greys", alpha=0.55)
    a1.contour(X, Y, shown, levels=30, colors="#555555", linewidths=0.3)
    for x, y in function.minima:
        a1.plot([x], [y], "k*", ms=11)
    gaps: list[np.ndarray] = []
    for i, t in enumerate(trajectories):
        color = COLORS[i % len(COLORS)]
        a1.plot(t.points[:, 0], t.points[:, 1], ".-", color=color, ms=2.5, lw=1.0, label=f"{t.optimizer} (lr {t.lr:g})",
                zorder=3 + len(trajectories) - i)  # the first named on top
        gaps.append(np.asarray(t.values, dtype=float) - floor)
    bottom = gap_floor(gaps)
    for i, (t, gap) in enumerate(zip(trajectories, gaps, strict=True)):
        a2.plot(np.arange(len(gap)), np.maximum(gap, bottom), color=COLORS[i % len(COLORS)], label=t.optimizer)
    a1.plot([function.start[0]], [function.start[1]], "o", color="black", ms=6, mfc="white")
    a1.set_xlim(*function.xlim)
    a1.set_ylim(*function.ylim)
    _style(a1, "x", "y", f"{function.name}: trajectories over the contours")
    a1.legend(fontsize=8, loc="best")
    a2.set_yscale("log")
    a2.set_ylim(bottom=bottom)
    _style(a2, "step", "f − f*", "Distance to the minimum value (exactly 0 drawn at the floor)")
    return fig
