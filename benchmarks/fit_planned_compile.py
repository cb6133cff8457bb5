"""A model just under the optimizer's parameter-count threshold: whole fits with and without the planned-updates
rule that compiles a descend optimizer's rules, against a minimal hand loop with torch's fused Adam.

Model: an MLP 784-512-512-512-10 (932k parameters, under ``COMPILE_MIN_NUMEL`` = 2^20), Adam at 1e-3, batch 32.
Data: ``--rows`` x 784 seeded Gaussian features, 10 classes from a random linear teacher. ``--epochs`` epochs over
fit's 80% training split, so ``fit`` plans ``epochs x rows x 0.8 / 32`` updates (the default, 10 epochs of 20,000
rows: 5,000, over the 4,609 from which 932k parameters compile under ``COMPILE_MIN_WORK``).

- minimal: the loop a careful user writes over the same 16,000 training rows (a seeded permutation per epoch,
  ``X[idx]``, forward, cross-entropy, backward, ``torch.optim.Adam(fused=True)``); no validation, no records;
- fit, planned: ``descend.fit(model, (X, y), optimizer="adam", batch_size=32, epochs=E, lr=1e-3, tol=None,
  early_stopping=False)`` as it comes: the optimizer is told its 5,000 updates and compiles its rules (the compile
  inside the call);
- fit, eager rules: the same with the optimizer built by the caller as ``descend.optim.Adam(params, lr=1e-3,
  compile=False)``: the rules eager, as the parameter count alone decided for this model before the rule.

Both fits run fit's defaults (validation each epoch, the guard, the diagnostics), so their ratio is the rule's
effect; against the minimal loop each carries fit's own costs too. Interleaved rounds, order rotating, medians.

Run: ``.venv/bin/python benchmarks/fit_planned_compile.py [--rows 20000] [--epochs 10] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import torch
from torch.nn import functional as F

import descend
from descend.models import MLP

HIDDEN = (512, 512, 512)


def data(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(rows, 784, generator=g)
    y = (X @ torch.randn(784, 10, generator=g)).argmax(1)
    return X, y


def minimal(X: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    torch.manual_seed(0)
    n = int(len(X) * 0.8)
    Xt, yt = (X[:n] - X[:n].mean(0)) / X[:n].std(0), y[:n]
    model = MLP(784, 10, hidden=HIDDEN)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(32):
            loss = F.cross_entropy(model(Xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def fit(X: torch.Tensor, y: torch.Tensor, epochs: int, planned: bool) -> tuple[float, str]:
    torch.manual_seed(0)
    model = MLP(784, 10, hidden=HIDDEN)
    optimizer = "adam" if planned else descend.optim.Adam(model.parameters(), lr=1e-3, compile=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rate = {"lr": 1e-3} if planned else {}
        result = descend.fit(model, (X, y), optimizer=optimizer, **rate, batch_size=32, epochs=epochs, tol=None,
                             early_stopping=False, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    compiled = "rules compiled" in result.step
    return seconds, f"{result.history[-1]['val_accuracy']:.3f}, rules {'compiled' if compiled else 'eager'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    X, y = data(args.rows)
    steps = args.epochs * -(-int(args.rows * 0.8) // 32)
    kinds = ["minimal", "fit, planned", "fit, eager rules"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    notes: dict[str, str] = {}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for k in kinds[r % 3 :] + kinds[: r % 3]:
            if k == "minimal":
                times[k].append(minimal(X, y, args.epochs))
            else:
                seconds, notes[k] = fit(X, y, args.epochs, planned=k == "fit, planned")
                times[k].append(seconds)
        load.append(os.getloadavg()[0])
    med = {k: statistics.median(t) for k, t in times.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, load average "
          f"{min(load):.2f}-{max(load):.2f}; MLP 784-{'-'.join(map(str, HIDDEN))}-10, batch 32, {steps:,} steps, "
          f"{args.rounds} rounds")  # fmt: skip
    for k in kinds:
        extra = f"  (val accuracy {notes[k]})" if k in notes else ""
        print(f"{k:>16}: {med[k]:7.2f} s (runs {', '.join(f'{t:.2f}' for t in times[k])}), "
              f"x minimal {med[k] / med['minimal']:.2f}{extra}")
    print(f"planned / eager rules: {med['fit, planned'] / med['fit, eager rules']:.2f}")


if __name__ == "__main__":
    main()
