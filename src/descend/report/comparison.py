"""Comparing settings (optimizers, learning rates, batch sizes) on one problem, over several seeds.

:func:`compare` trains every setting once per seed with :func:`descend.fit` on the same prepared data (the same
split), each run in its own run folder ``<out>/<label>-seed<k>/``, and writes ``<out>/comparison.json`` and
``<out>/report.html``. Seeds change the initialisation and the data order, not the split.

The report shows, per setting, the training and validation loss per epoch as the mean over seeds with a band
from the lowest to the highest seed, and a table of the epochs and the training time until the training loss
first reached a target (by default the median over all runs of their lowest training loss, so that the faster
settings reach it and the slower may not).

Example:
    >>> from descend.report.comparison import Setting, compare   # doctest: +SKIP
    >>> compare(prepared, settings=[Setting("sgd"), Setting("adam")], seeds=3, out="runs/cmp")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from descend.errors import ConfigError
from descend.report.html import Page
from descend.report.plots import plot_comparison
from descend.train.run import atomic_write, jsonable

__all__ = ["Comparison", "Setting", "compare", "comparison_report", "reach", "read_comparison"]


@dataclass(frozen=True)
class Setting:
    """One arm of a comparison: an optimizer name, and optionally its ``lr`` and ``batch_size``."""

    optimizer: str
    lr: float | None = None
    batch_size: int | str | None = None

    @property
    def label(self) -> str:
        parts = [self.optimizer]
        if self.lr is not None:
            parts.append(f"lr{self.lr:g}")
        if self.batch_size is not None:
            parts.append(f"bs{self.batch_size}")
        return "-".join(parts)


@dataclass
class Comparison:
    """What :func:`compare` measured: one dict per run (label, seed, folder, losses per epoch, times per epoch,
    stop reason, final row), the ``target_loss`` and where the files are."""

    runs: list[dict[str, Any]]
    target_loss: float
    epochs: int
    seeds: int
    path: Path
    settings: list[dict[str, Any]] = field(default_factory=list)
    data: str = ""
    features: list[str] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """Per setting: seeds that reached the target, median epochs and seconds to reach it, median final
        training and validation loss."""
        out = []
        for label in dict.fromkeys(r["label"] for r in self.runs):
            runs = [r for r in self.runs if r["label"] == label]
            reached = [reach(r["loss"], r["time"], self.target_loss) for r in runs]
            hits = [x for x in reached if x is not None]
            row: dict[str, Any] = {
                "setting": label,
                "reached": f"{len(hits)}/{len(runs)}",
                "epochs_to_target": statistics.median(e for e, _ in hits) if hits else None,
                "seconds_to_target": round(statistics.median(t for _, t in hits), 3) if hits else None,
                "final_loss": statistics.median(r["loss"][-1] for r in runs),
            }
            vals = [r["val_loss"][-1] for r in runs if r["val_loss"]]
            if vals:
                row["final_val_loss"] = statistics.median(vals)
            out.append(row)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"target_loss": self.target_loss, "epochs": self.epochs, "seeds": self.seeds, "data": self.data,
                "features": self.features, "settings": self.settings, "runs": self.runs, "table": self.table()}


def reach(losses: Sequence[float], times: Sequence[float], target: float) -> tuple[int, float] | None:
    """(epochs, seconds) until the loss first is at or below ``target``, or None if it never is."""
    elapsed = 0.0
    for epoch, (loss, t) in enumerate(zip(losses, times), start=1):
        elapsed += t
        if loss <= target:
            return epoch, elapsed
    return None


def compare(
    data: Any,
    *,
    settings: Sequence[Setting],
    seeds: int = 3,
    out: str | os.PathLike[str],
    model: str | Callable[[], Any] = "mlp",
    epochs: int = 100,
    batch_size: int | str | None = None,
    target_loss: float | None = None,
    on_run: Callable[[str, int, Any], None] | None = None,
    data_name: str = "",
    **fit_options: Any,
) -> Comparison:
    """Train each setting with seeds 0..``seeds``-1 on ``data`` (a prepared dataset, see
    :func:`descend.data.prepare`), write the run folders, ``comparison.json`` and ``report.html`` under ``out``.

    ``model`` is a name or a factory returning a fresh model for each run; ``epochs``, ``batch_size`` and
    ``fit_options`` are fit's (with its defaults) and go to every
    :func:`descend.fit` call (early stopping is off unless given, so every run trains ``epochs`` epochs).
    ``on_run(label, seed, result)`` is called after each run.
    """
    import descend

    if not settings:
        raise ConfigError("settings: expected at least one setting (optimizer) to compare")
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"settings: the same setting is given twice ({', '.join(labels)}); expected distinct ones")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds: invalid seeds={seeds!r}; expected an int >= 1")
    if target_loss is not None and not (isinstance(target_loss, (int, float)) and math.isfinite(target_loss)):
        raise ConfigError(f"target_loss: invalid target_loss={target_loss!r}; expected a finite number")
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"out: {str(root)!r} already exists and is not an empty folder; choose a new folder")
    root.mkdir(parents=True, exist_ok=True)
    fit_options.setdefault("early_stopping", False)
    runs: list[dict[str, Any]] = []
    for setting in settings:
        for seed in range(seeds):
            spec = model() if callable(model) else model
            folder = root / f"{setting.label}-seed{seed}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", descend.train.ConvergenceWarning)
                result = descend.fit(
                    spec, data, optimizer=setting.optimizer, lr=setting.lr, epochs=epochs, seed=seed,
                    batch_size=setting.batch_size if setting.batch_size is not None else batch_size,
                    run_dir=folder, progress=False, **fit_options,
                )
            h = result.history
            runs.append({
                "label": setting.label, "seed": seed, "folder": folder.name, "stop_reason": result.stop_reason,
                "loss": [float(r["loss"]) for r in h], "val_loss": [float(r["val_loss"]) for r in h if "val_loss" in r],
                "time": [float(r.get("time", 0.0)) for r in h], "final": result.final,
            })
            if on_run is not None:
                on_run(setting.label, seed, result)
    if target_loss is None:
        lows = [min(r["loss"]) for r in runs if r["loss"] and math.isfinite(min(r["loss"]))]
        target_loss = statistics.median(lows) if lows else math.nan
    features = [str(f) for f in getattr(data, "feature_names", [])]
    result_ = Comparison(runs, float(target_loss), epochs, seeds, root, [asdict(s) for s in settings], data_name,
                         features)
    atomic_write(root / "comparison.json", (json.dumps(jsonable(result_.to_json()), indent=2) + "\n").encode())
    comparison_report(result_)
    return result_


def comparison_report(comparison: Comparison, out: str | os.PathLike[str] | None = None) -> Path:
    """Write the comparison's report (default ``<folder>/report.html``)."""
    c = comparison
    page = Page("descend comparison", f"{len(c.settings)} settings × {c.seeds} seeds, {c.epochs} epochs"
                + (f" on {c.data}" if c.data else ""))
    page.heading("Summary", "summary")
    target = f"{c.target_loss:.4g}" if math.isfinite(c.target_loss) else "none"
    page.paragraph(f"Target training loss: {target}. Time is training time (forward, backward, step and "
                   "the epoch's validation), summed over epochs until the target was first reached; medians over seeds.")
    table = c.table()
    header = ["setting", "reached", "epochs_to_target", "seconds_to_target", "final_loss", "final_val_loss"]
    page.table([h.replace("_", " ") for h in header], [[row.get(h) for h in header] for row in table])
    if c.features:
        page.tags(f"{len(c.features)} features:", c.features[:200])
    curves: dict[str, list[list[float]]] = {}
    val_curves: dict[str, list[list[float]]] = {}
    for r in c.runs:
        curves.setdefault(r["label"], []).append(r["loss"])
        if r["val_loss"]:
            val_curves.setdefault(r["label"], []).append(r["val_loss"])
    page.heading("Learning curves", "curves")
    page.figure(plot_comparison(curves, ylabel="training loss", title="Training loss: mean over seeds, band min–max"),
                "Training loss per epoch; the band spans the seeds.", "training loss by setting")
    page.figure(plot_comparison(val_curves, ylabel="validation loss", title="Validation loss: mean over seeds"),
                "Validation loss per epoch; the band spans the seeds.", "validation loss by setting")
    page.heading("Runs", "runs")
    page.table(["setting", "seed", "folder", "stopped", "final loss", "final validation loss"],
               [[r["label"], r["seed"], r["folder"], r["stop_reason"], r["loss"][-1] if r["loss"] else None,
                 r["val_loss"][-1] if r["val_loss"] else None] for r in c.runs])
    return page.write(Path(out) if out is not None else c.path / "report.html")


def read_comparison(path: str | os.PathLike[str]) -> Comparison:
    """Read ``comparison.json`` from a comparison folder."""
    from descend.errors import ModelFolderError

    p = Path(path)
    f = p / "comparison.json"
    if not f.is_file():
        raise ModelFolderError(f"report: {str(p)!r} holds no comparison.json")
    d = json.loads(f.read_text())
    return Comparison(d["runs"], float(d["target_loss"]), int(d["epochs"]), int(d["seeds"]), p,
                      d.get("settings", []), d.get("data", ""), d.get("features", []))
