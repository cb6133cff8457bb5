"""What the divergence guard costs a step: descend.fit with and without it, and with the diagnostics.

Same setting as ``fit_overhead.py``: digits through descend.data.prepare (1438 training rows, 61 features), an MLP
with one hidden layer of 64 ReLU units, descend.optim.Adam at lr 1e-3, batch size 32 (45 steps an epoch), one
thread. Variants, all with early stopping off and no run folder:

- bare: ``guard=False, diagnostics=False``;
- guard "ends" / "all" / "last" / no check: the guard alone, checking the first and last parameters' gradients
  (the default), every gradient, the last parameter's, or none (``check_grads=False``: the guard's per-step
  bookkeeping only);
- guard + diagnostics: fit's defaults (the guard, gradient health every 50 steps, sharpness every 1000).

The figure per variant is the thread's CPU time for a whole fit (``time.thread_time``: other processes on a
shared machine slow wall time, much less this), per step: the median over rounds; the variants run in
interleaved rounds, and each ratio is the median over rounds of the variant's time over bare's in the same round.
A whole fit includes what does not change per step (building the model, validation each epoch): the per-step
cost of the guard is the difference of the per-step figures.

Run: ``flock /tmp/descend-bench.lock .venv/bin/python benchmarks/guard_overhead.py [--epochs 20] [--rounds 11]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from typing import Any

import torch

import descend
from descend.data import DataWarning, load_dataset, prepare
from descend.models import MLP
from descend.train import DivergenceGuard


def fit_cpu(data: descend.data.PreparedData, epochs: int, guard: Any, diagnostics: bool) -> float:
    """The thread's CPU time for one whole fit (a shared machine's other processes slow wall time, much less this)."""
    torch.manual_seed(0)
    model = MLP(data.n_features, data.n_classes, hidden=(64,))
    start = time.thread_time()
    descend.fit(model, data, optimizer=descend.optim.Adam, lr=1e-3, batch_size=32, epochs=epochs, tol=None,
                early_stopping=False, guard=guard, diagnostics=diagnostics, progress=False, threads=1, seed=0)
    return time.thread_time() - start


def timed(guard: DivergenceGuard, clock: list[float]) -> DivergenceGuard:
    """The guard with its per-step work (the gradient check, ``on_step_end``) timed into ``clock[0]``."""
    for name in ("_before_step", "on_step_end"):
        method = getattr(guard, name)

        def wrapper(*args: Any, _method: Any = method) -> Any:
            start = time.perf_counter()
            out = _method(*args)
            clock[0] += time.perf_counter() - start
            return out

        setattr(guard, name, wrapper)
    return guard


def direct(data: descend.data.PreparedData, epochs: int, check_grads: Any) -> tuple[float, float]:
    """The guard's own time per step and the loop's time per step (both wall clock, in the same run, so a busy
    machine slows them alike)."""
    clock = [0.0]
    guard = timed(DivergenceGuard(check_grads=check_grads), clock)
    torch.manual_seed(0)
    model = MLP(data.n_features, data.n_classes, hidden=(64,))
    result = descend.fit(model, data, optimizer=descend.optim.Adam, lr=1e-3, batch_size=32, epochs=epochs, tol=None,
                         early_stopping=False, guard=guard, diagnostics=False, progress=False, threads=1, seed=0)
    loop = sum(row["time"] for row in result.history)
    return clock[0] / result.steps, loop / result.steps


VARIANTS: dict[str, Any] = {
    "bare": lambda: (False, False),
    'guard "ends"': lambda: (DivergenceGuard(), False),
    'guard "all"': lambda: (DivergenceGuard(check_grads="all"), False),
    'guard "last"': lambda: (DivergenceGuard(check_grads="last"), False),
    "guard, no check": lambda: (DivergenceGuard(check_grads=False), False),
    "guard + diagnostics": lambda: (True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DataWarning)
    warnings.simplefilter("ignore", descend.train.ConvergenceWarning)
    torch.set_num_threads(1)
    data = prepare(load_dataset("digits"), seed=0)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, make in VARIANTS.items():
            guard, diagnostics = make()
            times[name].append(fit_cpu(data, args.epochs, guard, diagnostics))
    steps = -(-len(data.X_train) // 32)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
          f"{torch.__version__}, load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds of {args.epochs} epochs, "
          f"{steps} steps an epoch")  # fmt: skip
    print(f"{'variant':<22}{'us/step':>10}{'x bare':>9}")
    for name, values in times.items():
        m = statistics.median(values) / (steps * args.epochs)
        ratio = statistics.median(v / b for v, b in zip(values, times["bare"], strict=True))
        print(f"{name:<22}{1e6 * m:>10.1f}{ratio:>9.3f}")
    print("the guard's own work per step, timed inside the same runs (median over rounds):")
    for check in ("ends", "all", "last", False):
        pairs = [direct(data, args.epochs, check) for _ in range(args.rounds)]
        own = statistics.median(g for g, _ in pairs)
        share = statistics.median(g / (loop - g) for g, loop in pairs)
        print(f"  check_grads={check!r:<7} {1e6 * own:6.1f} us/step, {100 * share:4.1f}% of the rest of the step")


if __name__ == "__main__":
    main()
