"""Training under torchrun (torch.distributed, gloo on 127.0.0.1): two processes with batch b follow the trajectory
of one process with batch 2b, take the same decisions, write one run folder, survive a kill -9 of the whole job,
and two "machines" (two torchrun launches with a c10d rendezvous) train the same model as one machine.

Every launch runs in its own session and is killed as a group (SIGKILL) if it outlives its timeout or a test fails.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.test_kill_resume import _data

HERE = Path(__file__).parent
SCRIPT = HERE / "distributed_fit.py"
HARNESS = HERE / "interrupt_harness.py"
TIMEOUT = 240
TOL = 1e-5  # float32 sums taken in a different order (per process, then all-reduced)
CLI = ["--target", "y", "--model", "mlp:8", "--optimizer", "adam", "--lr", "0.01", "--epochs", "3",
       "--no-early-stopping", "--checkpoint-every", "4", "--health-every", "5", "--quiet"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(nodes: str = "single", port: int | None = None, node_rank: int = 0, nproc: int = 2) -> list[str]:
    """torchrun's command line: one node with a static rendezvous, or one node of two with a c10d rendezvous."""
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    port = port or free_port()
    if nodes == "single":
        return [*base, "--nnodes", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    return [*base, "--nnodes", "2", "--node-rank", str(node_rank), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"descend-{port}"]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1", **extra}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts each worker in a session of its own, so killing torchrun's
    process group leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_job(pid: int) -> None:
    """SIGKILL torchrun and every process it started, at once (the whole job, as ``kill -9`` of it would)."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


@contextlib.contextmanager
def launched(command: list[str], cwd: Path, **env: str) -> Iterator[subprocess.Popen[str]]:
    """Start ``command`` in ``cwd``, in a session of its own; on the way out, whatever happened, kill the session."""
    proc = subprocess.Popen(command, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:  # not reaped yet: the pid is still this launch's
            kill_job(proc.pid)
        proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    return out, err


def run(command: list[str], cwd: Path, **env: str) -> tuple[str, str]:
    with launched(command, cwd, **env) as proc:
        return finish(proc)


def load(folder: Path, case: str, rank: int = 0) -> dict[str, Any]:
    return dict(torch.load(folder / f"{case}-rank{rank}.pt", weights_only=False))


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = TOL) -> float:
    assert a.keys() == b.keys()
    gap = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert gap <= tol, f"weights differ by {gap:.3g} > {tol:g}"
    return gap


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


SCRIPT_CASES = ["uneven", "accumulate", "auto", "bad_row", "diverging"]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Every script case, under torchrun (2 processes, batch b) and alone (batch 2b, and the un-accumulated run)."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    with launched([*torchrun(), str(SCRIPT), str(two), *SCRIPT_CASES], two) as proc:
        run([sys.executable, str(SCRIPT), "--scale-batch", "2", str(one), *SCRIPT_CASES, "unaccumulated"], one)
        finish(proc)
    return two, one


@pytest.mark.slow
@pytest.mark.parametrize("case", ["uneven", "accumulate", "auto", "bad_row", "diverging"])
def test_two_processes_follow_one_process_with_twice_the_batch(scripted: tuple[Path, Path], case: str) -> None:
    two, one = scripted
    ranks = [load(two, case, r) for r in (0, 1)]
    alone = load(one, case)
    for r in ranks:  # every process holds the same model and took the same decisions (none rolled back alone)
        identical(r["weights"], ranks[0]["weights"])
        assert (r["rollbacks"], r["skips"], r["diverged_steps"], r["steps"], r["lr"]) == (
            ranks[0]["rollbacks"], ranks[0]["skips"], ranks[0]["diverged_steps"], ranks[0]["steps"], ranks[0]["lr"])
        assert [h["loss"] for h in r["history"]] == [h["loss"] for h in ranks[0]["history"]]
    gap = close(ranks[0]["weights"], alone["weights"])
    print(f"{case}: weights within {gap:.2g} of one process's")
    assert (ranks[0]["rollbacks"], ranks[0]["skips"], ranks[0]["steps"]) == (alone["rollbacks"], alone["skips"],
                                                                              alone["steps"])  # fmt: skip
    np.testing.assert_allclose([h["loss"] for h in ranks[0]["history"]], [h["loss"] for h in alone["history"]],
                               rtol=1e-5, atol=1e-6)  # the recorded loss is the global batch's  # fmt: skip
    if case == "bad_row":
        assert ranks[0]["skips"] == 3  # one bad batch an epoch, skipped by both processes
    if case == "diverging":  # the same rollbacks at the same steps as one process
        assert ranks[0]["rollbacks"] >= 1 and ranks[0]["diverged_steps"] == alone["diverged_steps"]
    if case == "auto":
        assert ranks[0]["lr"] == pytest.approx(alone["lr"], rel=1e-6)
    if case == "accumulate":  # 3 epochs of 4 global batches: the first of each pair ran without exchanging gradients
        assert ranks[0]["no_sync"] == 6 and ranks[0]["steps"] == 12
        close(ranks[0]["weights"], load(one, "unaccumulated")["weights"])  # equal to the un-accumulated run


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "model" / "model.safetensors")


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "time"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    """``descend train`` under torchrun (2 x batch 8) and alone (batch 16), each in a folder of its own."""
    folder = tmp_path_factory.mktemp("cli")
    data = _data(folder, rows=120)
    (folder / "two").mkdir()
    (folder / "one").mkdir()
    two, one = folder / "two" / "run", folder / "one" / "run"
    command = [str(HARNESS), "train", str(data), *CLI]
    with launched([*torchrun(), *command, "--batch-size", "8", "--out", str(two)], two.parent) as proc:
        run([sys.executable, *command, "--batch-size", "16", "--out", str(one)], one.parent)
        out, err = finish(proc)
    return data, two, one, out + err


@pytest.mark.slow
def test_cli_under_torchrun_trains_one_model_in_one_folder(cli_runs: tuple[Path, Path, Path, str]) -> None:
    _, two, one, output = cli_runs
    close(_weights(two), _weights(one))
    assert [p.name for p in two.parent.iterdir()] == ["run"]  # one run folder, nothing else written
    assert "error" not in output and "Traceback" not in output
    config = __import__("json").loads((two / "config.json").read_text())
    assert config["resolved"]["batch_size"] == 16 and config["resolved"]["distributed"]["world_size"] == 2
    assert [r["epoch"] for r in _metrics(two)] == ["1", "2", "3"]
    ckpt = torch.load(sorted((two / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    states = ckpt["distributed"]["rng"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])  # each process's own
    assert (two / "report.html").is_file()


@pytest.mark.slow
def test_kill_9_of_the_job_then_resume_under_torchrun(cli_runs: tuple[Path, Path, Path, str], tmp_path: Path) -> None:
    data, uninterrupted, _, _ = cli_runs
    folder = tmp_path / "killed"
    sync = tmp_path / "sync"
    sync.mkdir()
    command = [*torchrun(), str(HARNESS), "train", str(data), *CLI, "--batch-size", "8", "--out", str(folder)]
    pause = {"HARNESS_TARGET": "descend.train.run:RunFolder.save_checkpoint", "HARNESS_NTH": "2",
             "HARNESS_WHEN": "after", "HARNESS_ACTION": "pause", "HARNESS_SYNC": str(sync)}  # fmt: skip
    with launched(command, tmp_path, **pause) as proc:
        deadline = time.monotonic() + TIMEOUT
        while not (sync / "paused").exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never reached its second checkpoint"
            time.sleep(0.05)
        kill_job(proc.pid)  # the whole job: torchrun's agent and both workers
        proc.wait(timeout=30)
    assert not (folder / "summary.json").exists() and len(list((folder / "checkpoints").glob("step-*.pt"))) >= 1
    run([*torchrun(), str(HARNESS), "train", "--resume", str(folder), "--quiet"], tmp_path)
    identical(_weights(folder), _weights(uninterrupted))
    assert _metrics(folder) == _metrics(uninterrupted)
    assert [e for e in (folder / "events.jsonl").read_text().splitlines() if '"resume"' in e]


@pytest.mark.slow
def test_two_nodes_on_one_machine_train_as_one_node(scripted: tuple[Path, Path], tmp_path: Path) -> None:
    port = free_port()
    script = [str(SCRIPT), str(tmp_path), "uneven"]
    with launched([*torchrun("two", port, 0, nproc=1), *script], tmp_path) as first, \
            launched([*torchrun("two", port, 1, nproc=1), *script], tmp_path) as second:  # fmt: skip
        finish(first)
        finish(second)
    one_node = load(scripted[0], "uneven")
    for rank in (0, 1):
        identical(load(tmp_path, "uneven", rank)["weights"], one_node["weights"])


@pytest.mark.slow
def test_a_refusal_stops_every_process_with_one_message(tmp_path: Path) -> None:
    data = _data(tmp_path, rows=120)
    with launched([*torchrun(), str(HARNESS), "train", str(data), *CLI[:-1], "--optimizer", "lbfgs",
                   "--out", str(tmp_path / "run")], tmp_path) as proc:  # fmt: skip
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if "descend train: error:" in line]
    assert len(lines) == 1 and "torchrun" in lines[0], err[-3000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_resume_from_a_checkpoint_inside_an_accumulation_cycle(scripted: tuple[Path, Path], tmp_path: Path) -> None:
    """A checkpoint between the micro-batches of an update holds the gradients gathered so far (averaged over the
    processes); resumed from it, the run ends as the uninterrupted one, which wrote the same checkpoints."""
    run([*torchrun(), str(SCRIPT), str(tmp_path), "accumulate_ckpt", "accumulate_cut"], tmp_path)
    assert not (tmp_path / "accumulate_cut-rank0.pt").exists()  # it left at step 5
    ckpt = torch.load(tmp_path / "accumulate_cut-run" / "checkpoints" / "step-00000003.pt", weights_only=True)
    assert ckpt["distributed"]["held"] is not None  # step 3 is the first micro-batch of a cycle of 2
    run([*torchrun(), str(SCRIPT), str(tmp_path), "accumulate_resume"], tmp_path)
    resumed, whole = load(tmp_path, "accumulate_resume"), load(tmp_path, "accumulate_ckpt")
    identical(resumed["weights"], whole["weights"])
    close(whole["weights"], load(scripted[0], "accumulate")["weights"])  # the saved sums change only rounding


@pytest.mark.parametrize("world", [2, 3, 4])
def test_the_shares_of_a_batch_make_up_its_mean(world: int) -> None:
    """Every row in exactly one process's share, and (1/P) sum_r w_r mean_r = the batch's mean, for every batch
    size from 1 row (most shares empty: weight 0) to a few per process, as DDP's average of the weighted losses."""
    from descend.train.distributed import Distributed

    values = torch.arange(1, 40, dtype=torch.float64) ** 1.5
    for rows in range(1, 3 * world + 2):
        shares = [Distributed(world, r).share(rows) for r in range(world)]
        assert [i for lo, hi, _ in shares for i in range(lo, hi)] == list(range(rows))
        batch = values[:rows]
        average = sum(w * (batch[lo:hi].mean() if hi > lo else batch[:1].mean()) for lo, hi, w in shares) / world
        assert float(average) == pytest.approx(float(batch.mean()), rel=1e-12)
