"""Benchmark: loading a large numeric CSV into scaled tensors, and the cost of batching.

1. Load. A generated CSV of ``--rows`` x ``--cols`` float32 values (default 1,000,000 x 20; the last column is the
   regression target ``y``) is turned into float32 tensors by

   - ``descend``: ``descend.data.prepare(path, target="y", validation=0.2)`` (read, check, split, scale);
   - ``pandas``: ``pandas.read_csv(path)``, ``to_numpy(float32)``, standardise with the column mean and std,
     ``torch.from_numpy`` (no checks, no split);
   - ``pandas-pyarrow``: ``pandas.read_csv(path, engine="pyarrow")``, ``to_numpy(float32)``, ``torch.from_numpy``
     (pyarrow's multithreaded parser behind pandas; no checks, no split, no scaling: the least work that ends in
     training tensors).

   Each run is a fresh subprocess, alternating the three, ``--repeats`` times each. Time is the wall clock of the
   load alone (imports done before); CPU is user + system time of the process over the load (all threads), the
   figure least disturbed by other work on the machine. Peak memory is ``ru_maxrss`` after the load minus the resident set size just
   before it (``/proc/self/status``), i.e. what the load added at its peak, allocator pools included.

2. Batching. One epoch over a ``200,000 x 50`` float32 tensor with batch 256, reading every batch:
   ``Batches(...).over(X, y)`` (index a shuffled permutation, gather rows) against
   ``DataLoader(TensorDataset(X, y), batch_size=256, shuffle=True)`` (per-example indexing and collation).
   Best and median of ``--repeats`` epochs each, in this process.

Run: ``.venv/bin/python benchmarks/data_load.py`` (about three minutes on 2 cores; ``--rows 100000`` for a quick look).
Ratios are the figures to compare across machines: both sides run in the same invocation under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RUNNER = r"""
import json, resource, sys, time
import numpy as np, pandas as pd, torch
import descend.data

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")

def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

which, path = sys.argv[1], sys.argv[2]
before = rss_mb()
c0 = cpu_seconds()
t0 = time.perf_counter()
if which == "descend":
    data = descend.data.prepare(path, target="y", validation=0.2, seed=0)
    out = [data.X_train, data.y_train, data.X_val, data.y_val]
elif which == "pandas-pyarrow":
    df = pd.read_csv(path, engine="pyarrow")
    X = df.drop(columns=["y"]).to_numpy(dtype=np.float32)
    y = df["y"].to_numpy(dtype=np.float32)
    del df
    out = [torch.from_numpy(X), torch.from_numpy(y)]
else:
    df = pd.read_csv(path)
    X = df.drop(columns=["y"]).to_numpy(dtype=np.float32)
    y = df["y"].to_numpy(dtype=np.float32)
    del df
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    out = [torch.from_numpy(X), torch.from_numpy(y)]
seconds = time.perf_counter() - t0
cpu = cpu_seconds() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tensor_mb = sum(t.numel() * t.element_size() for t in out) / 2**20
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_added_mb": peak - before, "tensor_mb": tensor_mb}))
"""


def write_csv(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.csv as pc

    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(cols - 1)] + ["y"]
    with pc.CSVWriter(path, pa.schema([(n, pa.float32()) for n in names])) as writer:
        for start in range(0, rows, 100_000):
            m = min(100_000, rows - start)
            block = (
                rng.standard_normal((m, cols)) * rng.uniform(0.5, 50, cols) + rng.uniform(-10, 10, cols)
            ).astype(np.float32)
            writer.write_table(pa.table({n: block[:, j] for j, n in enumerate(names)}))


def load(path: Path, repeats: int) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"pandas": [], "pandas-pyarrow": [], "descend": []}
    for _ in range(repeats):
        for which in runs:
            out = subprocess.run(
                [sys.executable, "-c", RUNNER, which, str(path)], capture_output=True, text=True, check=True
            )
            runs[which].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def batching(rows: int, cols: int, repeats: int) -> dict[str, list[float]]:
    from torch.utils.data import DataLoader, TensorDataset

    from descend.data import Batches

    X, y = torch.randn(rows, cols), torch.randn(rows)
    times: dict[str, list[float]] = {"descend": [], "DataLoader": []}
    batches = Batches(rows, 256, seed=0)
    loader = DataLoader(TensorDataset(X, y), batch_size=256, shuffle=True)
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(len(xb) for xb, _ in batches.over(X, y))
        times["descend"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        m = sum(len(xb) for xb, _ in loader)
        times["DataLoader"].append(time.perf_counter() - t0)
        assert n == m == rows
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=200_000)
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f} at start"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        t0 = time.perf_counter()
        write_csv(path, args.rows, args.cols)
        mb = path.stat().st_size / 2**20
        print(f"generated {args.rows:,} x {args.cols} CSV, {mb:.0f} MiB, in {time.perf_counter() - t0:.1f} s")
        runs = load(path, args.repeats)

    print(f"\nload into scaled float32 tensors ({args.repeats} runs each, fresh process each)")
    print(
        f"{'':14} {'median s':>9} {'best s':>7} {'MiB/s':>6} {'CPU s':>6} {'peak added MiB':>15} "
        f"{'tensors MiB':>12} {'peak / tensors':>15}"
    )
    summary: dict[str, dict[str, float]] = {}
    for which, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        med, best = statistics.median(secs), min(secs)
        cpu = statistics.median(r["cpu_seconds"] for r in rs)
        peak = max(r["peak_added_mb"] for r in rs)
        tens = rs[0]["tensor_mb"]
        summary[which] = {"median": med, "best": best, "cpu": cpu}
        print(
            f"{which:14} {med:9.2f} {best:7.2f} {mb / med:6.0f} {cpu:6.2f} {peak:15.0f} {tens:12.0f} "
            f"{peak / tens:15.2f}"
        )
    print(
        f"descend speed-up over pandas: {summary['pandas']['median'] / summary['descend']['median']:.2f}x by "
        f"median, {summary['pandas']['best'] / summary['descend']['best']:.2f}x by best (target >= 1); "
        f"CPU time descend / pandas: {summary['descend']['cpu'] / summary['pandas']['cpu']:.2f}"
    )
    fast = summary["pandas-pyarrow"]
    print(
        f"descend speed-up over pandas with pyarrow: {fast['median'] / summary['descend']['median']:.2f}x by "
        f"median, {fast['best'] / summary['descend']['best']:.2f}x by best (target >= 1); "
        f"CPU time descend / pandas-pyarrow: {summary['descend']['cpu'] / fast['cpu']:.2f}"
    )
    print("all times: " + json.dumps({w: [round(r["seconds"], 2) for r in rs] for w, rs in runs.items()}))

    times = batching(args.batch_rows, 50, args.repeats)
    print(f"\none epoch of {args.batch_rows:,} x 50, batch 256 (seconds: best, median)")
    for which, ts in times.items():
        print(f"{which:10} {min(ts):8.3f} {statistics.median(ts):8.3f}")
    print(
        f"index batching speed-up over DataLoader(TensorDataset): "
        f"{statistics.median(times['DataLoader']) / statistics.median(times['descend']):.0f}x by median (target >= 5)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
