"""The report of one run: ``report.html`` in the run folder, built from the folder's files alone.

Sections, each shown when its record exists: summary (task, data, model, final metrics, how training stopped),
configuration, learning curves (a panel per metric, the best epoch, rollbacks and learning-rate changes marked),
the learning rate as run, range test, gradient norms per layer, sharpness against 2/lr, loss-surface slices,
model quality on the validation rows of a table (:mod:`descend.report.quality`), examples (a model trained on
images or signals: misclassified validation examples, the confusion matrix, a CNN's first-layer filters;
:mod:`descend.report.images`), findings, events, environment.

Example:
    >>> from descend.report import run_report   # doctest: +SKIP
    >>> run_report("runs/digits")               # doctest: +SKIP
    PosixPath('runs/digits/report.html')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from descend.report.curves import (
    constant_lr,
    layer_names,
    marks_of,
    plot_grad_norms,
    plot_learning_curves,
    plot_lr_schedule,
)
from descend.report.html import Page, shown
from descend.report.images import add_image_views
from descend.report.plots import plot_loss_slices, plot_lr_range, plot_sharpness
from descend.report.record import RunRecord
from descend.report.trajectory import add_trajectory

__all__ = ["range_test_report", "run_report"]

STOPS = {
    "max_epochs": "reached the maximum number of epochs",
    "max_steps": "reached the maximum number of steps",
    "early_stopping": "early stopping: the validation loss stopped improving",
    "loss_threshold": "the training loss reached the threshold",
    "tolerance": "the training loss stopped changing (tolerance)",
    "diverged": "the descent diverged (a non-finite loss, or the divergence guard out of rollbacks; see the events)",
}


def _summary(page: Page, run: RunRecord) -> None:
    data = run.config.get("data", {})
    resolved = run.config.get("resolved", {})
    args = run.config.get("arguments", {})
    s = run.summary
    stop = s.get("stop_reason")
    total = sum(float(r.get("time", 0.0)) for r in run.metrics if isinstance(r.get("time"), (int, float)))
    items: list[tuple[str, Any]] = [
        ("status", status(run)),
        ("task", run.task),
        ("data", run.data_source),
        ("target", run.command.get("target") or run.model.get("target_name") or "-"),
        ("rows (train / validation)", f"{data.get('n_train', '?')} / {data.get('n_val', '?')}"),
        ("features", data.get("n_features", "?")),
        ("model", run.model_description),
        ("loss", resolved.get("loss", "?")),
        ("optimizer", f"{args.get('optimizer', '?')}, lr {shown(args['lr']) if args.get('lr') is not None else 'default'}"),
        ("batch size", resolved.get("batch_size", args.get("batch_size", "?"))),
        # where and in what arithmetic it trained (runs from before these options: the CPU, float32)
        ("device, precision", f"{resolved.get('device', 'cpu')}, {_PRECISIONS.get(resolved.get('precision', '32'))}"),
        ("training steps", resolved.get("step", "eager")),  # compiled or eager, and why
        ("how training stopped", STOPS.get(str(stop), str(stop)) if stop else "-"),
        ("converged", s.get("converged")),
        ("epochs / steps", f"{s.get('epochs', len(run.metrics))} / {s.get('steps', '?')}"),
        ("training time (s)", round(total, 2)),
    ]
    if s.get("best_epoch") is not None:
        items.append(("best epoch (weights restored)", s["best_epoch"]))
    page.heading("Summary", "summary")
    page.pairs(items)
    final = run.final
    kept = [(k, v) for k, v in final.items() if k not in ("epoch", "step", "time", "lr")]
    if kept:
        page.paragraph("Final metrics (the epoch whose weights were kept):")
        page.table([k for k, _ in kept], [[v for _, v in kept]])
    _features(page, run)


_PRECISIONS = {"32": "float32", "bf16": "bfloat16 autocast", "16-mixed": "float16 autocast with a gradient scaler"}


def status(run: RunRecord) -> str:
    """The run's state in words, never at odds with how it ended: a run that diverged says so, and says whether
    the divergence guard brought it back."""
    s = run.summary
    if not run.complete:
        return "unfinished (no summary.json)"
    if s.get("stop_reason") == "diverged":
        return "stopped: the descent diverged (" + str(s.get("divergence") or "see the events") + ")"
    if s.get("diverged"):
        guard = s.get("guard") or {}
        how = (f"{guard.get('rollbacks', '?')} rollback(s), learning rate scaled by {shown(guard.get('lr_scale'))}"
               if guard.get("rollbacks") else str(s.get("divergence") or "see the events"))
        return f"complete, after the descent diverged and the divergence guard recovered it ({how})"
    return "complete"


def _features(page: Page, run: RunRecord) -> None:
    """The inputs as counts per kind of column; every name folded away below."""
    names = [str(n) for n in run.model.get("feature_names") or []]
    columns = (run.model.get("preprocessor") or {}).get("columns")
    kinds: dict[str, int] = {}
    if isinstance(columns, list):
        for c in columns:
            if isinstance(c, dict):
                kinds[str(c.get("kind", "other"))] = kinds.get(str(c.get("kind", "other")), 0) + 1
    if not names and not kinds and not (run.config.get("data") or {}).get("decisions"):
        return
    counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    text = (f"{sum(kinds.values())} input columns ({counts}), giving {len(names)} model features" if kinds
            else f"{len(names)} features")
    page.paragraph(text + ".")
    if names:
        page.details(f"All {len(names)} feature names", names)
    decisions = [str(d) for d in (run.config.get("data") or {}).get("decisions") or []]
    if decisions:  # how prepare read the table: gaps filled, categories pooled, columns left out, ...
        page.details(f"How the table was read ({len(decisions)} decisions)", decisions)


def _configuration(page: Page, run: RunRecord) -> None:
    page.heading("Configuration", "configuration")
    if run.command.get("argv"):
        page.paragraph("Command: descend " + " ".join(str(a) for a in run.command["argv"]))
    args = run.config.get("arguments", {})
    skip = ("callbacks", "progress")
    page.pairs((k, v if not isinstance(v, (dict, list)) else str(v)) for k, v in args.items() if k not in skip)
    page.pairs([("seed", run.config.get("seed")), ("started", run.config.get("started", "-"))])


def _findings(page: Page, run: RunRecord) -> None:
    page.heading("Findings", "findings")
    if not run.findings:
        checked = "the gradient records and " if run.health else ""
        page.paragraph(f"No findings: no rule fired on {checked}the learning curves.", "ok")
        return
    for f in run.findings:
        where = ", ".join(f"{k} {f[k]}" for k in ("epoch", "step", "layer") if f.get(k) is not None)
        page.finding(str(f.get("rule", "?")), str(f.get("message", "")), str(f.get("suggestion", "")), where,
                     _evidence(f))


def _evidence(event: dict[str, Any]) -> list[tuple[str, Any]]:
    """A finding event's evidence as (name, value) pairs; a value that is not a number or text shown as text."""
    evidence = event.get("evidence")
    if not isinstance(evidence, dict):
        return []
    return [(str(k), v if v is None or isinstance(v, (bool, int, float, str)) else str(v)) for k, v in evidence.items()]


