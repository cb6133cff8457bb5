"""The report of a hyperparameter study: ``report.html`` in the study folder, from the folder's files alone
(``study.json``, ``trials.csv`` and the best trial's run folder).

Sections: summary (sampler, pruner and its warm-up, trials by state, best value and parameters, the epochs pruning saved),
optimization history (each trial's value and the best so far), parameter importances (Optuna's default evaluator over
the complete trials), slice plots of the value against the most important parameters, a contour of the top two,
the best trial's learning curves, and the table of trials.

Example:
    >>> import tempfile, json
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "study.json").write_text(json.dumps({"identity": {"space": {"lr": "log:0.001:0.1"},
    ...     "sampler": "tpe", "pruner": "median", "monitor": "val_loss", "direction": "minimize"}}))
    >>> _ = (folder / "trials.csv").write_text("number,state,value,lr,epochs,seconds,run_dir\\n"
    ...     "0,complete,0.5,0.01,3,1.0,trials/0000\\n1,pruned,,0.09,1,0.4,trials/0001\\n")
    >>> study_report(folder).name
    'report.html'
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from descend.report.html import Page
from descend.report.plots import COLORS, _figure, _style
from descend.report.record import read_csv

__all__ = ["importances", "study_report"]


def _values(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(r["number"]), float(r["value"])) for r in rows
            if r.get("state") == "complete" and isinstance(r.get("value"), (int, float))]  # fmt: skip


def _history(rows: list[dict[str, Any]], minimize: bool, monitor: str) -> Figure | None:
    done = _values(rows)
    if not done:
        return None
    fig, ax = _figure()
    numbers, values = zip(*done)
    ax.scatter(numbers, values, s=14, color=COLORS[0], label="complete trial")
    best = np.minimum.accumulate(values) if minimize else np.maximum.accumulate(values)
    ax.step(numbers, best, where="post", color=COLORS[1], label="best so far")
    pruned = [int(r["number"]) for r in rows if r.get("state") == "pruned"]
    if pruned:
        ax.scatter(pruned, [best[-1]] * len(pruned), marker="x", s=14, color="#999", label="pruned (at the best)")
    _style(ax, "trial", monitor, "Optimization history")
    ax.legend(fontsize=8)
    return fig


def _numeric(rows: list[dict[str, Any]], name: str) -> bool:
    return all(isinstance(r.get(name), (int, float)) for r in rows if r.get(name) not in (None, ""))


def _slices(rows: list[dict[str, Any]], names: list[str], monitor: str, logs: set[str]) -> Figure | None:
    done = [r for r in rows if r.get("state") == "complete" and isinstance(r.get("value"), (int, float))]
    if not done or not names:
        return None
    fig, axes = _figure(3.4 * len(names), 3.2, len(names))
    for ax, name in zip(np.atleast_1d(axes), names):
        xs = [r[name] if _numeric(done, name) else str(r[name]) for r in done]
        ax.scatter(xs, [r["value"] for r in done], s=14, c=[r["number"] for r in done], cmap="viridis")
        if name in logs:
            ax.set_xscale("log")
        _style(ax, name, monitor)
    return fig


def _contour(rows: list[dict[str, Any]], a: str, b: str, logs: set[str]) -> Figure | None:
    done = [r for r in rows if r.get("state") == "complete" and isinstance(r.get("value"), (int, float))]
    if len(done) < 4 or not (_numeric(done, a) and _numeric(done, b)):
        return None
    x, y, z = (np.array([float(r[k]) for r in done]) for k in (a, b, "value"))
    fig, ax = _figure(5.6, 4.2)
    tx, ty = (np.log10(v) if k in logs else v for v, k in ((x, a), (y, b)))
    try:
        filled = ax.tricontourf(tx, ty, z, levels=12, cmap="viridis")
        fig.colorbar(filled, ax=ax)
    except (ValueError, RuntimeError):  # points on a line: no triangulation, the points alone
        pass
    ax.scatter(tx, ty, s=10, color="k")
    _style(ax, f"log10 {a}" if a in logs else a, f"log10 {b}" if b in logs else b, f"value over {a} and {b}")
    return fig


def _distributions(space: dict[str, str]) -> dict[str, Any]:
    from descend.tune.space import parse_word

    out = {}
    for name, word in space.items():
        try:
            out[name] = parse_word(f"{name}={word}")[1]
        except Exception:  # a space function's study: no distributions to rebuild
            continue
    return out


def importances(rows: list[dict[str, Any]], space: dict[str, str], minimize: bool) -> dict[str, float]:
    """Optuna's importances (its default evaluator) of the parameters over the complete trials (empty with fewer than 3)."""
    import optuna

    distributions = _distributions(space)
    done = [r for r in rows if r.get("state") == "complete" and isinstance(r.get("value"), (int, float))]
    if len(done) < 3 or not distributions:
        return {}
    study = optuna.create_study(direction="minimize" if minimize else "maximize")
    for r in done:
        params = {}
        for n, d in distributions.items():
            value = r.get(n)
            if hasattr(d, "choices"):
                value = next((c for c in d.choices if str(c) == str(value)), None)
            if value is None:
                break
            params[n] = value
        else:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=r["value"]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "too few trials": the table then says so by equal shares
            return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):
        return {}


