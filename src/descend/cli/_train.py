"""``descend train``, ``descend predict`` and ``descend lr-find``: parse, call the library, print."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from descend.cli._options import GroupedCommand, gather, read_config, table_options
from descend.cli._output import Out, output_options, shown_warnings
from descend.train.options import OPTIONS

__all__ = ["lr_find", "train"]

DATA = click.Path(path_type=Path)  # a file, or a folder of images
#: the options ``descend train`` takes as flags: every option of fit a word can give
TRAIN = [name for name, o in OPTIONS.items() if o.spelling is not None]
#: ``descend lr-find``: train's, less what the range test chooses (lr) or does not do (write a run, watch it)
LR_FIND = [n for n in TRAIN if n not in ("lr", "run_dir", "resume", "overwrite", "checkpoint_every", "compile")
           and OPTIONS[n].group != "diagnostics"]  # fmt: skip
CONFIG = click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="Options from a file: TOML (option = value), or a run's config.json to repeat that run. "
                           "Flags given override it.")  # fmt: skip


class BadInput(click.ClickException):
    """Bad input found by the command itself: exit code 2 and one line on stderr."""

    exit_code = 2


def prepare_table(out: Out, source: Any, *, target: str | None, task: str, validation: float, seed: int,
                  scale: str, encoding: str | None = None) -> Any:
    """``descend.data.prepare`` with its warnings shown on stderr (not as Python warnings)."""
    from descend.data import prepare

    with shown_warnings(out):
        return prepare(source, target=target, task=task, validation=validation, seed=seed, scale=scale,
                       encoding=encoding)


class Interrupted(click.ClickException):
    """Ctrl-C during a run: exit code 130 (the shell's convention for SIGINT) and how to resume."""

    exit_code = 130


def _interrupted(folder: str | Path | None) -> Interrupted:
    if folder is None or not Path(folder).is_dir():
        return Interrupted("interrupted before the run folder was made")
    return Interrupted(f"interrupted; the run folder {str(folder)!r} can be resumed (its options are in its "
                       f"config.json): descend train --resume {shlex.quote(str(folder))}")  # fmt: skip


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


def _record_command(command: dict[str, Any]) -> Any:
    """A callback that, on fit start, writes ``command`` to ``command.json`` in the run folder (before
    summary.json)."""
    from descend.train import Callback, TrainState

    class _Record(Callback):
        def on_fit_start(self, state: TrainState) -> None:
            if state.run_dir is not None:
                state.run_dir.write_json("command.json", command)

    return _Record()


def _header(label: str, state: Any) -> str:
    """What a run is, from the config.json fit wrote: the data's size, the task, the model and optimizer, and a
    line for each decision taken in reading the table (gaps filled, categories pooled, columns left out, ...)."""
    config = state.run_dir.read_json("config.json")
    data, resolved, args = config["data"], config["resolved"], config["arguments"]
    model = args["model"] if isinstance(args["model"], str) else type(state.model).__name__
    optimizer = args["optimizer"] if isinstance(args["optimizer"], str) else type(state.optimizer).__name__
    batch = str(resolved["batch_size"])
    if "distributed" in resolved:  # under torchrun: the global batch, each process's share of it
        shared = resolved["distributed"]
        batch += f" ({shared['batch_size']} in each of {shared['world_size']} processes)"
    lines = [f"{label}: {data['n_train']} training rows, {data['n_val']} validation rows, {data['n_features']} "
             f"features, task {resolved['task']}; model {model}, {optimizer}, batch {batch}, up to "
             f"{args['epochs']} epochs", *(f"  {line}" for line in data.get("decisions") or [])]  # fmt: skip
    return "\n".join(lines)


def run_training(out: Out, options: dict[str, Any], *, command: dict[str, Any], label: str) -> dict[str, Any]:
    """Train with ``descend.fit(**options)``, write the report; return the JSON summary.

    The data's warnings are shown on stderr before the first epoch. A run refused before it started (bad
    options found by fit) leaves no folder behind; an interrupted one (Ctrl-C) exits 130 and says how to resume
    it."""
    import descend
    from descend.cli._progress import progress_callbacks
    from descend.report import run_report
    from descend.train import Recorder

    resume = options.get("resume")
    if resume is not None and (resume / "summary.json").is_file() and not (resume / "report.html").is_file():
        return _finish_report(out, Path(resume))  # killed after the summary, before the report: only that is due
    start = time.perf_counter()
    hidden = (DeprecationWarning, descend.train.ConvergenceWarning)  # the summary says whether it converged
    with shown_warnings(out, lambda w: not issubclass(w.category, hidden)) as caught:
        watching = progress_callbacks(out, lambda state: _header(label, state), caught)
        callbacks: list[Any] = [*watching, Recorder(steps=True), _record_command(command)]
        try:
            result = descend.fit(**options, callbacks=callbacks, progress=False)
        except KeyboardInterrupt:
            raise _interrupted(resume or options.get("run_dir")) from None
    seconds = time.perf_counter() - start
    if result.run_dir is None:  # under torchrun, a process other than 0: process 0 writes and reports
        return {}
    findings = result.findings
    try:
        report = run_report(result.run_dir)
    except KeyboardInterrupt:
        raise _interrupted(result.run_dir) from None
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
    out.line(f"steps: {result.step}")
    found = getattr(result, "lr_find", None)
    if found is not None:
        out.line(f"lr auto: {found.reason}")
    for f in findings:
        out.line(f"finding: {f}")
    out.line(f"run folder: {result.run_dir}")
    out.line(f"report: {report}", bold=True)
    return {
        "run_dir": str(result.run_dir), "report": str(report), "stop_reason": result.stop_reason,
        "converged": result.converged, "diverged": result.diverged, "guard": result.guard, "epochs": result.epochs,
        "steps": result.steps, "best_epoch": result.best_epoch, "seconds": round(seconds, 3), "final": final,
        "findings": [f.rule for f in findings], "lr": found.lr if found is not None else options.get("lr"),
        "step": result.step,
    }  # fmt: skip


def command_options(ctx: click.Context, names: list[str], data: Path | None, config_file: Path | None,
                    resume: Path | None = None) -> dict[str, Any]:
    """The options of a training command: its flags over its config file (or, resuming, over the run's own
    config.json), over the defaults; with the data file, from DATA or the config."""
    config: dict[str, Any] = {}
    if config_file is not None:
        config = read_config(config_file)
    elif resume is not None and (resume / "config.json").is_file():
        config = read_config(resume / "config.json")
    options = gather(ctx, names, config)
    source = data if data is not None else config.get("data")
    if source is None:
        raise click.UsageError("missing DATA: give a table file (or a --config that names one)")
    options["data"] = Path(source)
    from descend.data.text import is_text  # here, not at the top: descend --help stays without torch

    if options.get("target") is None and not is_text(options["data"]):  # a text corpus predicts its next token
        raise click.UsageError("Missing option '--target' (the column to predict), or a --config that names it")
    return options


def _model_name(spec: Any) -> str:
    return str(spec).partition(":")[0] if isinstance(spec, str) else "model"


@click.command(cls=GroupedCommand)
@click.argument("data", type=DATA, required=False)
@table_options(TRAIN)
@CONFIG
@output_options
@click.pass_context
def train(ctx: click.Context, data: Path | None, config_file: Path | None, quiet: bool, as_json: bool,
          **flags: Any) -> None:
    """Train a model on the table DATA (CSV, Parquet, ...) to predict --target, print progress and a summary,
    and write a run folder with its report.html. Every option of descend.fit is a flag; --config reads them
    from a file.

    Example: descend train houses.csv --target price --model mlp:64,32 --epochs 30
    """
    from descend.train.distributed import rank_from_environment

    follower = rank_from_environment() != 0  # under torchrun only process 0 prints
    o = Out(quiet=quiet or follower, as_json=as_json and not follower)
    resume = flags["resume"]
    options = command_options(ctx, TRAIN, data, config_file, None if resume is None else Path(resume))
    if options["run_dir"] is not None and resume is not None:
        raise click.UsageError("give either --out (a new run) or --resume (an unfinished run), not both")
    if options["overwrite"] and options["run_dir"] is None:
        raise click.UsageError("--overwrite replaces the run in the --out folder; give --out")
    source = options["data"]
    if resume is not None:
        options["resume"] = Path(resume)
    elif options["run_dir"] is None:
        name = f"{source.stem}-{_model_name(options['model'])}-{time.strftime('%Y%m%d-%H%M%S')}"
        options["run_dir"] = default_run_dir(Path("runs") / name)
    command = {"data": str(source), "target": options["target"],
               "argv": ["train", *sys.argv[2:]] if sys.argv[1:2] == ["train"] else []}  # fmt: skip
    o.result(run_training(o, options, command=command, label=str(source)))


@click.command("lr-find", cls=GroupedCommand)
@click.argument("data", type=DATA, required=False)
@table_options(LR_FIND)
@CONFIG
@click.option("--out", "page", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML page of the test (default: lr-find-<data>.html).")
@output_options
@click.pass_context
def lr_find(ctx: click.Context, data: Path | None, config_file: Path | None, page: Path | None, quiet: bool,
            as_json: bool, **flags: Any) -> None:
    """Run the learning-rate range test on DATA: the loss while the learning rate grows, and the rate that
    descend train --lr auto would train at with the same options (the same test: same preprocessing, target
    scaling, model, optimizer and seed; nothing is trained).

    Example: descend lr-find houses.csv --target price --optimizer sgd
    """
    from descend.report import range_test_report
    from descend.report.record import range_test_record
    from descend.tune import find_lr

    o = Out(quiet=quiet, as_json=as_json)
    options = command_options(ctx, LR_FIND, data, config_file)
    source, model = options.pop("data"), options.pop("model")
    with shown_warnings(o, lambda w: not issubclass(w.category, DeprecationWarning)):
        found = find_lr(model, source, **options)
    record = range_test_record(found.rows(), found.summary())
    bs = options["batch_size"] or "default"
    written = range_test_report(record, page or Path(f"lr-find-{source.stem}.html"),
                                subtitle=f"{_model_name(model)}, {options['optimizer']}, "
                                         f"batch {bs} on {source}")  # fmt: skip
    o.line(f"suggested lr {found.lr:.6g} (sweeps from {found.low:.3g} to {found.high:.3g}); {found.reason}")
    o.line(f"train with: descend train {source} --target {options['target']} --lr auto (the same rate) or "
           f"--lr {found.lr:.6g}")  # fmt: skip
    o.line(f"report: {written}", bold=True)
    o.result({**found.summary(), "report": str(written)})