def _events(page: Page, run: RunRecord) -> None:
    page.heading("Events", "events")
    if not run.events:
        page.paragraph("No events recorded.")
        return
    t0 = float(run.events[0].get("time", 0.0))
    rows = []
    for e in run.events[:500]:
        details = ", ".join(f"{k}={shown(v)}" for k, v in e.items() if k not in ("time", "event", "evidence"))
        if _evidence(e):
            details += "; evidence: " + ", ".join(f"{k} {shown(v)}" for k, v in _evidence(e))
        rows.append([round(float(e.get("time", t0)) - t0, 2), e.get("event", "?"), details])
    page.table(["t (s)", "event", "details"], rows)


def _per_epoch(run: RunRecord) -> float:
    first = run.metrics[0] if run.metrics else {}
    step, epoch = first.get("step"), first.get("epoch")
    return float(step) / float(epoch) if isinstance(step, float) and isinstance(epoch, float) and epoch > 0 else 1.0


def _layer_names(run: RunRecord) -> dict[str, str]:
    """``net.0`` -> ``layer 1 Linear 64->32``, from the saved model's modules; the raw names when it cannot load."""
    if not (run.path / "model" / "model.json").is_file():
        return {}
    try:
        import descend

        return layer_names(descend.load(run.path).model)
    except Exception:  # the plot keeps the module names
        return {}


