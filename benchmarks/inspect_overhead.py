"""What gradient-health and curvature tracking add to descend.fit's training time, at their default cadences.

Same setting as ``benchmarks/fit_overhead.py``: digits through descend.data.prepare (1438 training rows, 61
features), an MLP with one hidden layer of 64 ReLU units, descend.optim.Adam (lr 1e-3), batch 32, one torch
thread, ``--epochs`` epochs (45 steps each). Four runs of ``fit``, interleaved in rounds so a busy machine slows
them alike; each figure is the median over ``--rounds`` rounds of wall time / epochs:

- plain: fit with its default callbacks;
- health: plus ``HealthMonitor()`` (every 25 steps: per-layer norms, update ratios, activation hooks for one step);
- curvature: plus ``SharpnessMonitor(loss on a fixed batch of 256 training rows)`` (every 500 steps, Lanczos
  with tol 1e-3 and at most 20 Hessian-vector products, plus Adam's preconditioned sharpness);
- both: health, curvature and ``Findings``.

Two figures per variant: the wall-clock ratio to the plain run (noisy on a shared machine: rounds interleave, but
other jobs come and go), and the time spent inside the diagnostic callbacks' hooks divided by the rest of the same
run (insensitive to load that hits both alike; it misses only the activation hooks' cost inside one forward in 25).

Run: ``.venv/bin/python benchmarks/inspect_overhead.py [--epochs 20] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

import descend
from descend import optim
from descend.data import DataWarning, load_dataset, prepare
from descend.inspect import Findings, HealthMonitor, SharpnessMonitor
from descend.models import MLP
from descend.train import Callback


def timed(cb: Callback, spent: list[float]) -> Callback:
    """Accumulate the wall time ``cb``'s hooks take into ``spent[0]``."""
    for hook in ("on_fit_start", "on_epoch_start", "on_step_end", "on_epoch_end", "on_fit_end"):
        if getattr(type(cb), hook) is getattr(Callback, hook):
            continue
        inner = getattr(cb, hook)

        def wrapper(state, inner=inner):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            inner(state)
            spent[0] += time.perf_counter() - start

        setattr(cb, hook, wrapper)
    return cb


SPENT: dict[str, list[float]] = {}


def run(data: descend.data.PreparedData, epochs: int, which: str) -> float:
    torch.manual_seed(0)
    model = MLP(data.n_features, data.n_classes, hidden=(64,))
    xb, yb = data.X_train[:256], data.y_train[:256]
    callbacks: list[Callback] = []
    health = HealthMonitor() if which in ("health", "both") else None
    curvature = (SharpnessMonitor(lambda: F.cross_entropy(model(xb), yb))
                 if which in ("curvature", "both") else None)
    callbacks += [cb for cb in (health, curvature) if cb is not None]
    if which == "both":
        callbacks.append(Findings(health=health, sharpness=curvature))
    spent = [0.0]
    callbacks = [timed(cb, spent) for cb in callbacks]
    start = time.perf_counter()
    result = descend.fit(model, data, optimizer=optim.Adam, lr=1e-3, batch_size=32, epochs=epochs, tol=None,
                         early_stopping=False, callbacks=callbacks, progress=False)
    total = time.perf_counter() - start
    SPENT.setdefault(which, []).append(spent[0] / max(total - spent[0], 1e-12))
    return total / result.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = prepare(load_dataset("digits"), validation=0.2, seed=0)
    kinds = ("plain", "health", "curvature", "both")
    runs: dict[str, Callable[[], float]] = {k: (lambda k=k: run(data, args.epochs, k)) for k in kinds}
    for k in kinds:  # warm-up
        run(data, 2, k)
    SPENT.clear()
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for k, f in runs.items():
            times[k].append(f())
    med = {k: statistics.median(t) for k, t in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"data: digits, {len(data.X_train)} rows; MLP 64 hidden; Adam; batch 32; {args.epochs} epochs x {args.rounds} rounds")
    for k in kinds:
        spread = f"{min(times[k]) * 1e3:.1f}-{max(times[k]) * 1e3:.1f}"
        inside = statistics.median(SPENT.get(k, [0.0]))
        print(f"{k:>10}: {med[k] * 1e3:7.2f} ms/epoch (rounds {spread})  wall-clock overhead "
              f"{med[k] / med['plain'] - 1:+.1%}; time in its hooks / rest of the run {inside:.1%}")
    print("target: overhead <= +10% for 'both'")


if __name__ == "__main__":
    main()
