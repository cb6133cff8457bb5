"""``descend search``: parse, call :func:`descend.tune.search.search`, print a line per trial.

Run again on the same ``--study`` folder with no other option, it continues (or joins) that study with the
settings in its ``study.json``; given options must agree with them.

Example (training flags a search fixes for every trial; the study owns the seed and the run folders):
    >>> [n for n in ("lr", "epochs", "seed", "run_dir") if n in FIXED]
    ['lr', 'epochs']
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from descend.cli._options import GroupedCommand, table_options
from descend.cli._output import Out, output_options
from descend.cli._train import DATA, TRAIN
from descend.errors import ConfigError

__all__ = ["search"]

# descend.tune.search's SAMPLERS, PRUNERS and PRUNE_AFTER, copied (importing it brings optuna and torch into
# every command's start-up); a test holds the copies equal, and only flags given are passed on
SAMPLERS = ("tpe", "random", "grid", "gp")
PRUNERS = ("median", "hyperband", "none")
PRUNE_AFTER = {"trials": 5, "epochs": 3}
#: fit's options a search takes as flags, fixed for every trial (the study owns seed and the run folders)
FIXED = [n for n in TRAIN if n not in ("run_dir", "resume", "overwrite", "seed", "checkpoint_every")]


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)


def _held(study: Path) -> dict[str, Any]:
    path = study / "study.json"
    return dict(json.loads(path.read_text())["identity"]) if path.is_file() else {}


def _dashboard(study: Path, storage: str | None) -> None:
    import importlib.util

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise ConfigError("search: --dashboard needs the optuna-dashboard package; expected it installed "
                          "(pip install optuna-dashboard)")  # fmt: skip
    from optuna_dashboard import run_server

    from descend.tune.storage import open_storage

    click.echo(f"optuna-dashboard of {study} on http://127.0.0.1:8080 (Ctrl-C stops it)")
    run_server(open_storage(storage, study), host="127.0.0.1", port=8080)


@click.command(cls=GroupedCommand)
@click.argument("data", type=DATA, required=False)
@click.option("--study", type=click.Path(path_type=Path), required=True,
              help="Study folder: new, or an existing study's to continue or join it.")
@click.option("--param", "params", multiple=True, metavar="NAME=KIND:SPEC",
              help="A parameter of the space, e.g. lr=log:1e-4:1e-1, optimizer=choice:sgd,adam, "
                   "model=choice:mlp:64|mlp:128,64 (KIND: float, log, int, logint, choice). Repeatable.")
@click.option("--space", "space_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help='The space from a TOML file: NAME = "KIND:SPEC" or NAME = [choices].')
@click.option("--trials", "n_trials", type=click.IntRange(min=1), default=None,
              help="Trials in the whole study, all workers together (default 20; a grid: every combination).")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="tpe", show_default=True, help="Optuna sampler.")
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
              help="Stops poor trials early, from the monitored metric after each epoch.")
@click.option("--prune-after-trials", type=click.IntRange(min=0), default=None, metavar="N",
              help=f"No trial is pruned before N trials have completed (median) [default: {PRUNE_AFTER['trials']}].")
@click.option("--prune-after-epochs", type=click.IntRange(min=1), default=None, metavar="N",
              help=f"No trial is pruned before it has run N epochs (median; Hyperband's smallest rung) "
                   f"[default: {PRUNE_AFTER['epochs']}].")
@click.option("--objective", "objective", default="val_loss", show_default=True,
              help="The monitored validation metric the search optimises (val_loss, val_accuracy, val_r2, ...).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="The study's seed: the sampler's and each trial's.")
@click.option("--storage", default=None, metavar="URL",
              help="An Optuna RDB URL (postgresql://user:pass@host/db) shared by workers on several machines "
                   "(default: a journal file in the study folder).")
@click.option("--name", default=None, help="The study's name in the storage (default: the folder's name).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine.")
@click.option("--heartbeat", type=click.IntRange(min=1), default=10, show_default=True,
              help="Seconds between a running trial's heartbeats; a trial 3 heartbeats late is failed and retried.")
@click.option("--dashboard", is_flag=True, help="Open the study in optuna-dashboard on localhost instead.")
@table_options(FIXED)
@output_options
@click.pass_context
def search(ctx: click.Context, data: Path | None, study: Path, params: tuple[str, ...], space_file: Path | None,
           n_trials: int | None, sampler: str, pruner: str, prune_after_trials: int | None,
           prune_after_epochs: int | None, objective: str, seed: int, storage: str | None, name: str | None,
           workers: int, heartbeat: int, dashboard: bool, quiet: bool, as_json: bool, **flags: Any) -> None:
    """Search the options of descend train on DATA for the best --objective: each trial a run folder in the
    --study folder, its trials in trials.csv and report.html. Training flags given are fixed for every trial.

    Example: descend search houses.csv --target price --study runs/houses-search --param lr=log:1e-4:1e-1
    --param batch_size=choice:16,32,64 --trials 30
    """
    if dashboard:
        _dashboard(study, storage)
        return
    from descend.tune.space import parse_word, parse_words, read_space_file

    o = Out(quiet=quiet, as_json=as_json)
    held = _held(study) if study.is_dir() else {}
    fixed = {n: flags[n] for n in FIXED if _given(ctx, n)}
    if params or space_file is not None:
        space = parse_words(params) if space_file is None else read_space_file(space_file)
        if params and space_file is not None:
            space = {**space, **parse_words(params)}
    elif held.get("space"):
        space = dict(parse_word(f"{n}={w}") for n, w in held["space"].items())
    else:
        raise click.UsageError("give the space: --param NAME=KIND:SPEC (repeatable) or --space FILE")
    source = data if data is not None else held.get("data")
    if source is None:
        raise click.UsageError("missing DATA: give a table file (or the --study folder of an existing study)")
    if not Path(source).exists():
        raise ConfigError(f"data: {str(source)!r} does not exist; expected a table file or a folder of images")
    if held:
        fixed = {**held.get("options", {}), **fixed}
        fixed.setdefault("target", held.get("target"))
        sampler = sampler if _given(ctx, "sampler") else held.get("sampler", sampler)
        pruner = pruner if _given(ctx, "pruner") else held.get("pruner", pruner)
        objective = objective if _given(ctx, "objective") else held.get("monitor", objective)
        seed = seed if _given(ctx, "seed") else held.get("seed", seed)
    prune_after = dict(held.get("prune_after") or {})  # a continued study keeps its own, unless given
    for key, value in (("trials", prune_after_trials), ("epochs", prune_after_epochs)):
        if value is not None:
            prune_after[key] = value
    if fixed.get("target") is None:
        raise click.UsageError("Missing option '--target' (the column to predict)")
    from descend.tune.search import search as run_search

    def shown(row: dict[str, Any]) -> None:
        value = "" if row["value"] is None else f" {objective} {row['value']:.5g}"
        chosen = ", ".join(f"{k}={row[k]}" for k in space if k in row)
        note = f" ({row['reason']})" if row.get("reason") else ""
        o.line(f"trial {row['number']}: {row['state']}{value}  {chosen}  [{row.get('epochs') or 0} epochs, "
               f"{row.get('seconds') or 0:.1f} s]{note}")  # fmt: skip

    result = run_search(Path(source), space, study=study, n_trials=n_trials, sampler=sampler, pruner=pruner,
                        monitor=objective, seed=seed, storage=storage, name=name, workers=workers,
                        heartbeat=heartbeat, on_trial=shown, command=["descend", *sys.argv[1:]],
                        **{f"prune_after_{k}": v for k, v in prune_after.items()}, **fixed)  # fmt: skip
    states = [r["state"] for r in result.trials]
    best = result.best
    o.line(f"{len(states)} trials: {states.count('complete')} complete, {states.count('pruned')} pruned, "
           f"{states.count('fail')} failed ({result.seconds:.1f} s)")  # fmt: skip
    if best is not None:
        o.line(f"best: trial {best['number']}, {objective} {best['value']:.6g}: "
               + ", ".join(f"{k}={best[k]}" for k in space if k in best))
        o.line(f"best run folder: {result.best_run}")
    o.line(f"report: {result.report}", bold=True)
    o.result({"study": str(study), "trials": len(states), "complete": states.count("complete"),
              "pruned": states.count("pruned"), "failed": states.count("fail"), "best": best,
              "best_run": str(result.best_run) if result.best_run else None, "report": str(result.report),
              "seconds": result.seconds})  # fmt: skip
