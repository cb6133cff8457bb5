"""The training curves of a run, drawn for reading: one small panel per quantity, the moments that matter marked.

Each panel has the epoch on a shared x axis and its own y axis (RMSE near 55 and R² near 0.5 do not share one).
On every panel: the best epoch (the weights kept) as a green dashed line, each divergence-guard rollback as a red
line, and each change of the learning rate as a faint grey line, so a bend in a curve can be read against them.

Example:
    >>> marks = Marks(best_epoch=3, rollbacks=[1.5], lr_changes=[2.0])
    >>> fig = plot_learning_curves([{"epoch": e, "step": 2 * e, "loss": 1 / e, "val_loss": 1.2 / e,
    ...                              "val_r2": 0.1 * e} for e in (1, 2, 3, 4)], marks=marks)
    >>> len(fig.axes)   # loss, then R² in its own panel
    2
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from descend.report.plots import COLORS, Rows, _column, _positive, _style

__all__ = ["Marks", "constant_lr", "layer_names", "marks_of", "plot_grad_norms", "plot_learning_curves", "plot_lr_schedule"]

#: how a metric column is named on its panel
METRIC_NAMES = {"accuracy": "accuracy", "rmse": "RMSE", "mae": "MAE", "r2": "R²", "f1": "F1", "log_loss": "log loss"}


@dataclass
class Marks:
    """Where to draw the run's moments, in epochs (fractional for events inside an epoch)."""

    best_epoch: float | None = None
    rollbacks: list[float] = field(default_factory=list)
    lr_changes: list[float] = field(default_factory=list)

    def draw(self, ax: Any, *, per_epoch: float = 1.0, label: bool = False) -> None:
        """Mark ``ax`` (x in epochs, or in steps with ``per_epoch`` steps an epoch)."""
        for i, x in enumerate(self.lr_changes):
            ax.axvline(x * per_epoch, color="#999999", lw=0.8, alpha=0.6, ls=":",
                       label="learning rate changed" if label and i == 0 else None)
        for i, x in enumerate(self.rollbacks):
            ax.axvline(x * per_epoch, color=COLORS[1], lw=1.0, alpha=0.8,
                       label="rollback (guard)" if label and i == 0 else None)
        if self.best_epoch is not None:
            ax.axvline(self.best_epoch * per_epoch, color=COLORS[2], lw=1.2, ls="--",
                       label=f"best epoch {self.best_epoch:g}" if label else None)


