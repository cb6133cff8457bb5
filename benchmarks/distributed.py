"""One process or two under torchrun: the wall time of the same descent (same global batch, same trajectory).

The problem: an MLP (64-64) on a synthetic regression table, ``--rows`` rows by 32 features, global batch
``--batch``, ``--epochs`` epochs, diagnostics off, one torch thread per process. The configurations:

- ``1 process``: ``python benchmarks/distributed.py --inner``, batch ``--batch``;
- ``2 processes``: the same script under ``torchrun --nproc-per-node 2`` (gloo on 127.0.0.1), batch
  ``--batch / 2`` per process.

For each, the time of ``fit`` alone (measured inside, by process 0) and the wall time of the whole command
(interpreter, imports, torchrun's rendezvous). Rounds alternate the two so that load from other work falls on
both; the median is reported, with the load average at the start.

    flock /tmp/descend-bench.lock .venv/bin/python benchmarks/distributed.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time


def inner(rows: int, batch: int, epochs: int) -> None:
    import torch

    import descend

    g = torch.Generator().manual_seed(0)
    X = torch.randn(rows, 32, generator=g)
    y = torch.sin(X[:, :4]).sum(1) + 0.1 * torch.randn(rows, generator=g)
    start = time.perf_counter()
    descend.fit("mlp:64,64", (X, y), optimizer="adam", lr=1e-3, batch_size=batch, epochs=epochs, tol=None,
                early_stopping=False, diagnostics=False, validation=0.0, threads=1, progress=False, seed=0)  # fmt: skip
    if os.environ.get("RANK", "0") == "0":
        print(f"fit {time.perf_counter() - start:.3f}", flush=True)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _time(command: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    wall = time.perf_counter() - start
    fit = next(float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("fit "))
    return fit, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.inner:
        inner(a.rows, a.batch, a.epochs)
        return
    me = [os.path.abspath(__file__), "--inner", "--rows", str(a.rows), "--epochs", str(a.epochs)]
    configs = {
        "1 process": lambda: [sys.executable, *me, "--batch", str(a.batch)],
        "2 processes": lambda: [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                "--master-addr", "127.0.0.1", "--master-port", str(_port()), *me,
                                "--batch", str(a.batch // 2)],
    }  # fmt: skip
    load = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    for _ in range(a.rounds):
        for name, command in configs.items():
            times[name].append(_time(command()))
    print(f"{a.rows} rows x 32, mlp 64-64, global batch {a.batch}, {a.epochs} epochs; load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores; median of {a.rounds} rounds")
    print(f"{'':<12} {'fit (s)':>8} {'command (s)':>12}")
    for name, values in times.items():
        fit = statistics.median(v[0] for v in values)
        wall = statistics.median(v[1] for v in values)
        print(f"{name:<12} {fit:>8.2f} {wall:>12.2f}")


if __name__ == "__main__":
    main()
