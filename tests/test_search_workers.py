"""Several workers on one study, a worker killed mid-trial, and PostgreSQL storage.

The workers are ``descend search`` processes. Each trial trains a few seconds (3,000 rows, batch 8), so two
workers overlap and a kill lands inside a trial. The PostgreSQL tests start a private server (Debian's
postgresql, which .ci/run installs) on a free localhost port in a temporary folder and stop it afterwards; they
are skipped, with the reason, only where no PostgreSQL server program or driver is installed.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from descend.tune.storage import open_storage

pytestmark = pytest.mark.slow
MAIN = [sys.executable, "-c", "from descend.cli import main; main()", "search"]
QUICK = ["--target", "y", "--param", "lr=log:1e-3:1e-2", "--pruner", "none", "--epochs", "2", "--batch-size", "8",
         "--no-diagnostics", "--no-early-stopping", "--heartbeat", "1", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=3000)
    path = tmp_path_factory.mktemp("data") / "table.csv"
    pd.DataFrame({**{f"x{j}": X[:, j] for j in range(4)}, "y": y}).to_csv(path, index=False)
    return path


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*MAIN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str], timeout: float = 240) -> None:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err


def _check_once(rows: list[dict[str, str]], folders: list[Path], n: int) -> None:
    """n trials, each run once: distinct numbers and run folders, one finished run folder per trial."""
    assert sorted(int(r["number"]) for r in rows) == list(range(n))
    assert {r["state"] for r in rows} == {"complete"}
    finished = [p.parent for f in folders for p in (f / "trials").glob("*/summary.json")]
    assert sorted(p.name for p in finished) == [f"{i:04d}" for i in range(n)]  # none twice, none lost


def test_two_workers_on_the_journal_file(data: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    _finish(_start(data, "--study", study, "--trials", "6", "--workers", "2", *QUICK))
    rows = _rows(study)
    _check_once(rows, [study], 6)
    assert len({r["worker"] for r in rows}) == 2  # both processes ran trials


def _wait_for(test: object, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not test():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_kill_9_mid_trial_then_restart(data: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    worker = _start(data, "--study", study, "--trials", "4", *QUICK)
    running = study / "trials" / "0001" / "metrics.csv"
    _wait_for(lambda: running.is_file() or worker.poll() is not None)  # trial 1 has finished an epoch
    assert worker.poll() is None, "the first worker ended before it could be killed"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert not (study / "trials" / "0001" / "summary.json").exists()  # killed in the middle of trial 1
    _finish(_start("--study", study, "--heartbeat", "1", "-q"))
    rows = _rows(study)
    by_number = {int(r["number"]): r for r in rows}
    assert sorted(by_number) == [0, 1, 2, 3, 4]
    assert by_number[1]["state"] == "fail" and "no heartbeat" in by_number[1]["reason"]
    retry = [r for r in rows if r["retry_of"] == "1"]
    assert len(retry) == 1 and retry[0]["state"] == "complete"
    assert (retry[0]["lr"], retry[0]["seed"]) == (by_number[1]["lr"], by_number[1]["seed"])
    assert [r["state"] for r in rows].count("complete") == 4
    # trials.csv is the storage's own account
    stored = optuna.load_study(study_name="study", storage=open_storage(None, study)).trials
    assert [(t.number, t.state.name.lower()) for t in stored] == [(int(r["number"]), r["state"]) for r in rows]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    return found or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of this test's own, trusting local connections; its URL."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        pytest.skip("no PostgreSQL driver for SQLAlchemy (scripts/setup.sh --dev installs psycopg)")
    home = Path(tempfile.mkdtemp(prefix="descend-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: as Debian's postgres user
        home.chmod(0o755)
        shutil.chown(home, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run([*as_user, initdb, "-D", str(home / "data"), "-A", "trust", "-U", "postgres", "--no-sync"], **run)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, pg_ctl, "-D", str(home / "data"), "-o", options, "-l", str(home / "log"), "-w",
                    "start"], **run)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(home / "data"), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_through_postgresql(data: Path, tmp_path: Path, postgres: str) -> None:
    # two folders, as two machines would have, one study in the server
    a, b = tmp_path / "a", tmp_path / "b"
    workers = [_start(data, "--study", f, "--name", "shared", "--storage", postgres, "--trials", "6", *QUICK)
               for f in (a, b)]  # fmt: skip
    for w in workers:
        _finish(w)
    rows = _rows(a)
    assert rows == _rows(b)  # the last snapshot of each worker: the whole study
    _check_once(rows, [a, b], 6)
    assert len({r["worker"] for r in rows}) == 2
    stored = optuna.load_study(study_name="shared", storage=open_storage(postgres, a)).trials
    ran = [t for t in stored if not t.user_attrs.get("surplus")]
    assert sorted(t.number for t in ran) == list(range(6))

