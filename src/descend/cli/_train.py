"""``descend train``, ``descend predict`` and ``descend lr-find``: parse, call the library, print."""

from __future__ import annotations

import inspect
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click

from descend.cli._output import EchoProgress, Out, output_options
from descend.cli._params import (
    BATCH,
    LOSS_NAMES,
    LR,
    MODEL,
    OPTIMIZERS,
    SCHEDULES,
)
from descend.inspect.monitor import HealthMonitor, SharpnessMonitor

__all__ = ["lr_find", "train"]

DATA = click.Path(dir_okay=False, path_type=Path)


def _default_every(monitor: type) -> int:
    """The cadence of ``monitor`` when built without ``every``, as ``descend.fit``'s default diagnostics build it."""
    return int(inspect.signature(monitor).parameters["every"].default)


# The defaults of --health-every and --sharpness-every are fit's own, read from the monitors rather than repeated.
HEALTH_EVERY = _default_every(HealthMonitor)
SHARPNESS_EVERY = _default_every(SharpnessMonitor)


class BadInput(click.ClickException):
    """Bad input found by the command itself: exit code 2 and one line on stderr."""

    exit_code = 2


ENCODING = click.option("--encoding", default=None,
                        help="Text encoding of the table (default: UTF-8, with or without a BOM), e.g. latin-1.")


def prepare_table(out: Out, source: Any, *, target: str | None, task: str, validation: float, seed: int,
                  scale: str, encoding: str | None = None) -> Any:
    """``descend.data.prepare`` with its warnings shown on stderr (not as Python warnings)."""
    from descend.data import prepare

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = prepare(source, target=target, task=task, validation=validation, seed=seed, scale=scale,
                       encoding=encoding)
    for w in caught:
        out.warn(str(w.message))
    return data


class Interrupted(click.ClickException):
    """Ctrl-C during a run: exit code 130 (the shell's convention for SIGINT) and how to resume."""

    exit_code = 130


def _resume_command(command: dict[str, Any], folder: Path) -> str:
    """The command line that resumes the run in ``folder``: the same options, ``--resume`` for ``--out``."""
    argv = [str(a) for a in command.get("argv") or []]
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--out", "--resume"):
            skip = True
        elif not (word.startswith("--out=") or word.startswith("--resume=") or word == "--overwrite"):
            kept.append(word)
    return " ".join(shlex.quote(w) for w in ["descend", *(kept or ["train", "..."]), "--resume", str(folder)])


def _interrupted(command: dict[str, Any], folder: Path | None) -> Interrupted:
    if folder is None or not folder.is_dir():
        return Interrupted("interrupted before the run folder was made")
    return Interrupted(f"interrupted; the run folder {str(folder)!r} can be resumed: "
                       f"{_resume_command(command, folder)}")  # fmt: skip


