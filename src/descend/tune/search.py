"""Hyperparameter search on Optuna: every trial a descend run, parallel, resumable, reproducible.

:func:`search` draws each trial's options from a space (:mod:`descend.tune.space`), trains it with
:func:`descend.fit` into ``STUDY/trials/NNNN`` and reports the monitored validation metric to Optuna after every
epoch, so the pruner (``median``, ``hyperband`` or ``none``) can stop a poor trial early (its run ends with
stop reason ``pruned``). The trial's value is the monitored metric of the model the run kept (the best epoch's,
with early stopping), minimised (or maximised for accuracy, r2, ...).

Samplers: ``tpe`` (default), ``random``, ``grid`` (every combination of choice parameters, each once) and ``gp``
(Optuna's Gaussian-process sampler). The study's ``seed`` fixes the sampler and each trial's seed (from the
study's seed and the trial's number), so one worker repeats a study exactly.

Several workers: ``workers=N`` starts N-1 processes beside this one; another ``search`` on the same folder (or,
with ``storage``, the same RDB study from another machine) joins. Together they run ``n_trials`` trials: a worker
that asked for a trial after the study had its trials marks it surplus and runs nothing. A worker killed mid-trial
stops its heartbeat; the next worker to start a trial marks that trial failed and queues it once more with the
same parameters and seed.

Example:
    >>> import tempfile, descend
    >>> from descend.data import load_dataset
    >>> folder = Path(tempfile.mkdtemp()) / "iris"
    >>> result = search(load_dataset("iris"), {"lr": FloatDistribution(1e-3, 1e-1, log=True)}, study=folder,
    ...                 n_trials=2, epochs=2, report=False,
    ...                 trial_reports=False)
    >>> [row["state"] for row in result.trials], (folder / "trials.csv").is_file()
    (['complete', 'complete'], True)
"""

from __future__ import annotations

import json
import math
import os
import pickle
import socket
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import fail_stale_trials
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from descend.errors import ConfigError, DescendError
from descend.train.options import OPTIONS, PREPARE
from descend.train.state import Callback, TrainState
from descend.tune.space import Space, as_text, check_space, sample
from descend.tune.storage import open_storage, redact
from descend.tune.study import RUNS, STUDY, check_folder, counted, write_identity, write_trials

__all__ = ["PRUNERS", "SAMPLERS", "StudyResult", "search"]

SAMPLERS = ("tpe", "random", "grid", "gp")
PRUNERS = ("median", "hyperband", "none")
#: When a pruner may first stop a trial: not before ``trials`` trials have completed (the median of fewer finished
#: curves is mostly noise; Optuna's MedianPruner waits for 5 too), and not before the trial has run ``epochs``
#: epochs (Hyperband's smallest rung): on the benchmark problems a trial's validation loss after one epoch ranks
#: it against its final value with a Spearman correlation of 0.70 to 0.94, after three 0.90 to 0.97 (random
#: trials, docs/benchmarks.md). search's ``prune_after_trials`` and ``prune_after_epochs``; the CLI's flags.
PRUNE_AFTER = {"trials": 5, "epochs": 3}
#: options of fit a search owns: where each trial's run goes, its seed, its callbacks
OWNED = ("data", "run_dir", "resume", "overwrite", "callbacks", "progress", "seed")
optuna.logging.set_verbosity(optuna.logging.WARNING)

# Re-exported so a space can be written with this module's names alone.
__all__ += ["CategoricalDistribution", "FloatDistribution", "IntDistribution"]


@dataclass
class StudyResult:
    """What :func:`search` returns: the study folder, the trials (rows of trials.csv) and the best trial."""

    folder: Path
    trials: list[dict[str, Any]]
    direction: str
    seconds: float
    report: Path | None = None

    @property
    def best(self) -> dict[str, Any] | None:
        """The best complete trial's row (None before one completes)."""
        done = [r for r in self.trials if r["state"] == "complete" and r["value"] is not None]
        if not done:
            return None
        pick = min if self.direction == "minimize" else max
        return pick(done, key=lambda r: r["value"])

    @property
    def best_run(self) -> Path | None:
        """The best trial's run folder (its model is ``best_run / "model"``)."""
        best = self.best
        return None if best is None else self.folder / best["run_dir"]


@dataclass
class Plan:
    """What a worker needs (picklable, to cross into worker processes)."""

    folder: Path
    name: str
    storage: str | None
    data: Any
    space: Space
    options: dict[str, Any]
    sampler: str
    pruner: str
    prune_after: dict[str, int]
    monitor: str
    direction: str
    seed: int
    n_trials: int
    heartbeat: int
    grace: int | None = None
    sampler_seed: int = 0
    trial_reports: bool = True
    on_trial: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)