def marks_of(metrics: Rows, events: Rows, best_epoch: Any) -> Marks:
    """The marks of a run: its best epoch, its ``guard_rollback`` events and the epochs whose learning rate
    differs from the epoch before (a plateau cut, a rollback, a schedule's step)."""
    per_epoch = _steps_per_epoch(metrics)
    rollbacks = [float(e["step"]) / per_epoch for e in events
                 if e.get("event") == "guard_rollback" and isinstance(e.get("step"), (int, float))]
    lr = _column(metrics, "lr")
    epochs = _column(metrics, "epoch")
    changes = [float(epochs[i - 1]) for i in range(1, len(lr))  # the epoch after which the new rate held
               if np.isfinite(lr[i]) and np.isfinite(lr[i - 1]) and not math.isclose(lr[i], lr[i - 1], rel_tol=1e-6)]
    # a schedule that moves every epoch is drawn on its own plot; marking every epoch would hide the curves
    if len(changes) > max(3, len(lr) // 4):
        changes = []
    best = float(best_epoch) if isinstance(best_epoch, (int, float)) and not isinstance(best_epoch, bool) else None
    return Marks(best, rollbacks, changes)


def _steps_per_epoch(metrics: Rows) -> float:
    if not metrics:
        return 1.0
    first = metrics[0]
    step, epoch = first.get("step"), first.get("epoch")
    if isinstance(step, (int, float)) and isinstance(epoch, (int, float)) and step > 0 and epoch > 0:
        return float(step) / float(epoch)
    return 1.0


def _panels(n: int) -> tuple[Figure, list[Any]]:
    # Up to three panels a row, each about 3.3 x 2.6 inches; fixed margins (a layout engine doubles the time).
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    width, height = 3.5 * cols + 0.4, 2.7 * rows + 0.3
    fig = Figure(figsize=(max(width, 7.0), height), dpi=100)
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.35 / height,
                        wspace=0.32, hspace=0.4)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def plot_learning_curves(metrics: Rows, steps: Rows = (), marks: Marks | None = None) -> Figure | None:
    """The loss (training per epoch, per step faint behind it, and validation) in the first panel, then one panel
    per validation metric, each on its own y axis; the marks on every panel."""
    if not metrics:
        return None
    marks = marks or Marks()
    epochs = _column(metrics, "epoch")
    keys = [k for k in metrics[0] if k.startswith("val_") and k not in ("val_loss", "val_log_loss")]
    fig, axes = _panels(1 + len(keys))
    ax = axes[0]
    if steps:
        per_epoch = _steps_per_epoch(metrics)
        ax.plot(_column(steps, "step") / per_epoch, _column(steps, "loss"), color=COLORS[0], alpha=0.2, lw=0.6)
    train = _column(metrics, "loss")
    ax.plot(epochs, train, "o-", color=COLORS[0], ms=2.5, lw=1.3, label="train")
    if "val_loss" in metrics[0]:
        ax.plot(epochs, _column(metrics, "val_loss"), "o-", color=COLORS[3], ms=2.5, lw=1.3, label="validation")
    _clip_to_finite(ax, train, _column(metrics, "val_loss"))
    _style(ax, "epoch", "loss", "Loss")
    marks.draw(ax, label=True)
    ax.legend(fontsize=7, loc="best")
    for i, key in enumerate(keys):
        name = METRIC_NAMES.get(key[4:], key[4:])
        axes[i + 1].plot(epochs, _column(metrics, key), "o-", ms=2.5, lw=1.3, color=COLORS[(4 + i) % len(COLORS)])
        _style(axes[i + 1], "epoch", name, f"Validation {name}")
        marks.draw(axes[i + 1])
    return fig


def _clip_to_finite(ax: Any, *series: np.ndarray) -> None:
    """A log axis over the finite values, clipped so one blown-up epoch does not flatten the rest."""
    values = np.concatenate([s[np.isfinite(s)] for s in series])
    if not len(values):
        return
    if _positive(values):
        ax.set_yscale("log")
        top = min(float(values.max()), 100.0 * float(np.median(values)))
        ax.set_ylim(float(values.min()) / 1.3, top * 1.3)


def plot_lr_schedule(metrics: Rows, steps: Rows = (), schedule: Rows = (), marks: Marks | None = None
                     ) -> Figure | None:
    """The learning rate as run: every step's (``steps.csv``), else every epoch's (``metrics.csv``), in front of
    the planned schedule (``schedule.csv``) drawn faint and only as far as the run went."""
    if steps and "lr" in steps[0]:
        x, lr, per_epoch = _column(steps, "step"), _column(steps, "lr"), 1.0
    elif metrics and "lr" in metrics[0]:
        x, lr, per_epoch = _column(metrics, "step"), _column(metrics, "lr"), 1.0
    elif schedule:
        x, lr, per_epoch = np.array([]), np.array([]), 1.0
    else:
        return None
    fig = Figure(figsize=(7.0, 2.5), dpi=100)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.95 / 7, right=1 - 0.2 / 7, bottom=0.55 / 2.5, top=1 - 0.35 / 2.5)
    last = float(np.nanmax(x)) if len(x) else math.inf
    planned = np.array([])
    if schedule:
        sx, slr = _column(schedule, "step"), _column(schedule, "lr")
        keep = sx <= last
        planned = slr[keep]
        ax.plot(sx[keep], planned, color="#888888", alpha=0.45, lw=2.5, label="planned")
    if len(x):
        ax.plot(x, lr, color=COLORS[4], lw=1.3, drawstyle="steps-post", label="used")
    if marks is not None:
        marks.draw(ax, per_epoch=_steps_per_epoch(metrics) * per_epoch)
    finite = np.concatenate([lr, planned])
    finite = finite[np.isfinite(finite)]
    positive = finite[finite > 0]
    if len(positive) and positive.max() > 20 * positive.min():  # rollbacks cut the rate tenfold: a log axis
        ax.set_yscale("log")
        ax.set_ylim(float(positive.min()) / 2, float(positive.max()) * 2)
    elif len(finite) and finite.max() > 0:
        ax.set_ylim(0, 1.12 * float(finite.max()))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3), useOffset=False)
    _style(ax, "step", "learning rate", "Learning rate as run")
    ax.legend(fontsize=7, loc="best")
    return fig


