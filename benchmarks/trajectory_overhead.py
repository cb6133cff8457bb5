"""What recording the run's path costs (:class:`descend.inspect.TrajectoryRecorder`), and what drawing it costs.

Same setting as ``benchmarks/inspect_overhead.py``: digits through descend.data.prepare (1438 training rows, 61
features), an MLP with one hidden layer of 64 ReLU units, Adam (lr 1e-3), batch 32 (45 steps per epoch), one
torch thread, no early stopping, no diagnostics, ``--epochs`` epochs (default 23: 1035 steps). Two variants, run
interleaved in rounds with the order alternating: without a recorder, and with ``TrajectoryRecorder()`` (its
defaults: at most 100 float16 snapshots). Each figure is the median over ``--rounds`` rounds of the thread's CPU
time (``time.thread_time``); the overhead is the median of the per-round ratios.

Then, once: the memory the snapshots hold at the end, and the time of the analysis: the principal plane of the
snapshots and the loss on a 21 x 21 grid in it (plus the loss at each path point and at each snapshot's own
weights) over all 1438 training rows, against the time of the run.

Run: ``flock /tmp/descend-bench.lock .venv/bin/python benchmarks/trajectory_overhead.py [--epochs 23] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from typing import Any

import torch

import descend
from descend import optim
from descend.data import DataWarning, load_dataset, prepare
from descend.inspect import TrajectoryRecorder, principal_plane, trajectory_surface
from descend.models import MLP


def _run(data: Any, epochs: int, hidden: int, recorder: TrajectoryRecorder | None) -> tuple[float, Any]:
    torch.manual_seed(0)
    model = MLP(hidden=[hidden])
    model.build(data.X_train.shape[1], 10)
    start = time.thread_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = descend.fit(model, data, optimizer=lambda p: optim.Adam(p, lr=1e-3), batch_size=32, epochs=epochs,
                             early_stopping=False, tol=None, diagnostics=False, progress=False, threads=1,
                             callbacks=[recorder] if recorder is not None else [])  # fmt: skip
    return time.thread_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=23)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = prepare(load_dataset("digits").frame, target="digit", seed=0)
    torch.set_num_threads(1)
    _run(data, 1, args.hidden, TrajectoryRecorder())  # warm-up: imports, first allocations
    bare: list[float] = []
    recorded: list[float] = []
    ratios: list[float] = []
    for r in range(args.rounds):
        times = {}
        for with_recorder in ((False, True) if r % 2 == 0 else (True, False)):
            times[with_recorder], _ = _run(data, args.epochs, args.hidden,
                                           TrajectoryRecorder() if with_recorder else None)  # fmt: skip
        bare.append(times[False])
        recorded.append(times[True])
        ratios.append(times[True] / times[False])
    recorder = TrajectoryRecorder()
    run_time, result = _run(data, args.epochs, args.hidden, recorder)
    snaps = recorder.snapshots()
    start = time.thread_time()
    plane = principal_plane(snaps, result.model)
    plane_time = time.thread_time() - start
    X, y = data.X_train.float(), data.y_train.long()
    model = result.model
    start = time.thread_time()
    trajectory_surface(model, lambda: torch.nn.functional.cross_entropy(model(X), y), plane, points=21)
    surface_time = time.thread_time() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}")
    print(f"{result.steps} steps, {params:,} parameters, {args.rounds} rounds")
    print(f"fit without recorder: {statistics.median(bare):.3f} s CPU; with: {statistics.median(recorded):.3f} s")
    print(f"overhead (median of per-round ratios): {100 * (statistics.median(ratios) - 1):+.2f}%")
    print(f"snapshots: {len(snaps)} (every {snaps.every} steps), {recorder.nbytes / 1024:.0f} KiB held "
          f"({recorder.nbytes / (4 * params):.1f}x the float32 weights)")
    print(f"explained: {plane.explained[0]:.3f} + {plane.explained[1]:.3f}")
    print(f"principal plane: {plane_time:.3f} s; 21x21 surface + path + snapshots ({21 * 21 + 2 * len(snaps)} losses "
          f"on {len(X)} rows): {surface_time:.3f} s; the run: {run_time:.3f} s "
          f"(analysis / run = {(plane_time + surface_time) / run_time:.2f})")


if __name__ == "__main__":
    main()