class ReportToTrial(Callback):
    """After each epoch, report the monitored metric to the Optuna trial; stop the run (``pruned``) when the
    pruner says so. Non-finite values are not reported: the divergence guard handles those epochs."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, state: TrainState) -> None:
        value = state.row.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        epoch = int(state.row["epoch"])
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            state.stop = "pruned"
            state.log_event("pruned", epoch=epoch, step=state.step, monitor=self.monitor, value=float(value))


def _sampler(plan: Plan) -> optuna.samplers.BaseSampler:
    if plan.sampler == "grid":
        assert isinstance(plan.space, Mapping)
        grid = {n: list(d.choices) for n, d in plan.space.items()}  # type: ignore[attr-defined]
        return _Grid(grid, seed=plan.sampler_seed)
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=plan.sampler_seed)
    if plan.sampler == "gp":
        return optuna.samplers.GPSampler(seed=plan.sampler_seed)
    return optuna.samplers.TPESampler(seed=plan.sampler_seed)


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler, less its ``study.stop()`` once the grid is covered (which only works inside
    ``study.optimize``): a worker here stops when the study has its trials."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        pass


def _pruner(plan: Plan) -> optuna.pruners.BasePruner:
    trials, epochs = plan.prune_after["trials"], plan.prune_after["epochs"]
    if plan.pruner == "median":
        # epochs are reported from 1, and Optuna prunes at steps >= n_warmup_steps: a trial runs `epochs` epochs
        return optuna.pruners.MedianPruner(n_startup_trials=trials, n_warmup_steps=epochs)
    if plan.pruner == "hyperband":
        most = int(plan.options.get("epochs", OPTIONS["epochs"].default))
        return optuna.pruners.HyperbandPruner(min_resource=min(epochs, most), max_resource=most)
    return optuna.pruners.NopPruner()


def trial_seed(seed: int, number: int) -> int:
    """A trial's seed: from the study's seed and the trial's number (stable across Python processes)."""
    return zlib.crc32(f"{seed}:{number}".encode()) % 2**31


def _run_trial(plan: Plan, study: optuna.Study, trial: optuna.Trial) -> tuple[TrialState, float | None]:
    """Train one trial; its state and value for ``study.tell``."""
    import descend

    params = sample(trial, plan.space)
    seed = int(trial.user_attrs.get("seed", trial_seed(plan.seed, trial.number)))
    run = Path(RUNS) / f"{trial.number:04d}"
    trial.set_user_attr("seed", seed)
    trial.set_user_attr("run_dir", str(run))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            options = {"model": OPTIONS["model"].default, **plan.options, **params}
            result = descend.fit(data=plan.data, **options, seed=seed, run_dir=plan.folder / run,
                                 callbacks=[ReportToTrial(trial, plan.monitor)], progress=False)  # fmt: skip
    except DescendError as e:  # a combination fit refuses (newton with a batch size, ...): this trial fails
        trial.set_user_attr("reason", " ".join(str(e).split()))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        return TrialState.FAIL, None
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
    trial.set_user_attr("epochs", result.epochs)
    if plan.trial_reports:
        from descend.report import run_report

        run_report(plan.folder / run)
    if result.stop_reason == "pruned":
        trial.set_user_attr("reason", f"pruned after epoch {result.epochs}")
        return TrialState.PRUNED, None
    value = result.final.get(plan.monitor)
    if value is None or not math.isfinite(value):
        trial.set_user_attr("reason", f"{plan.monitor} is {value}: the descent diverged" if result.diverged else
                            f"{plan.monitor} was not recorded")  # fmt: skip
        return TrialState.FAIL, None
    if result.diverged:
        trial.set_user_attr("reason", "diverged, recovered by the guard")
    return TrialState.COMPLETE, float(value)


def _open_study(plan: Plan) -> optuna.Study:
    storage = open_storage(plan.storage, plan.folder, heartbeat=plan.heartbeat, grace=plan.grace)
    return optuna.load_study(study_name=plan.name, storage=storage, sampler=_sampler(plan), pruner=_pruner(plan))


def _state(study: optuna.Study, n_trials: int) -> tuple[bool, bool, bool]:
    """(whether the study has its trials, whether some are running, whether a retry is waiting)."""
    trials = counted(study.get_trials(deepcopy=False))
    states = {t.state for t in trials}
    return len(trials) >= n_trials, TrialState.RUNNING in states, TrialState.WAITING in states


