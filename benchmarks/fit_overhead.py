"""Per-epoch time of descend.fit against a minimal hand-written loop and a typical DataLoader loop.

Same data (digits through descend.data.prepare, 1438 training rows, 61 features), same model (an MLP with one
hidden layer of 64 ReLU units), same optimizer (``--optimizer descend``: descend.optim.Adam, fit's default;
``torch``: torch.optim.Adam; lr 1e-3), batch size 32 (``--batch-size``), same thread count (1, fit's choice for
small models), in one process. The loops run in interleaved rounds so a busy machine slows them alike; the figure
per loop is the median over rounds of its per-epoch time, and the ratios are of those medians.

- minimal: a seeded permutation per epoch, ``perm.split(BATCH)``, ``X[idx]``, forward, loss, backward, step.
- dataloader: ``DataLoader(TensorDataset(X, y), batch_size=BATCH, shuffle=True)``, the usual tutorial loop.
- fit: ``descend.fit`` with its defaults (early stopping on the validation loss with best-weight copies,
  validation metrics every epoch, per-epoch grad norm, history, the divergence guard, and the diagnostics:
  gradient health every 50 steps, sharpness every 1000); no run folder.
- fit, no diagnostics: the same with ``diagnostics=False`` (the training loop's own callbacks only).
- fit, compile=True: fit with its defaults and each training step one torch.compile graph (forward, loss,
  backward and, with descend's optimizer, the update; descend.train.compiled).

The fit variants run one epoch more than asked and are timed from the end of their first epoch to the end of the
last (a callback reads the clock), so the one-off compile of the compiled variant, which happens in its first
epoch, stays out of the per-epoch figure; it is printed on its own (the first epoch's time beyond a steady one).

Run: ``.venv/bin/python benchmarks/fit_overhead.py [--epochs 20] [--rounds 7] [--optimizer descend|torch]
[--batch-size 32]``.
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
from torch.nn import functional as F

import descend
from descend import optim
from descend.data import DataWarning, load_dataset, prepare
from descend.models import MLP

Adam: Callable[..., torch.optim.Optimizer] = optim.Adam
BATCH = 32


def make_model(n_features: int, n_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return MLP(n_features, n_classes, hidden=(64,))


def minimal(data: descend.data.PreparedData, epochs: int) -> float:
    model = make_model(data.n_features, data.n_classes)
    opt = Adam(model.parameters(), lr=1e-3)
    X, y = data.X_train, data.y_train
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=g).split(BATCH):
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def dataloader(data: descend.data.PreparedData, epochs: int) -> float:
    model = make_model(data.n_features, data.n_classes)
    opt = Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.X_train, data.y_train), batch_size=BATCH, shuffle=True
    )
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


class EpochClock(descend.train.Callback):
    """The wall-clock time at each epoch's end: an epoch's time is the interval since the previous one."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_epoch_end(self, state: descend.train.TrainState) -> None:
        self.ends.append(time.perf_counter())


COMPILE_SECONDS: list[float] = []  # the compiled fit's first epoch beyond its steady-state epochs


def fit(data: descend.data.PreparedData, epochs: int, diagnostics: bool = True, compile: bool = False) -> float:
    """Per-epoch wall time of fit from the second epoch's end on (the first holds a compile, when compiled)."""
    model = make_model(data.n_features, data.n_classes)
    clock = EpochClock()
    start = time.perf_counter()
    descend.fit(model, data, optimizer=Adam, lr=1e-3, batch_size=BATCH, epochs=epochs + 1, tol=None,
                diagnostics=diagnostics, compile=compile, callbacks=[clock])  # fmt: skip
    per_epoch = (clock.ends[-1] - clock.ends[0]) / (len(clock.ends) - 1)
    if compile:
        COMPILE_SECONDS.append(clock.ends[0] - start - per_epoch)
    return per_epoch


def fit_plain(data: descend.data.PreparedData, epochs: int) -> float:
    return fit(data, epochs, diagnostics=False)


def fit_compiled(data: descend.data.PreparedData, epochs: int) -> float:
    return fit(data, epochs, compile=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", choices=("descend", "torch"), default="descend")
    args = parser.parse_args()
    global Adam, BATCH
    BATCH = args.batch_size
    Adam = optim.Adam if args.optimizer == "descend" else torch.optim.Adam
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = prepare(load_dataset("digits"), validation=0.2, seed=0)
    loops: dict[str, Callable[[descend.data.PreparedData, int], float]] = {
        "minimal": minimal,
        "dataloader": dataloader,
        "fit": fit,
        "fit, no diagnostics": fit_plain,
        "fit, compile=True": fit_compiled,
    }
    for run in loops.values():  # warm-up
        run(data, 2)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, run in loops.items():
            times[name].append(run(data, args.epochs))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"data: digits, {len(data.X_train)} rows x {data.n_features} features; MLP 64 hidden; {args.optimizer} Adam; batch {BATCH}; "
          f"{args.epochs} epochs x {args.rounds} rounds")
    for name in loops:
        spread = f"{min(times[name]) * 1e3:.1f}-{max(times[name]) * 1e3:.1f}"
        print(f"{name:>20}: {med[name] * 1e3:7.2f} ms/epoch (rounds {spread} ms)")
    for name in ("fit", "fit, no diagnostics", "fit, compile=True"):
        per_round = statistics.median(f / m for f, m in zip(times[name], times["minimal"]))
        print(f"{name} / minimal = {med[name] / med['minimal']:.3f} (median of per-round ratios {per_round:.3f}; "
              "target <= 1.05)")
        print(f"dataloader / {name} = {med['dataloader'] / med[name]:.2f}  (target >= 2)")
    print(f"compile=True: one-off compile in the first epoch {statistics.median(COMPILE_SECONDS):.2f} s "
          f"(median over {len(COMPILE_SECONDS)} fits; the first fit of the process "
          f"{COMPILE_SECONDS[0]:.2f} s)")

if __name__ == "__main__":
    main()