def constant_lr(metrics: Rows, steps: Rows = (), schedule: Rows = ()) -> float | None:
    """The learning rate when every step (or epoch) ran at the same one and no schedule was planned, else None:
    such a run gets a sentence, not a plot of a flat line."""
    rows = steps if steps and "lr" in steps[0] else metrics
    lr = _column(rows, "lr")
    if schedule or not len(lr) or not np.isfinite(lr).all():
        return None
    return float(lr[0]) if np.allclose(lr, lr[0], rtol=1e-9, atol=0.0) else None


def layer_names(model: Any) -> dict[str, str]:
    """Readable names of a torch model's layers with parameters: ``net.0`` becomes ``layer 1 Linear 64->32``
    (numbered in the order the model declares them), a convolution ``layer 2 Conv2d 16->32 3x3``."""
    names: dict[str, str] = {}
    for name, module in model.named_modules():
        if not name or not any(True for _ in module.parameters(recurse=False)):
            continue
        names[name] = f"layer {len(names) + 1} {_describe(module)}"
    return names


def _describe(module: Any) -> str:
    kind = type(module).__name__
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return f"{kind} {module.in_features}->{module.out_features}"
    if hasattr(module, "in_channels") and hasattr(module, "out_channels"):
        size = "x".join(str(k) for k in getattr(module, "kernel_size", ()))
        return f"{kind} {module.in_channels}->{module.out_channels}" + (f" {size}" if size else "")
    if hasattr(module, "num_embeddings"):
        return f"{kind} {module.num_embeddings}x{module.embedding_dim}"
    shape = getattr(module, "normalized_shape", None) or getattr(module, "num_features", None)
    return f"{kind} {shape}" if isinstance(shape, int) else (f"{kind} {next(iter(shape))}" if shape else kind)


def plot_grad_norms(health: Rows, names: dict[str, str] | None = None, marks: Marks | None = None,
                    per_epoch: float = 1.0) -> Figure | None:
    """Gradient norm of each layer against the step (log scale), each layer named by ``names`` when given."""
    if not health or not health[0].get("grad_norm"):
        return None
    names = names or {}
    steps = _column(health, "step")
    fig = Figure(figsize=(7.0, 3.2), dpi=100)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.95 / 7, right=1 - 0.2 / 7, bottom=0.55 / 3.2, top=1 - 0.35 / 3.2)
    layers: Sequence[str] = list(health[0]["grad_norm"])
    for i, layer in enumerate(layers):
        values = np.array([float(r["grad_norm"].get(layer, math.nan)) for r in health])
        ax.plot(steps, values, "o-", ms=2, color=COLORS[i % len(COLORS)], label=names.get(layer, layer), lw=1.2)
    if _positive(np.array([float(v) for r in health for v in r["grad_norm"].values()])):
        ax.set_yscale("log")
    if marks is not None:
        marks.draw(ax, per_epoch=per_epoch)
    _style(ax, "step", "gradient norm", "Gradient norm per layer")
    ax.legend(fontsize=7, ncol=2 if len(layers) > 4 else 1)
    return fig