def work(plan: Plan) -> None:
    """One worker: run trials until the study has ``n_trials`` and none is running."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's parts
        # ask/tell (not study.optimize), so that a worker counts the study's trials before it runs one; the
        # heartbeat thread and the stale check are started here as study.optimize would
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        _work(plan)


def _work(plan: Plan) -> None:
    study = _open_study(plan)
    while True:
        fail_stale_trials(study)
        enough, running, waiting = _state(study, plan.n_trials)
        if enough and not waiting:
            if not running:
                break
            time.sleep(min(plan.heartbeat, 1.0))  # wait for other workers' trials (or for them to go stale)
            continue
        trial = study.ask()
        before = [t for t in counted(study.get_trials(deepcopy=False)) if t.number < trial.number]
        if len(before) >= plan.n_trials:  # another worker asked at the same moment and took the last trial
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        with get_heartbeat_thread(trial._trial_id, study._storage):
            state, value = _run_trial(plan, study, trial)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        rows = write_trials(plan.folder, study)
        if plan.on_trial is not None:
            plan.on_trial(next(r for r in rows if r["number"] == trial.number))
    write_trials(plan.folder, study)


def _worker_process(plan: Plan) -> None:
    work(plan)


def _check(sampler: str, pruner: str, n_trials: Any, workers: Any, seed: Any, heartbeat: Any,
           prune_after: dict[str, Any]) -> None:
    for name, value, allowed in (("sampler", sampler, SAMPLERS), ("pruner", pruner, PRUNERS)):
        if value not in allowed:
            raise ConfigError(f"search: invalid {name}={value!r}; expected one of {', '.join(allowed)}")
    for name, value, low in (("n_trials", n_trials, 1), ("workers", workers, 1), ("seed", seed, 0),
                             ("heartbeat", heartbeat, 1), ("prune_after_trials", prune_after["trials"], 0),
                             ("prune_after_epochs", prune_after["epochs"], 1)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"search: invalid {name}={value!r}; expected an int >= {low}")


def _grid_size(space: Space) -> int:
    if not isinstance(space, Mapping) or not all(isinstance(d, CategoricalDistribution) for d in space.values()):
        raise ConfigError("search: sampler grid needs every parameter as a choice (e.g. lr=choice:1e-3,1e-2); "
                          "expected no ranges")  # fmt: skip
    sizes: list[int] = [len(d.choices) for d in space.values() if isinstance(d, CategoricalDistribution)]
    return math.prod(sizes)


def _fixed(options: dict[str, Any], space: Space) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fit's fixed options, prepare's options), each checked by the table."""
    for name, value in options.items():
        if name in OWNED or name not in OPTIONS:
            raise ConfigError(f"search: {name!r} is not an option a search passes to fit; expected options such as "
                              "model, epochs, optimizer, lr (the study owns data, seed and the run folders)")  # fmt: skip
        OPTIONS[name].check(value)
        if isinstance(space, Mapping) and name in space:
            raise ConfigError(f"search: {name} is both fixed ({name}={value!r}) and in the space; expected one")
    read = {n: options.pop(n) for n in [*PREPARE, "target", "task", "validation"] if n in options}
    return options, read


def _prepare(data: Any, read: dict[str, Any], seed: int) -> Any:
    from descend.data import PreparedData, prepare

    if isinstance(data, PreparedData):
        return data
    validation = read.pop("validation", None)
    return prepare(data, validation=0.2 if validation is None else validation, seed=seed, **read)


