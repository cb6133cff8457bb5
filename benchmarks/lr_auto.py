"""lr="auto" against a 13-point log grid of fixed learning rates, on six problems, for SGD with momentum and Adam.

For each problem and optimizer: one ``descend.fit(..., lr="auto")`` run and 13 runs at fixed rates
10**-4, 10**-3.5, ..., 10**2, all with the same seed (same init, same data order), the same epochs, no early
stopping, no divergence guard (the comparison is of fixed rates) and no diagnostics. The score is the last epoch's
validation loss (a diverged run scores inf). Also measured: the range test's time over the auto run's training
time (fit's wall time minus the range test), the median of three identical auto runs.

    .venv/bin/python benchmarks/lr_auto.py            # the table, as markdown, on stdout
    .venv/bin/python benchmarks/lr_auto.py --json out.json
    .venv/bin/python benchmarks/lr_auto.py --schedule warmup-cosine --optimizers adam   # the rate as a peak

With ``--schedule`` every run (auto and grid) trains with that named schedule, the rate its peak. Each pair also
prints the lowest-loss rate of the range test over the grid's best rate: the divisor that would have hit the best.

Runs the (problem, optimizer) pairs in two worker processes (one torch thread each).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

GRID = [10 ** (-4 + 0.5 * k) for k in range(13)]
OPTIMIZERS = {"momentum": "SGD+momentum 0.9", "adam": "Adam"}


def _split(X: np.ndarray, y: np.ndarray, task: str, seed: int, n_classes: int | None = None) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    cut = int(0.8 * len(X))
    tr, va = idx[:cut], idx[cut:]
    yt = torch.tensor(y, dtype=torch.long if task == "multiclass" else torch.float32)
    Xt = torch.tensor(X, dtype=torch.float32)
    return SimpleNamespace(X_train=Xt[tr], y_train=yt[tr], X_val=Xt[va], y_val=yt[va], task=task, n_classes=n_classes)


def _standardize(X: np.ndarray) -> np.ndarray:
    return (X - X.mean(0)) / (X.std(0) + 1e-8)


def problem(name: str) -> tuple[Any, Any, dict[str, Any]]:
    """(data, model factory, fit options) for one problem of the suite."""
    from descend.models import MLP, LinearRegression, LogisticRegression, SoftmaxRegression

    rng = np.random.default_rng(0)
    if name == "linear regression":
        X = rng.standard_normal((2000, 20))
        y = X @ rng.standard_normal(20) + 0.5 * rng.standard_normal(2000)
        return _split(X, y, "regression", 0), LinearRegression, {"epochs": 40, "batch_size": 32}
    if name == "logistic regression":
        X = rng.standard_normal((2000, 20))
        y = (rng.random(2000) < 1 / (1 + np.exp(-(X @ rng.standard_normal(20) * 0.7)))).astype(float)
        return _split(X, y, "binary", 0), LogisticRegression, {"epochs": 40, "batch_size": 32}
    if name in ("softmax on digits", "MLP on digits"):
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        data = _split(_standardize(X), y, "multiclass", 0, 10)
        if name == "softmax on digits":
            return data, SoftmaxRegression, {"epochs": 50, "batch_size": 32}
        return data, lambda: MLP(hidden=(64,)), {"epochs": 50, "batch_size": 32}
    if name == "MLP on synthetic":
        X = rng.standard_normal((3000, 10))
        y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * np.tanh(X[:, 3:6].sum(1)) + 0.1 * rng.standard_normal(3000)
        return _split(X, y, "regression", 0), lambda: MLP(hidden=(64, 64)), {"epochs": 30, "batch_size": 32}
    if name == "ill-conditioned quadratic":
        # least squares with feature scales from 1 to 1/30: Hessian condition number 900
        scales = np.logspace(0, -math.log10(30), 20)
        X = rng.standard_normal((2000, 20)) * scales
        y = X @ (rng.standard_normal(20) / scales) + 0.3 * rng.standard_normal(2000)
        return _split(X, y, "regression", 0), LinearRegression, {"epochs": 40, "batch_size": 32}
    raise ValueError(name)


PROBLEMS = ["linear regression", "logistic regression", "softmax on digits", "MLP on synthetic", "MLP on digits",
            "ill-conditioned quadratic"]  # fmt: skip


def _run(name: str, optimizer: str, lr: Any, schedule: str | None = None) -> dict[str, Any]:
    import descend

    data, make, options = problem(name)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = descend.fit(make(), data, optimizer=optimizer, lr=lr, seed=0, early_stopping=False, tol=None,
                        guard=False, diagnostics=False, progress=False, threads=1, schedule=schedule,
                        **options)  # fmt: skip
    seconds = time.perf_counter() - start
    val = r.history[-1].get("val_loss", math.nan)
    out: dict[str, Any] = {"lr": lr, "val_loss": val if math.isfinite(val) else math.inf, "seconds": seconds}
    if r.lr_find is not None:
        f = r.lr_find
        out.update(lr=f.lr, finder_seconds=f.seconds, finder_steps=f.steps, train_steps=r.steps, reason=f.reason,
                   fallback=f.fallback, low=f.low, high=f.high,
                   lowest=statistics.median(s.lowest for s in f.sweeps if s.lowest is not None),
                   sweeps=[{"lrs": s.lrs, "losses": s.losses} for s in f.sweeps])  # fmt: skip
    return out


def pair(name: str, optimizer: str, schedule: str | None = None) -> dict[str, Any]:
    torch.set_num_threads(1)
    # The auto run three times: the same numbers each time (seeded), but the time ratio of one run moves with
    # the machine's load; its median is reported.
    autos = [_run(name, optimizer, "auto", schedule) for _ in range(3)]
    auto = autos[0]
    auto["time_ratio"] = statistics.median(a["finder_seconds"] / (a["seconds"] - a["finder_seconds"]) for a in autos)
    grid = [_run(name, optimizer, lr, schedule) for lr in GRID]
    return {"problem": name, "optimizer": optimizer, "schedule": schedule, "auto": auto, "grid": grid}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| problem | optimizer | auto lr (spread) | auto val loss | grid best (lr) | grid median | auto / best "
             "| range test / training time |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        a, grid = r["auto"], r["grid"]
        best = min(grid, key=lambda g: g["val_loss"])
        median = statistics.median(g["val_loss"] for g in grid)
        ratio = a["val_loss"] / best["val_loss"]
        lines.append(
            f"| {r['problem']} | {OPTIMIZERS[r['optimizer']]} | {a['lr']:.3g} ({a['high'] / a['low']:.1f}x) "
            f"| {a['val_loss']:.4g} | {best['val_loss']:.4g} ({best['lr']:.2g}) | {median:.4g} | {ratio:.3f} "
            f"| {a['time_ratio']:.1%} ({a['finder_steps']} / {a['train_steps']} steps) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write every run's numbers here")
    parser.add_argument("--schedule", default=None, help="a named schedule for every run (the rate is its peak)")
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS))
    args = parser.parse_args()
    started = time.perf_counter()
    jobs = [(p, o, args.schedule) for p in PROBLEMS for o in args.optimizers]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(pair, *zip(*jobs)))
    print(table(results))
    print()
    for r in results:
        best = min(r["grid"], key=lambda g: g["val_loss"])
        print(f"{r['problem']}, {OPTIMIZERS[r['optimizer']]}: lowest-loss rate {r['auto']['lowest']:.3g} / grid best "
              f"{best['lr']:.2g} = {r['auto']['lowest'] / best['lr']:.3g}")  # fmt: skip
    within: dict[str, list[bool]] = {}
    for r in results:
        best = min(g["val_loss"] for g in r["grid"])
        within.setdefault(r["problem"], []).append(r["auto"]["val_loss"] <= 1.10 * best)
    print(f"\nwithin 10% of the grid best: {sum(all(v) for v in within.values())}/6 problems for every optimizer, "
          f"{sum(x for v in within.values() for x in v)}/{len(results)} pairs")  # fmt: skip
    for k, name in enumerate(args.optimizers):
        print(f"{OPTIMIZERS[name]}: within 10% on {sum(v[k] for v in within.values())}/6 problems")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"total {time.perf_counter() - started:.0f} s")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, default=str)


if __name__ == "__main__":
    main()
