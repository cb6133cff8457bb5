"""The whole call of descend.fit against a minimal hand loop and scikit-learn's MLPClassifier, on a table large
enough that the matrix products should dominate.

Data: 200,000 rows x 50 features drawn from a seeded Gaussian, 10 classes from a random two-layer teacher network
(learnable, not separable). Model: an MLP 50-256-256-10 (ReLU), Adam at 1e-3, batch 256, ``--epochs`` epochs.

- minimal: the loop a careful user writes by hand over the whole table (200,000 rows, 782 steps an epoch): the rows
  already as scaled tensors, a seeded permutation per epoch, ``X[idx]``, forward, cross-entropy, backward, torch's
  fused Adam (``torch.optim.Adam(fused=True)``), torch's default thread count. No validation, no records.
- minimal, 160k: the same loop over the 160,000 rows fit trains on (625 steps an epoch, as many as fit's), the
  stricter comparison: fit's validation pass and everything else it does count against it.
- fit: ``descend.fit(model, (X, y), batch_size=256, epochs=E, lr=1e-3, tol=None)``, everything else as it comes
  (its split of 20% for validation, scaling, validation every epoch, the divergence guard, the diagnostics, its
  own thread choice), timed from the call to its return.
- fit, compile=True: the same with each step one torch.compile graph (its compile inside the call).
- sklearn: ``MLPClassifier((256, 256), batch_size=256, max_iter=E, learning_rate_init=1e-3, alpha=0, tol=0,
  shuffle=True)`` on the same 160,000 scaled rows (float32), its ConvergenceWarning silenced.

The variants run interleaved in ``--rounds`` rounds (the order rotating), each figure the median over rounds; ratios
are of medians. The machine's sgemm peak is measured in the same process (a 2048 x 2048 float32 product with
torch's threads, best of 10) and each loop's arithmetic rate is reported against it: an MLP step costs
6 x rows x (weights in the matrix products) FLOPs (forward 2, backward 4).

Run: ``.venv/bin/python benchmarks/fit_call.py [--epochs 1 5] [--rounds 3] [--compile] [--no-sklearn]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

import descend
from descend.models import MLP

ROWS, FEATURES, CLASSES, HIDDEN, BATCH, LR = 200_000, 50, 10, (256, 256), 256, 1e-3
TRAIN = int(ROWS * 0.8)  # the rows fit trains on after its default 20% validation split


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((ROWS, FEATURES), dtype=np.float32)
    w1 = rng.standard_normal((FEATURES, 64)).astype(np.float32) / np.sqrt(FEATURES)
    w2 = rng.standard_normal((64, CLASSES)).astype(np.float32) / 8
    logits = np.tanh(X @ w1) @ w2 * 4 + rng.gumbel(size=(ROWS, CLASSES)).astype(np.float32)
    return X, logits.argmax(1).astype(np.int64)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return MLP(FEATURES, CLASSES, hidden=HIDDEN)


def flops_per_epoch(rows: int = TRAIN) -> float:
    sizes = (FEATURES, *HIDDEN, CLASSES)
    weights = sum(a * b for a, b in itertools.pairwise(sizes))
    return 6.0 * rows * weights


def minimal(X: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    start = time.perf_counter()
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=LR, fused=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=g).split(BATCH):
            loss = F.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def fit(X: np.ndarray, y: np.ndarray, epochs: int, compile: bool = False) -> float:
    threads = torch.get_num_threads()
    start = time.perf_counter()
    descend.fit(model(), (X, y), batch_size=BATCH, epochs=epochs, lr=LR, tol=None, compile=compile, progress=False)
    took = time.perf_counter() - start
    torch.set_num_threads(threads)  # fit chooses its own count for its run; the other loops keep torch's
    return took


def sklearn(X: np.ndarray, y: np.ndarray, epochs: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(HIDDEN, batch_size=BATCH, max_iter=epochs, learning_rate_init=LR, alpha=0.0, tol=0.0,
                      n_iter_no_change=10**6, random_state=0).fit(X, y)  # fmt: skip
    return time.perf_counter() - start


def sgemm_peak() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time fit(compile=True)")
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", descend.data.DataWarning)
    warnings.simplefilter("ignore", descend.train.ConvergenceWarning)  # a fixed number of epochs, by design
    X, y = make_data()
    mean, std = X.mean(0), X.std(0)
    Xs = (X - mean) / std
    Xt, yt = torch.from_numpy(Xs), torch.from_numpy(y)
    loops: dict[str, Callable[[int], float]] = {
        "minimal": lambda e: minimal(Xt, yt, e),
        "minimal, 160k": lambda e: minimal(Xt[:TRAIN], yt[:TRAIN], e),
        "fit": lambda e: fit(X, y, e),
    }
    if args.compile:
        loops["fit, compile=True"] = lambda e: fit(X, y, e, compile=True)
    if not args.no_sklearn:
        loops["sklearn"] = lambda e: sklearn(Xs, y, e)  # the whole table, as the minimal loop
    for run in loops.values():  # warm-up: imports, allocator, first compile
        run(1)
    peak = sgemm_peak()
    loads = [os.getloadavg()[0]]
    times: dict[tuple[str, int], list[float]] = {}
    names = list(loops)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for epochs in args.epochs:
            for name in order:
                times.setdefault((name, epochs), []).append(loops[name](epochs))
        loads.append(os.getloadavg()[0])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, load average {min(loads):.2f}-{max(loads):.2f}; "
          f"sgemm peak {peak:.0f} GFLOP/s")
    print(f"data: {ROWS} rows x {FEATURES} features, {CLASSES} classes; MLP {FEATURES}-{'-'.join(map(str, HIDDEN))}-"
          f"{CLASSES}; Adam {LR}; batch {BATCH}; {TRAIN} training rows; {args.rounds} rounds")
    for epochs in args.epochs:
        base = statistics.median(times[("minimal", epochs)])
        strict = statistics.median(times[("minimal, 160k", epochs)])
        for name in names:
            t = times[(name, epochs)]
            med = statistics.median(t)
            rows = TRAIN if name in ("fit", "fit, compile=True", "minimal, 160k") else ROWS
            rate = flops_per_epoch(rows) * epochs / med / 1e9
            print(f"{epochs} epoch(s) {name:>18}: {med:7.2f} s (rounds {min(t):.2f}-{max(t):.2f}), "
                  f"{med / base:.2f}x minimal, {med / strict:.2f}x minimal on 160k, "
                  f"{rate:.0f} GFLOP/s of training = {rate / peak:.0%} of peak")
        if "sklearn" in loops:
            fit_t, sk_t = statistics.median(times[("fit", epochs)]), statistics.median(times[("sklearn", epochs)])
            print(f"{epochs} epoch(s): MLPClassifier / fit = {sk_t / fit_t:.2f}")


if __name__ == "__main__":
    main()