def _describe(data: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return str(Path(data).resolve())
    name = getattr(data, "name", None)
    return f"<{type(data).__name__}{' ' + name if isinstance(name, str) else ''}>"


def search(
    data: Any,
    space: Space,
    *,
    study: str | os.PathLike[str],
    n_trials: int | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    prune_after_trials: int = PRUNE_AFTER["trials"],
    prune_after_epochs: int = PRUNE_AFTER["epochs"],
    monitor: str = "val_loss",
    seed: int = 0,
    storage: str | None = None,
    name: str | None = None,
    workers: int = 1,
    heartbeat: int = 10,
    report: bool = True,
    trial_reports: bool = True,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    command: list[str] | None = None,
    **options: Any,
) -> StudyResult:
    """Search ``space`` for the options of :func:`descend.fit` that give the best ``monitor`` on ``data``.

    Args:
        data: what :func:`descend.data.prepare` reads (a table file, a DataFrame, a Dataset, ...) or prepared
            data; read once, split with the study's seed, so every trial sees the same rows.
        space: option names to Optuna distributions, or a function of the trial returning fit's options.
        study: the study folder (new, or this study's own to continue or join it).
        n_trials: trials in the whole study (all workers together); default 20, or for a grid every combination
            once (a smaller number: the first ones).
        sampler, pruner: see the module's text. monitor: a recorded validation metric.
        prune_after_trials, prune_after_epochs: no trial is pruned before this many trials have completed (the
            median pruner's start-up; Hyperband has none) nor before it has run this many epochs (the median
            pruner's warm-up, Hyperband's smallest rung); the defaults are ``PRUNE_AFTER``'s.
        seed: the study's seed. storage: an Optuna RDB URL (default: a journal file in the study folder).
        name: the study's name in the storage (default: the folder's name). workers: processes on this machine.
        heartbeat: seconds between a running trial's heartbeats; stale after three missed.
        report: write the study's ``report.html``; trial_reports: each trial's run report. on_trial: called with each trial's row as it ends (in this process).
        options: fit's options fixed for every trial (model, epochs, ...), and the data's (target, validation).
    """
    from descend.metrics import greater_is_better

    started = time.perf_counter()
    prune_after = {"trials": prune_after_trials, "epochs": prune_after_epochs}
    _check(sampler, pruner, 20 if n_trials is None else n_trials, workers, seed, heartbeat, prune_after)
    if isinstance(space, Mapping):
        space = check_space(space)
    elif not callable(space):
        check_space(space)  # the template error
    fixed, read = _fixed(dict(options), space)
    direction = "maximize" if greater_is_better(monitor) else "minimize"
    folder = Path(study)
    name = name or folder.resolve().name
    identity = {"data": _describe(data), "target": read.get("target"), "space": as_text(space), "sampler": sampler,
                "pruner": pruner, "prune_after": prune_after, "monitor": monitor, "direction": direction, "seed": seed,
                "options": {k: v for k, v in sorted(fixed.items())}, "storage": redact(storage) if storage else None,
                "name": name}  # fmt: skip
    held = check_folder(folder, identity)
    if n_trials is None and held is not None:  # continuing: the study's own number, unless a new one is given
        n_trials = int(json.loads((folder / STUDY).read_text())["n_trials"])
    if sampler == "grid":
        n_trials = int(min(n_trials or math.inf, _grid_size(space)))
    n_trials = n_trials or 20
    if workers > 1 and callable(space) and not isinstance(space, Mapping):
        try:
            pickle.dumps(space)
        except Exception:
            raise ConfigError("search: a space function must be defined at a module's top level to run in worker "
                              "processes; expected workers=1 or an importable function") from None  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = open_storage(storage, folder) if storage else None  # an unreachable server: refused before any write
    prepared = _prepare(data, read, seed)
    folder.mkdir(parents=True, exist_ok=True)
    from descend.train.run import environment

    write_identity(folder, identity, {"n_trials": n_trials, "command": command or sys.argv,
                                      "environment": environment(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            journal = None if rdb else open_storage(None, folder)
        optuna.create_study(storage=rdb or journal, study_name=name,
                            direction=optuna.study.StudyDirection.MAXIMIZE if direction == "maximize" else
                            optuna.study.StudyDirection.MINIMIZE)  # fmt: skip
        sampler_seed = seed
    except optuna.exceptions.DuplicatedStudyError:  # joining: draw apart from the workers already there
        sampler_seed = (seed + os.getpid()) % 2**31
    plan = Plan(folder, name, storage, prepared, space, fixed, sampler, pruner, prune_after, monitor, direction, seed,
                n_trials, heartbeat, sampler_seed=sampler_seed, trial_reports=trial_reports, on_trial=on_trial)  # fmt: skip
    _run_workers(plan, workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rows = write_trials(folder, _open_study(plan))
    result = StudyResult(folder, rows, direction, round(time.perf_counter() - started, 3))
    if report:
        from descend.report.study import study_report

        result.report = study_report(folder)
    return result


def _run_workers(plan: Plan, workers: int) -> None:
    import multiprocessing
    from dataclasses import replace

    context = multiprocessing.get_context("spawn")  # a forked torch can hang in its thread pools
    children = [context.Process(target=_worker_process, args=(replace(plan, on_trial=None,
                                                                      sampler_seed=plan.sampler_seed + k),))
                for k in range(1, workers)]  # fmt: skip
    for child in children:
        child.start()
    try:
        work(plan)
    finally:
        for child in children:
            child.join()