def default_run_dir(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``... : the first name not taken (a default name never collides)."""
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _finish_report(out: Out, folder: Path) -> dict[str, Any]:
    """Build the report of a run that completed but was killed before its report was written."""
    import json

    from descend.report import run_report

    summary = json.loads((folder / "summary.json").read_text())
    report = run_report(folder)
    out.line(f"the run in {folder} was complete; its report was missing and is written now")
    out.line(f"report: {report}", bold=True)
    return {"run_dir": str(folder), "report": str(report), **summary}


class RecordCommand:
    """On fit start, write ``command.json`` into the run folder (before summary.json)."""

    def __init__(self, command: dict[str, Any]) -> None:
        self.command = command

    def callback(self) -> Any:
        from descend.train import Callback, TrainState

        owner = self

        class _Record(Callback):
            def on_fit_start(self, state: TrainState) -> None:
                if state.run_dir is not None:
                    state.run_dir.write_json("command.json", owner.command)

        return _Record()


def run_training(out: Out, *, data: Any, command: dict[str, Any], model: tuple[str, dict[str, Any]], loss: str,
                 optimizer: str, lr: float | str | None, schedule: str, batch_size: int | str, epochs: int,
                 early_stopping: bool | None, patience: int, seed: int, run_dir: Path | None, resume: Path | None,
                 diagnostics: bool, health_every: int, sharpness_every: int, header: str = "",
                 compile: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train with ``descend.fit`` and the monitors, write the report; return the JSON summary.

    A run refused before it started (bad options found by fit) leaves no folder behind; an interrupted one
    (Ctrl-C) exits 130 and says how to resume it."""
    import descend
    from descend import models
    from descend.report import run_report
    from descend.train import EarlyStopping, Recorder

    net = models.get(model[0], **model[1])
    # fit watches the descent by default (health every HEALTH_EVERY steps, sharpness every SHARPNESS_EVERY
    # except for closure optimizers, findings); a monitor built here replaces fit's only when the cadence differs,
    # so the defaults leave fit's choices (and its exceptions) alone.
    monitors: list[Any] = []
    if diagnostics and health_every != HEALTH_EVERY:
        monitors.append(HealthMonitor(every=health_every))
    if diagnostics and sharpness_every != SHARPNESS_EVERY:
        monitors.append(SharpnessMonitor(every=sharpness_every))  # on fit's own objective, in its units
    callbacks: list[Any] = [*monitors, Recorder(steps=True), RecordCommand(command).callback()]
    if out.talking:
        callbacks.insert(0, EchoProgress(out, header=header))
    stopping: Any = early_stopping
    if early_stopping is not False and len(data.X_val):
        stopping = EarlyStopping(patience=patience)
    if resume is not None and (resume / "summary.json").is_file() and not (resume / "report.html").is_file():
        return _finish_report(out, resume)  # killed after the summary, before the report: only the report is due
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = descend.fit(
                net, data, loss=None if loss == "auto" else loss, optimizer=optimizer, lr=lr,
                schedule=None if schedule == "constant" else schedule,
                batch_size=batch_size, epochs=epochs, early_stopping=stopping, seed=seed,
                run_dir=None if resume else run_dir, resume=resume, overwrite=overwrite, callbacks=callbacks,
                diagnostics=diagnostics, progress=False, compile=compile,
            )
        except KeyboardInterrupt:
            raise _interrupted(command, resume or run_dir) from None
    seconds = time.perf_counter() - start
    for w in caught:
        if not issubclass(w.category, (DeprecationWarning, descend.train.ConvergenceWarning)):
            out.warn(str(w.message))
    findings = result.findings
    assert result.run_dir is not None
    try:
        report = run_report(result.run_dir)
    except KeyboardInterrupt:
        raise _interrupted(command, result.run_dir) from None
    final = result.final
    out.line(f"stopped: {result.stop_reason} after {result.epochs} epochs ({result.steps} steps, {seconds:.1f} s); "
             f"converged: {'yes' if result.converged else 'no'}{' (the descent diverged)' if result.diverged else ''}")
    guard = result.guard or {}
    if guard.get("rollbacks") or guard.get("skips"):
        out.line(f"guard: {guard['rollbacks']} rollback(s), learning rate scaled by {guard['lr_scale']:g}; "
                 f"{guard['skips']} bad batch(es) skipped (see events.jsonl)")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if k.startswith("val_") or k == "loss")
    out.line(f"{'best epoch ' + str(result.best_epoch) + ' (weights restored)' if result.best_epoch else 'final'}: "
             f"{shown}")
    found = getattr(result, "lr_find", None)
    if found is not None:
        out.line(f"lr auto: {found.reason}")
    for f in findings:
        out.line(f"finding: {f}")
    out.line(f"run folder: {result.run_dir}")
    out.line(f"report: {report}", bold=True)
    return {
        "run_dir": str(result.run_dir), "report": str(report), "stop_reason": result.stop_reason,
        "converged": result.converged, "diverged": result.diverged, "guard": result.guard, "epochs": result.epochs, "steps": result.steps, "best_epoch": result.best_epoch,
        "seconds": round(seconds, 3), "final": final, "findings": [f.rule for f in findings],
        "lr": found.lr if found is not None else lr,
    }