def _curves(run: Path, monitor: str) -> Figure | None:
    path = run / "metrics.csv"
    if not path.is_file():
        return None
    rows = read_csv(path)
    keys = [k for k in ("loss", "val_loss", monitor) if rows and k in rows[0]]
    fig, ax = _figure()
    for i, key in enumerate(dict.fromkeys(keys)):
        ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], color=COLORS[i], label=key)
    _style(ax, "epoch", "value", "Best trial's learning curves")
    ax.legend(fontsize=8)
    return fig


def _pruner(identity: dict[str, Any]) -> str:
    after = identity.get("prune_after")
    if identity.get("pruner") == "none" or not after:
        return str(identity.get("pruner", "-"))
    return (f"{identity['pruner']}: no trial pruned before {after['trials']} trials have completed, nor before it "
            f"has run {after['epochs']} epochs")


def _saved(rows: list[dict[str, Any]], identity: dict[str, Any]) -> str:
    """The epochs pruned trials did not run, over trials x the study's epochs (when the epochs are fixed)."""
    most = identity.get("options", {}).get("epochs")
    if not isinstance(most, int) or not rows:
        return "-"
    ran = [r.get("epochs") for r in rows if r.get("state") == "pruned"]
    saved = sum(most - int(e) for e in ran if isinstance(e, (int, float)) and math.isfinite(e))
    return f"{saved} of {len(rows) * most} ({saved / (len(rows) * most):.0%})"


def study_report(folder: str | os.PathLike[str]) -> Path:
    """Write ``report.html`` of the study in ``folder`` and return its path."""
    folder = Path(folder)
    record = json.loads((folder / "study.json").read_text())
    identity = record["identity"]
    rows = read_csv(folder / "trials.csv") if (folder / "trials.csv").is_file() else []
    monitor, minimize = identity["monitor"], identity["direction"] == "minimize"
    space: dict[str, str] = identity.get("space", {})
    logs = {n for n, w in space.items() if w.startswith(("log:", "logint:"))}
    done = _values(rows)
    best = (min if minimize else max)(done, key=lambda p: p[1]) if done else None
    best_row = next((r for r in rows if best and int(r["number"]) == best[0]), None)
    states = {s: sum(r.get("state") == s for r in rows) for s in ("complete", "pruned", "fail")}
    seconds = [float(r["seconds"]) for r in rows if isinstance(r.get("seconds"), (int, float))]
    page = Page(f"Study {identity.get('name', folder.name)}", f"{identity['sampler']} sampler, {identity['pruner']} "
                f"pruner, {monitor} ({'lower' if minimize else 'higher'} is better)")  # fmt: skip
    page.heading("Summary")
    page.pairs([
        ("data", identity.get("data", "-")), ("target", identity.get("target") or "-"),
        ("trials", f"{len(rows)}: {states['complete']} complete, {states['pruned']} pruned, {states['fail']} failed"),
        ("best trial", f"{best[0]}: {monitor} {best[1]:.6g}" if best else "none complete yet"),
        ("best parameters", ", ".join(f"{n}={best_row.get(n)}" for n in space) if best_row else "-"),
        ("best run folder", best_row.get("run_dir", "-") if best_row else "-"),
        ("pruner", _pruner(identity)), ("epochs pruning saved", _saved(rows, identity)),
        ("time in trials", f"{sum(seconds):.1f} s"), ("seed", identity.get("seed")),
        ("fixed options", ", ".join(f"{k}={v}" for k, v in identity.get("options", {}).items()) or "-"),
    ])  # fmt: skip
    page.tags("space", [f"{n}={w}" for n, w in space.items()])
    page.heading("Optimization history")
    page.figure(_history(rows, minimize, monitor), f"{monitor} of each complete trial and the best so far",
                "optimization history")  # fmt: skip
    ranked = importances(rows, space, minimize)
    if ranked:
        page.heading("Parameter importances")
        page.table(["parameter", "importance (share)"], [(n, round(v, 4)) for n, v in ranked.items()])
    top = [n for n in (list(ranked) or list(space)) if n in (rows[0] if rows else {})][:3]
    page.heading("Slices")
    page.figure(_slices(rows, top, monitor, logs), f"{monitor} against the top parameters (colour: trial number)",
                "slice plots")  # fmt: skip
    if len(top) >= 2:
        page.figure(_contour(rows, top[0], top[1], logs), f"{monitor} over {top[0]} and {top[1]}", "contour")
    if best_row and best_row.get("run_dir"):
        page.heading("Best trial")
        run = folder / str(best_row["run_dir"])
        page.figure(_curves(run, monitor), f"trial {best[0] if best else ''}: {run}", "learning curves")
    page.heading("Trials")
    header = list(rows[0]) if rows else ["number"]
    page.table(header, [[("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                         for v in r.values()] for r in rows])  # fmt: skip
    return page.write(folder / "report.html")
