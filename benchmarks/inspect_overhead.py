"""What fit's watching (the divergence guard; the diagnostics: gradient health, sharpness, findings) adds to
descend.fit's training time.

Same setting as ``benchmarks/fit_overhead.py``: digits through descend.data.prepare (1438 training rows, 61
features), an MLP with one hidden layer of 64 ReLU units, descend.optim.Adam (lr 1e-3), batch 32 (45 steps per
epoch), one torch thread, no early stopping, ``--epochs`` epochs (default 23: 1035 steps, so the run holds the
steady-state share of sharpness measurements: one, at the default cadence of one per 1000 steps). Variants:

- bare: ``fit(..., guard=False, diagnostics=False)``: nothing watches;
- bare again: the same fit a second time in each round, a control: its ratio to "bare" is the measurement's
  noise (an A/A comparison; about a point at 15-31 rounds on a quiet machine);
- off: ``fit(..., diagnostics=False)`` (the divergence guard on, as fit's default);
- health: ``diagnostics=False`` plus ``HealthMonitor()`` only (every 50 steps: per-layer norms, update ratios,
  activation hooks for one step);
- default: ``fit(...)`` as it comes, ``diagnostics=True``: health every 50 steps, sharpness every 1000 on fit's
  fixed batch of 256 training rows (Lanczos to tol 1e-2 in at most 20 Hessian-vector products, plus Adam's
  preconditioned sharpness: a second Lanczos run), and the findings rules at the end.

The variants run interleaved in rounds, the order rotating each round, so a busy machine slows them alike; each
figure is the median over ``--rounds`` rounds of the thread's CPU time / epochs (``time.thread_time``: other
processes on a shared machine slow it much less than wall time). Two overhead figures per variant: the median of
the per-round ratios to "bare" (the whole cost of watching, guard included), and the time spent inside the
guard's and the diagnostic callbacks' hooks (the guard's check before each update included) divided by the rest
of the same run (insensitive to load that comes and goes between runs; it misses only the activation hooks' cost
inside one forward in 50). The hooks are timed in a second run of each variant in the same round: the timing
wrappers cost about a microsecond a call, which would otherwise count in the CPU time figure.

Run: ``.venv/bin/python benchmarks/inspect_overhead.py [--epochs 23] [--rounds 7] [--hidden 64]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

import descend
from descend import optim
from descend.data import DataWarning, load_dataset, prepare
from descend.inspect import Findings, HealthMonitor, SharpnessMonitor
from descend.models import MLP
from descend.train import Callback, DivergenceGuard

HOOKS = ("on_fit_start", "on_epoch_start", "on_step_end", "on_epoch_end", "on_fit_end", "_before_step")


@contextlib.contextmanager
def timed_hooks(spent: dict[str, float]) -> Iterator[None]:
    """While open, every hook the diagnostic classes and the divergence guard define (the guard's check before
    each update among them) adds its wall time to ``spent[class name]``; this reaches the instances fit creates
    itself."""
    saved: list[tuple[type[Callback], str, Callable[..., None]]] = []
    classes: tuple[type[Callback], ...] = (HealthMonitor, SharpnessMonitor, Findings, DivergenceGuard)
    for cls in classes:
        for hook in HOOKS:
            inner = cls.__dict__.get(hook)
            if inner is None:
                continue

            def wrapper(self: Callback, *args: Any, inner: Callable[..., None] = inner,
                        name: str = cls.__name__) -> None:
                start = time.perf_counter()
                inner(self, *args)
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

            saved.append((cls, hook, inner))
            setattr(cls, hook, wrapper)
    try:
        yield
    finally:
        for cls, hook, inner in saved:
            setattr(cls, hook, inner)


SPENT: dict[str, list[dict[str, float]]] = {}  # variant -> per round: class -> hook time / rest of the run


HIDDEN: tuple[int, ...] = (64,)
BARE = ("bare", "bare again")


def fit(data: descend.data.PreparedData, epochs: int, which: str) -> tuple[float, float]:
    """One fit of the variant: its wall time and the thread's CPU time per epoch."""
    torch.manual_seed(0)
    model = MLP(data.n_features, data.n_classes, hidden=HIDDEN)
    callbacks: list[Callback] = [HealthMonitor()] if which == "health" else []
    start, cpu = time.perf_counter(), time.thread_time()
    result = descend.fit(model, data, optimizer=optim.Adam, lr=1e-3, batch_size=32, epochs=epochs, tol=None,
                         early_stopping=False, callbacks=callbacks, progress=False,
                         diagnostics=which == "default", guard=which not in BARE)
    return time.perf_counter() - start, (time.thread_time() - cpu) / result.epochs


def run(data: descend.data.PreparedData, epochs: int, which: str) -> float:
    """The variant's CPU time per epoch (a plain fit), and in a second fit the share of its hooks."""
    cpu = fit(data, epochs, which)[1]
    if which not in BARE:
        spent: dict[str, float] = {}
        with timed_hooks(spent):
            total = fit(data, epochs, which)[0]
        rest = max(total - sum(spent.values()), 1e-12)
        SPENT.setdefault(which, []).append({"all": sum(spent.values()) / rest,
                                            **{k: v / rest for k, v in spent.items()}})
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=23)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hidden", default="64", help="hidden sizes of the MLP, e.g. 512,512")
    args = parser.parse_args()
    global HIDDEN
    HIDDEN = tuple(int(h) for h in args.hidden.split(","))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = prepare(load_dataset("digits"), validation=0.2, seed=0)
    kinds = ["bare", "bare again", "off", "health", "default"]
    for k in kinds:  # warm-up
        run(data, 2, k)
    SPENT.clear()
    load = [os.getloadavg()[0]]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for k in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            times[k].append(run(data, args.epochs, k))
        load.append(os.getloadavg()[0])
    med = {k: statistics.median(t) for k, t in times.items()}
    paired = {k: statistics.median(a / b for a, b in zip(times[k], times["bare"], strict=True)) for k in kinds}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {min(load):.2f}-{max(load):.2f}")
    print(f"data: digits, {len(data.X_train)} rows; MLP hidden {args.hidden}; Adam; batch 32; {args.epochs} epochs "
          f"({args.epochs * 45} steps) x {args.rounds} rounds")
    for k in kinds:
        spread = f"{min(times[k]) * 1e3:.1f}-{max(times[k]) * 1e3:.1f}"
        rounds = SPENT.get(k, [])
        inside = {name: statistics.median(r.get(name, 0.0) for r in rounds) for name in (rounds[0] if rounds else {})}
        split = ", ".join(f"{name} {v:.1%}" for name, v in inside.items() if name != "all")
        print(f"{k:>10}: {med[k] * 1e3:7.2f} ms/epoch (rounds {spread})  vs bare: median of per-round ratios "
              f"{paired[k] - 1:+.1%}; time in its hooks / rest of the run "
              f"{inside.get('all', 0.0):.1%}{f' ({split})' if split else ''}")
    print("target: 'default' (the guard and the diagnostics) <= +10% over 'bare'")


if __name__ == "__main__":
    main()
