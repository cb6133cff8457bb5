"""A study folder: ``study.json`` (what the study is), ``trials.csv`` (what its trials did), one run folder per
trial under ``trials/``, the journal of Optuna's storage, and ``report.html``.

``study.json`` holds the study's identity (data, target, space, sampler, pruner, monitor, seed, fixed options,
storage); a second search on the same folder must agree with it, so a folder is never shared by two studies.
``trials.csv`` is rewritten atomically under a file lock each time a trial ends, from the storage, so it is
always one consistent snapshot.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "s"
    >>> check_folder(folder, {"sampler": "tpe"}) is None
    True
    >>> _ = folder.mkdir(); write_identity(folder, {"sampler": "tpe"}, {})
    >>> check_folder(folder, {"sampler": "random"})
    Traceback (most recent call last):
    ...
    descend.errors.ConfigError: study: the folder ... holds another study (its sampler is 'tpe', not 'random'); expected a new folder, or this study's own settings
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from descend.errors import ConfigError
from descend.train.run import atomic_write, jsonable

__all__ = ["TRIALS", "best_run", "check_folder", "counted", "read_identity", "trial_rows", "write_identity", "write_trials"]

STUDY = "study.json"
TRIALS = "trials.csv"
RUNS = "trials"
#: what makes two searches the same study (n_trials may grow; workers come and go)
IDENTITY = ("data", "target", "space", "sampler", "pruner", "prune_after", "monitor", "direction", "seed", "options",
            "storage", "name")  # fmt: skip


def read_identity(folder: Path) -> dict[str, Any] | None:
    """The identity in ``folder/study.json``, or None when the folder holds no study."""
    path = folder / STUDY
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text())["identity"])


def check_folder(folder: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The identity of the study already in ``folder`` (None for a new one); an error when the folder holds
    something else, or another study."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"study: {str(folder)!r} is a file; expected a study folder (new or this study's)")
    held = read_identity(folder) if folder.is_dir() else None
    if held is None:
        if folder.is_dir() and any(folder.iterdir()):
            raise ConfigError(f"study: the folder {str(folder)!r} is not empty and holds no study.json; expected a "
                              "new folder, or a study's own")  # fmt: skip
        return None
    for key in IDENTITY:
        if key in identity and key in held and jsonable(identity[key]) != held[key]:
            raise ConfigError(f"study: the folder {str(folder)!r} holds another study (its {key} is {held[key]!r}, "
                              f"not {jsonable(identity[key])!r}); expected a new folder, or this study's own "
                              "settings")  # fmt: skip
    return held


def write_identity(folder: Path, identity: dict[str, Any], record: dict[str, Any]) -> None:
    """Write ``study.json``: the identity, and what else a reader wants (command, environment, n_trials)."""
    text = json.dumps({"identity": jsonable(identity), **jsonable(record)}, indent=2)
    atomic_write(folder / STUDY, text.encode())


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".trials.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def surplus(trial: Any) -> bool:
    """A trial a worker asked for after the study had its trials (two workers asking at once): never run."""
    return bool(trial.user_attrs.get("surplus"))


def counted(trials: list[Any]) -> list[Any]:
    """The trials that make up the study: not surplus, and not a failed trial that was retried (its retry
    stands for it)."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return [t for t in trials if not surplus(t) and not (t.state.name == "FAIL" and t.number in retried)]


def trial_rows(trials: list[Any]) -> list[dict[str, Any]]:
    """One row per trial that was run (surplus ones left out), by number."""
    names = sorted({p for t in trials for p in t.params})
    retries = {n: t.number for t in trials for n in t.system_attrs.get("retry_history", ())}
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        if surplus(t):
            continue
        a = t.user_attrs
        retry_of = t.system_attrs.get("retry_history") or [None]
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     **{p: t.params.get(p) for p in names}, "epochs": a.get("epochs"), "seconds": a.get("seconds"),
                     "seed": a.get("seed"), "retry_of": retry_of[-1], "reason": a.get("reason") or _lost(t, retries),
                     "worker": a.get("worker", ""), "run_dir": a.get("run_dir", "")})  # fmt: skip
    return rows


def _lost(trial: Any, retries: dict[int, int]) -> str:
    if trial.state.name != "FAIL":
        return ""
    again = f"; retried as trial {retries[trial.number]}" if trial.number in retries else ""
    return f"its worker stopped (no heartbeat){again}"


def write_trials(folder: Path, study: Any) -> list[dict[str, Any]]:
    """Rewrite ``trials.csv`` from the storage (atomically, one writer at a time); return its rows."""
    with _locked(folder):
        rows = trial_rows(study.get_trials(deepcopy=False))
        buffer = io.StringIO()
        header = list(rows[0]) if rows else ["number", "state", "value"]
        writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(folder / TRIALS, buffer.getvalue().encode())
    return rows


def best_run(folder: Path) -> Path:
    """The run folder of the best complete trial of the study in ``folder`` (what ``descend predict STUDY``
    would load); a ConfigError when no trial has completed."""
    identity = read_identity(folder)
    if identity is None or not (folder / TRIALS).is_file():
        raise ConfigError(f"study: {str(folder)!r} holds no study; expected a folder written by descend search")
    with open(folder / TRIALS, newline="") as f:
        done = [r for r in csv.DictReader(f) if r["state"] == "complete" and r["value"]]
    if not done:
        raise ConfigError(f"study: {str(folder)!r} has no complete trial yet; expected one to take the best of")
    pick = min if identity["direction"] == "minimize" else max
    return folder / pick(done, key=lambda r: float(r["value"]))["run_dir"]
