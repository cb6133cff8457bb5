"""Where a study lives: Optuna's JournalStorage in the study folder, or an RDB server (PostgreSQL) by URL.

The journal file is safe for several processes on one machine (Optuna appends under a file lock), unlike
SQLite, whose "database is locked" is the known pain of parallel workers. Optuna's heartbeat (a thread beside
each running trial; stale trials failed by the next worker to start a trial) comes with its RDB storage only, so
:class:`HeartbeatJournalStorage` gives the journal the same interface, each heartbeat the modification time of a
file ``heartbeats/<trial id>`` beside the journal. A trial found stale is marked failed and, once, retried with
the same parameters (Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`).

Example:
    >>> import tempfile, optuna
    >>> folder = Path(tempfile.mkdtemp())
    >>> storage = open_storage(None, folder, heartbeat=2)
    >>> study = optuna.create_study(storage=storage, study_name="s")
    >>> trial = study.ask(); storage.record_heartbeat(trial._trial_id)
    >>> storage._get_stale_trial_ids(study._study_id)
    []
    >>> sorted(p.name for p in folder.iterdir())
    ['heartbeats', 'journal.log']
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from descend.errors import ConfigError

__all__ = ["JOURNAL", "HeartbeatJournalStorage", "open_storage", "redact"]

JOURNAL = "journal.log"
MAX_RETRY = 1  # a killed trial is tried once more; a trial that kills its worker twice is left failed


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A JournalStorage with Optuna's heartbeat: ``record_heartbeat`` touches ``heartbeats/<trial id>``; a
    RUNNING trial whose file is older than ``grace`` seconds (or missing that long after its start) is stale."""

    def __init__(self, folder: Path, *, heartbeat: int, grace: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        super().__init__(JournalFileBackend(str(folder / JOURNAL)))
        self.beats = folder / "heartbeats"
        self.beats.mkdir(exist_ok=True)
        self.heartbeat, self.grace, self.stale_callback = heartbeat, grace, stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        path = self.beats / str(trial_id)
        path.touch()
        os.utime(path)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            path = self.beats / str(trial._trial_id)
            try:
                last = path.stat().st_mtime
            except FileNotFoundError:
                last = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - last > self.grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.stale_callback

    def get_failed_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.stale_callback


def redact(url: str) -> str:
    """``url`` without its password (what study.json and messages show)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def _engine_url(url: str) -> str:
    """PostgreSQL through psycopg (version 3) where psycopg2, SQLAlchemy's default driver, is not installed."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(url: str | None, folder: Path, *, heartbeat: int = 10, grace: int | None = None) -> BaseStorage:
    """The study's storage: the journal in ``folder`` (None), or the RDB at ``url``, each with a heartbeat every
    ``heartbeat`` seconds, stale after ``grace`` (default 3 heartbeats), and one retry of a stale trial. An RDB
    that cannot be reached is one ConfigError (the folder is not touched)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's parts
        return _open(url, folder, heartbeat, grace or 3 * heartbeat)


def _open(url: str | None, folder: Path, heartbeat: int, grace: int) -> BaseStorage:
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    if url is None:
        return HeartbeatJournalStorage(folder, heartbeat=heartbeat, grace=grace, stale_callback=retry)
    if "://" not in url:
        raise ConfigError(f"storage: invalid storage={url!r}; expected an RDB URL such as "
                          "postgresql://user:password@host/database")  # fmt: skip
    engine: dict[str, Any] = {}
    if url.startswith(("postgresql", "postgres")):
        engine["connect_args"] = {"connect_timeout": 10}
    for attempt in range(5):
        try:
            return RDBStorage(_engine_url(url), engine_kwargs=engine, heartbeat_interval=heartbeat,
                              grace_period=grace, heartbeat_stale_trial_callback=retry)  # fmt: skip
        except Exception as e:  # SQLAlchemy's errors (no server, bad credentials, no driver) say why in a line
            from sqlalchemy.exc import IntegrityError, ProgrammingError

            if isinstance(e, (IntegrityError, ProgrammingError)) and attempt < 4:
                time.sleep(0.5 + attempt)  # two workers creating the schema of a new database at once: again
                continue
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"storage: cannot open {redact(url)!r}: {first}") from None
    raise AssertionError("unreachable")
