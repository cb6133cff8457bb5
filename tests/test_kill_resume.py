"""A run killed (SIGKILL) or interrupted (Ctrl-C) at any point of its life is finished by --resume exactly as if
nothing had happened; two runs on one folder never touch each other's files.

Each case runs ``descend train`` in a subprocess (tests/interrupt_harness.py) with one function of descend wrapped
to stop the process at its n-th call, then resumes it, and compares the finished folder with an uninterrupted
run's: weights bit for bit, every per-epoch and per-step record once, a report, no stray files.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

HARNESS = Path(__file__).with_name("interrupt_harness.py")
TRAIN = ["--target", "y", "--model", "mlp:16", "--lr", "auto", "--epochs", "4", "--batch-size", "32",
         "--no-early-stopping", "--health-every", "7", "--quiet"]  # fmt: skip

# (name, target, when, nth, match): the points of a run's life, in order.
POINTS: list[tuple[str, str, str, int, str]] = [
    ("folder locked", "descend.train.run:RunFolder._acquire", "after", 1, ""),
    ("before config", "descend.train.run:RunFolder.write_json", "before", 1, "config"),
    ("config torn", "descend.train.run:atomic_write", "torn", 1, "config.json"),
    ("range test, sweep 1", "descend.tune.lr_find:_sweep", "after", 1, ""),
    ("range test, sweep 3", "descend.tune.lr_find:_sweep", "after", 3, ""),
    ("after the range test", "descend.train.run:RunFolder.write_json", "after", 2, "config"),
    ("epoch 1, step 5", "descend.train.callbacks:Recorder.on_step_end", "after", 5, ""),
    ("epoch 1 ended, no metrics", "descend.train.callbacks:Recorder.on_epoch_end", "before", 1, ""),
    ("epoch 1 metrics, no checkpoint", "descend.train.callbacks:Recorder.on_epoch_end", "after", 1, ""),
    ("checkpoint 1 torn", "descend.train.run:atomic_write", "torn", 1, "step-"),
    ("checkpoint 1 written", "descend.train.run:RunFolder.save_checkpoint", "after", 1, ""),
    ("epoch 2, step 20", "descend.train.callbacks:Recorder.on_step_end", "after", 20, ""),
    ("health record 4", "descend.inspect.monitor:HealthMonitor._write", "after", 4, ""),
    ("validation of epoch 2", "descend.train.loop:Loop.validate", "before", 2, ""),
    ("checkpoint 3 torn", "descend.train.run:atomic_write", "torn", 3, "step-"),
    ("epoch 4, step 50", "descend.train.callbacks:Recorder.on_step_end", "after", 50, ""),
    ("checkpoint 4 written", "descend.train.run:RunFolder.save_checkpoint", "after", 4, ""),
    ("findings", "descend.inspect.findings:Findings.on_fit_end", "before", 1, ""),
    ("model not saved", "descend.train.fit:save_model", "before", 1, ""),
    ("model saved, no summary", "descend.train.fit:save_model", "after", 1, ""),
    ("summary torn", "descend.train.run:atomic_write", "torn", 1, "summary.json"),
    ("summary written, no report", "descend.report:run_report", "before", 1, ""),
]


def _data(folder: Path, rows: int = 600) -> Path:
    """A CSV of ``rows`` rows: five normal features and a noisy binary target ``y``."""
    g = np.random.default_rng(0)
    X = g.normal(size=(rows, 5))
    y = (X[:, 0] - X[:, 1] + 0.5 * g.normal(size=rows) > 0).astype(int)
    path = folder / "data.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*"abcde", "y"])
        w.writerows([[*map(float, x), int(t)] for x, t in zip(X, y)])
    return path


def _descend(*args: Any, env: dict[str, str] | None = None, wait: bool = True) -> Any:
    command = [sys.executable, str(HARNESS), *map(str, args)]
    full_env = {**os.environ, "PYTHONPATH": str(HARNESS.parent), **(env or {})}
    if not wait:
        return subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("kill")
    data = _data(folder)
    done = _descend("train", data, *TRAIN, "--out", folder / "baseline")
    assert done.returncode == 0, done.stderr
    return data, folder / "baseline"


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    with open(path) as f:
        return [tuple(r[c] for c in columns) for r in csv.DictReader(f)]


def _same_as_baseline(run: Path, base: Path) -> None:
    from safetensors.torch import load_file

    ours, theirs = load_file(run / "model" / "model.safetensors"), load_file(base / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(ours[k].equal(theirs[k]) for k in ours), "weights differ from the uninterrupted run"
    epoch_columns = ("epoch", "step", "loss", "val_loss", "lr")
    assert _rows(run / "metrics.csv", epoch_columns) == _rows(base / "metrics.csv", epoch_columns)
    step_columns = ("step", "epoch", "loss", "lr")
    assert _rows(run / "steps.csv", step_columns) == _rows(base / "steps.csv", step_columns)
    health = (run / "health.jsonl").read_text().splitlines()
    assert [h[:40] for h in health] == [h[:40] for h in (base / "health.jsonl").read_text().splitlines()]
    from descend.inspect import Snapshots

    path, base_path = Snapshots.load(run / "trajectory.pt"), Snapshots.load(base / "trajectory.pt")
    assert path.steps == base_path.steps and path.marks == base_path.marks
    assert path.offsets.equal(base_path.offsets) and path.origin.equal(base_path.origin), "the recorded path differs"
    assert (run / "report.html").is_file() and (run / "summary.json").is_file()
    stray = [p.name for p in run.rglob("*") if p.name.endswith(".tmp") or p.name == ".descend.lock"]
    assert stray == [], stray


@pytest.mark.parametrize("action", ["kill", "interrupt"])
@pytest.mark.parametrize(("name", "target", "when", "nth", "match"), POINTS, ids=[p[0] for p in POINTS])
def test_a_stopped_run_resumes_to_the_uninterrupted_result(baseline: tuple[Path, Path], tmp_path: Path, action: str,
                                                           name: str, target: str, when: str, nth: int,
                                                           match: str) -> None:
    data, base = baseline
    run = tmp_path / "run"
    env = {"HARNESS_TARGET": target, "HARNESS_WHEN": when, "HARNESS_NTH": str(nth), "HARNESS_MATCH": match,
           "HARNESS_ACTION": action}  # fmt: skip
    stopped = _descend("train", data, *TRAIN, "--out", run, env=env)
    if action == "kill":
        assert stopped.returncode == -9, (name, stopped.returncode, stopped.stderr[-2000:])
    else:
        assert stopped.returncode == 130, (name, stopped.returncode, stopped.stderr[-2000:])
        lines = stopped.stderr.strip().splitlines()
        assert len(lines) == 1 and "--resume" in lines[0] and "Traceback" not in stopped.stderr, stopped.stderr
    assert run.is_dir() and not (run / "report.html").exists()
    resumed = _descend("train", data, *TRAIN, "--resume", run)
    assert resumed.returncode == 0, (name, resumed.stderr[-2000:])
    _same_as_baseline(run, base)


def test_out_on_a_folder_that_trained_nothing_starts_it_again(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    data, base = baseline
    run = tmp_path / "run"
    env = {"HARNESS_TARGET": "descend.tune.lr_find:_sweep", "HARNESS_WHEN": "after", "HARNESS_NTH": "1"}
    assert _descend("train", data, *TRAIN, "--out", run, env=env).returncode == -9
    again = _descend("train", data, *TRAIN, "--out", run)  # the same command again
    assert again.returncode == 0, again.stderr
    _same_as_baseline(run, base)


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file() and p.name != ".descend.lock"}  # fmt: skip


# Where the first run is held while a second one starts on the same folder. While it trains, the second is told
# the folder is in use; once training is over (the report is the command's, after fit), that the run is complete.
RACES = [
    ("folder locked", "descend.train.run:RunFolder._acquire", "after", 1, ""),
    ("range test", "descend.tune.lr_find:_sweep", "after", 1, ""),
    ("training", "descend.train.callbacks:Recorder.on_step_end", "after", 10, ""),
    ("checkpoint written", "descend.train.run:RunFolder.save_checkpoint", "after", 2, ""),
    ("model saved", "descend.train.fit:save_model", "after", 1, ""),
    ("report", "descend.report:run_report", "before", 1, ""),
]


@pytest.mark.parametrize(("name", "target", "when", "nth", "match"), RACES, ids=[r[0] for r in RACES])
@pytest.mark.parametrize("second", ["out", "resume"])
def test_a_second_run_on_a_held_folder_is_refused_and_touches_nothing(baseline: tuple[Path, Path], tmp_path: Path,
                                                                     name: str, target: str, when: str, nth: int,
                                                                     match: str, second: str) -> None:
    data, base = baseline
    if name == "report" and second == "resume":
        pytest.skip("training is over: --resume of a complete run without its report writes the report")
    run, sync = tmp_path / "run", tmp_path / "sync"
    sync.mkdir()
    env = {"HARNESS_TARGET": target, "HARNESS_WHEN": when, "HARNESS_NTH": str(nth), "HARNESS_MATCH": match,
           "HARNESS_ACTION": "pause", "HARNESS_SYNC": str(sync)}  # fmt: skip
    first = _descend("train", data, *TRAIN, "--out", run, env=env, wait=False)
    deadline = time.monotonic() + 120
    while not (sync / "paused").exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = _listing(run)
    loser = _descend("train", data, *TRAIN, "--out" if second == "out" else "--resume", run)
    assert loser.returncode == 2, loser.stderr
    expected = "holds a complete run" if name == "report" else "in use"
    assert expected in loser.stderr and len(loser.stderr.strip().splitlines()) == 1, loser.stderr
    assert _listing(run) == before  # nothing of the first run touched
    (sync / "go").write_text("")
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    _same_as_baseline(run, base)


def test_two_runs_started_together_one_runs(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    data, base = baseline
    run = tmp_path / "run"
    # Both wait just before taking the folder, then go at once: exactly one gets it.
    procs, syncs = [], []
    for k in range(2):
        sync = tmp_path / f"sync{k}"
        sync.mkdir()
        syncs.append(sync)
        env = {"HARNESS_TARGET": "descend.train.run:RunFolder._acquire", "HARNESS_WHEN": "before",
               "HARNESS_NTH": "1", "HARNESS_ACTION": "pause", "HARNESS_SYNC": str(sync)}  # fmt: skip
        procs.append(_descend("train", data, *TRAIN, "--out", run, env=env, wait=False))
    deadline = time.monotonic() + 120
    while not all((s / "paused").exists() for s in syncs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    for s in syncs:
        (s / "go").write_text("")
    codes = sorted(p.wait(timeout=300) for p in procs)
    assert codes == [0, 2]
    _same_as_baseline(run, base)