def _quality(page: Page, run: RunRecord) -> None:
    from descend.report.quality import add_quality, run_predictions

    found = run_predictions(run)
    if isinstance(found, str):
        page.heading("Model quality", "quality")
        page.paragraph(f"No quality view: {found}.", "sub")
        return
    add_quality(page, found, seed=int(run.config.get("seed", 0) or 0))


def run_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the report of the run in ``run_dir`` to ``out`` (default ``<run_dir>/report.html``); return its path."""
    run = RunRecord.read(run_dir)
    page = Page(f"descend report: {run.name}", f"{run.model_description} on {run.data_source}, task {run.task}")
    _summary(page, run)
    marks = marks_of(run.metrics, run.events, run.summary.get("best_epoch"))
    page.heading("Learning curves", "curves")
    page.figure(plot_learning_curves(run.metrics, run.steps, marks),
                "Loss per epoch on the training rows (mean over the epoch's steps; each step's faint behind) and "
                "the validation rows, then each validation metric on its own axis. Marked on every panel: the best "
                "epoch (green, dashed), divergence-guard rollbacks (red), learning-rate changes (grey, dotted).",
                "learning curves")
    page.heading("Learning rate", "lr")
    constant = constant_lr(run.metrics, run.steps, run.schedule)
    if constant is not None:
        page.paragraph(f"Every update used the same learning rate, {shown(constant)} (no schedule, no rollback).")
    else:
        page.figure(plot_lr_schedule(run.metrics, run.steps, run.schedule, marks),
                    "The learning rate each update used (after rollbacks and plateau cuts), in front of the planned "
                    "schedule (faint), drawn only as far as the run went.", "learning rate as run")
    if run.lr_range:
        reason = str(run.lr_range.get("reason") or "")
        page.figure(plot_lr_range(run.lr_range), "Range test: the loss while the learning rate grows each step; "
                    "the dashed line is the rate chosen. " + reason, "learning-rate range test")
    if run.health:
        page.heading("Gradients", "gradients")
        page.figure(plot_grad_norms(run.health, _layer_names(run), marks, _per_epoch(run)),
                    "Norm of each layer's gradient, measured every few steps; layers numbered in the model's order.",
                    "gradient norms per layer")
    if run.curvature:
        page.heading("Curvature", "curvature")
        page.figure(plot_sharpness(run.curvature), "Largest Hessian eigenvalue of the training loss; gradient "
                    "descent is stable while it stays below 2/lr.", "sharpness against 2/lr")
    if run.landscape:
        page.heading("Loss surface", "surface")
        page.figure(plot_loss_slices(run.landscape), "Loss along random filter-normalised directions around the "
                    "trained weights (Li et al., 2018).", "loss surface slices")
    add_trajectory(page, run)
    add_image_views(page, run)
    _quality(page, run)
    _findings(page, run)
    _events(page, run)
    _configuration(page, run)
    env = run.config.get("environment", {})
    if env:
        page.heading("Environment", "environment")
        page.pairs(env.items())
    return page.write(Path(out) if out is not None else run.path / "report.html")


def range_test_report(record: dict[str, Any], out: str | os.PathLike[str], *, subtitle: str = "") -> Path:
    """A page with one range test (``record`` as :func:`descend.report.record.range_test_record` makes it)."""
    page = Page("descend learning-rate range test", subtitle)
    page.figure(plot_lr_range(record), "The loss while the learning rate grows each step, per sweep (faint: raw, "
                "solid: smoothed); the dashed line is the suggested rate.", "learning-rate range test")
    page.pairs([("suggested lr", record.get("suggestion")), ("sweeps' suggestions from", record.get("low")),
                ("to", record.get("high")), ("fallback (no usable descent)", record.get("fallback")),
                ("how it was chosen", record.get("reason", ""))])
    return page.write(out)