@click.command()
@click.argument("data", type=DATA)
@click.option("--target", required=True, help="Column to predict.")
@click.option("--task", type=click.Choice(("auto", "regression", "binary", "multiclass")), default="auto",
              show_default=True, help="Learning task (auto: inferred from the target).")
@click.option("--model", "model", type=MODEL, default="mlp:64", show_default=True,
              help="mlp[:SIZES] (hidden sizes, e.g. mlp:64,32), linear, logistic, softmax or svm.")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="auto", show_default=True,
              help="Loss (auto: the model's or the task's default).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", show_default=True, help="Optimizer.")
@click.option("--lr", type=LR, default=None, help="Learning rate (> 0), or auto. Default: the optimizer's.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="constant", show_default=True,
              help="Learning-rate schedule over the whole run, peaking at --lr (or at the rate --lr auto finds).")
@click.option("--batch-size", type=BATCH, default="32", show_default=True, help="full, 1 or rows per step.")
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True, help="Most epochs to train.")
@click.option("--early-stopping/--no-early-stopping", default=None,
              help="Stop when the validation loss stops improving (default: on when there is a validation set).")
@click.option("--patience", type=click.IntRange(min=1), default=10, show_default=True,
              help="Epochs without improvement before early stopping.")
@click.option("--validation", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Fraction of rows held out for validation.")
@click.option("--scale", type=click.Choice(("standard", "minmax", "none")), default="standard", show_default=True,
              help="Feature scaling (statistics from the training rows).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of split, init, order.")
@click.option("--diagnostics/--no-diagnostics", default=True, show_default=True,
              help="Watch the descent: gradient norms per layer, sharpness against 2/lr, findings.")
@click.option("--health-every", type=click.IntRange(min=1), default=HEALTH_EVERY, show_default=True,
              help="Record per-layer gradient norms every N steps.")
@click.option("--sharpness-every", type=click.IntRange(min=1), default=SHARPNESS_EVERY, show_default=True,
              help="Measure sharpness (top Hessian eigenvalue) against 2/lr every N steps.")
@click.option("--compile", "compile_step", is_flag=True,
              help="Compile each training step with torch.compile: several times faster per step on small models, "
                   "after a compile of seconds; worth it on runs of thousands of steps.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder to write (new or empty). Default: runs/<data>-<model>-<time>.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue the unfinished run in this folder (give the same options as when it started).")
@click.option("--overwrite", is_flag=True, help="Replace the run already in the --out folder.")
@ENCODING
@output_options
def train(data: Path, target: str, task: str, model: tuple[str, dict[str, Any]], loss: str, optimizer: str,
          lr: float | str | None, schedule: str, batch_size: int | str, epochs: int, early_stopping: bool | None,
          patience: int, validation: float, scale: str, seed: int, diagnostics: bool, health_every: int,
          sharpness_every: int, compile_step: bool, out: Path | None, resume: Path | None, overwrite: bool,
          encoding: str | None, quiet: bool, as_json: bool) -> None:
    """Train a model on the table DATA (CSV, Parquet, ...) to predict --target, print progress and a summary,
    and write a run folder with its report.html.

    Example: descend train houses.csv --target price --model mlp:64,32 --epochs 30
    """
    o = Out(quiet=quiet, as_json=as_json)
    if out is not None and resume is not None:
        raise click.UsageError("give either --out (a new run) or --resume (an unfinished run), not both")
    prepared = prepare_table(o, data, target=target, task=task, validation=validation, seed=seed, scale=scale,
                             encoding=encoding)
    spec = model[0] + (":" + ",".join(map(str, model[1]["hidden"])) if model[1] else "")
    if overwrite and out is None:
        raise click.UsageError("--overwrite replaces the run in the --out folder; give --out")
    run_dir = out or default_run_dir(Path("runs") / f"{data.stem}-{model[0]}-{time.strftime('%Y%m%d-%H%M%S')}")
    header = (f"{data}: {len(prepared.X_train)} training rows, {len(prepared.X_val)} validation rows, "
              f"{prepared.n_features} features, task {prepared.task}; model {spec}, {optimizer}, batch {batch_size}, "
              f"up to {epochs} epochs")
    command = {"data": str(data), "target": target, "scale": scale, "validation": validation, "encoding": encoding,
               "argv": ["train", *sys.argv[2:]] if sys.argv[1:2] == ["train"] else []}
    summary = run_training(
        o, data=prepared, command=command, model=model, loss=loss, optimizer=optimizer, lr=lr, schedule=schedule,
        batch_size=batch_size, epochs=epochs, early_stopping=early_stopping, patience=patience, seed=seed,
        run_dir=run_dir, resume=resume, diagnostics=diagnostics, health_every=health_every,
        sharpness_every=sharpness_every, header=header, compile=compile_step, overwrite=overwrite,
    )
    o.result(summary)


@click.command("lr-find")
@click.argument("data", type=DATA)
@click.option("--target", required=True, help="Column to predict.")
@click.option("--task", type=click.Choice(("auto", "regression", "binary", "multiclass")), default="auto",
              show_default=True, help="As for descend train.")
@click.option("--model", "model", type=MODEL, default="mlp:64", show_default=True, help="As for descend train.")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="auto", show_default=True, help="As for descend train.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS[:7]), default="adam", show_default=True, help="Optimizer.")
@click.option("--batch-size", type=BATCH, default="32", show_default=True, help="full, 1 or rows per step.")
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True,
              help="The epochs of the run the rate is for (they size the test, as in descend train --lr auto).")
@click.option("--validation", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Fraction of rows held out (the test uses the training rows, as train would).")
@click.option("--scale", type=click.Choice(("standard", "minmax", "none")), default="standard", show_default=True,
              help="Feature scaling.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of split, init, batches.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML page of the test (default: lr-find-<data>.html).")
@ENCODING
@output_options
def lr_find(data: Path, target: str, task: str, model: tuple[str, dict[str, Any]], loss: str, optimizer: str,
            batch_size: int | str, epochs: int, validation: float, scale: str, seed: int, out: Path | None,
            encoding: str | None, quiet: bool, as_json: bool) -> None:
    """Run the learning-rate range test on DATA: the loss while the learning rate grows, and the rate that
    descend train --lr auto would train at with the same options (the same test: same preprocessing, target
    scaling, model, optimizer and seed; nothing is trained).

    Example: descend lr-find houses.csv --target price --optimizer sgd
    """
    from descend import models
    from descend.report import range_test_report
    from descend.report.record import range_test_record
    from descend.tune import find_lr

    o = Out(quiet=quiet, as_json=as_json)
    prepared = prepare_table(o, data, target=target, task=task, validation=validation, seed=seed, scale=scale,
                             encoding=encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        found = find_lr(models.get(model[0], **model[1]), prepared, loss=None if loss == "auto" else loss,
                        optimizer=optimizer, batch_size=batch_size, epochs=epochs, seed=seed)  # fmt: skip
    record = range_test_record(found.rows(), found.summary())
    page = range_test_report(record, out or Path(f"lr-find-{data.stem}.html"),
                             subtitle=f"{model[0]}, {optimizer}, batch {batch_size} on {data}")
    o.line(f"suggested lr {found.lr:.6g} (sweeps from {found.low:.3g} to {found.high:.3g}); {found.reason}")
    o.line(f"train with: descend train {data} --target {target} --lr auto (the same rate) or --lr {found.lr:.6g}")
    o.line(f"report: {page}", bold=True)
    o.result({**found.summary(), "report": str(page)})
