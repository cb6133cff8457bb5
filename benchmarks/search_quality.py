"""Hyperparameter search quality: 30 TPE trials against 30 random trials and a 13-point learning-rate grid.

For each problem the data is prepared once (``prepare(load_dataset(name), validation=0.2, seed=0)``; mnist1d is
generated offline by the ``mnist1d`` package with its default arguments) and three studies run on it with
``descend.tune.search.search`` (study seed 0, one worker, Adam, at most ``--epochs`` epochs, early stopping on):

- ``tpe``: 30 trials, TPE sampler, median pruner, over lr (log 1e-4..1e-1) x batch size (16, 32, 64, 128) x
  weight decay (log 1e-6..1e-2) x width (mlp:16, mlp:64, mlp:256);
- ``random``: the same space and pruner, random sampler, 30 trials;
- ``grid``: 13 learning rates log-spaced over 1e-4..1e-1 (each once), the other options at fit's defaults
  (batch 32, no weight decay, the default mlp), no pruner.

Reported: the best validation loss of each, wall time, and the share of the planned epochs that pruning saved
(the epochs pruned trials did not run, over trials x max epochs).

    flock /tmp/descend-bench.lock .venv/bin/python benchmarks/search_quality.py            # markdown on stdout
    .venv/bin/python benchmarks/search_quality.py --problems wine --epochs 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from descend.data import load_dataset, prepare
from descend.tune.search import CategoricalDistribution, FloatDistribution, search

PROBLEMS = ("digits", "wine", "diabetes", "mnist1d")
SPACE = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "batch_size": CategoricalDistribution([16, 32, 64, 128]),
    "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
    "model": CategoricalDistribution(["mlp:16", "mlp:64", "mlp:256"]),
}
GRID = {"lr": CategoricalDistribution([float(f"{v:.3g}") for v in np.logspace(-4, -1, 13)])}


def study(data: Any, space: dict[str, Any], folder: Path, *, sampler: str, pruner: str, trials: int,
          epochs: int) -> dict[str, Any]:
    start = time.perf_counter()
    result = search(data, space, study=folder, n_trials=trials, sampler=sampler, pruner=pruner, seed=0,
                    epochs=epochs, diagnostics=False, report=False, trial_reports=False)  # fmt: skip
    seconds = time.perf_counter() - start
    best = result.best
    saved = sum(epochs - (r["epochs"] or 0) for r in result.trials if r["state"] == "pruned")
    return {"best": best["value"] if best else float("nan"), "seconds": seconds,
            "pruned": sum(r["state"] == "pruned" for r in result.trials),
            "saved": saved / (len(result.trials) * epochs), "params": {k: best[k] for k in space} if best else {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    print("| problem | TPE best val_loss | random best | lr grid best | TPE <= both | TPE s | random s | grid s "
          "| pruned TPE / random | epochs saved TPE / random |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for name in args.problems:
            data = prepare(load_dataset(name), validation=0.2, seed=0)
            runs = {kind: study(data, space, Path(root) / f"{name}-{kind}", sampler=sampler, pruner=pruner,
                                trials=trials, epochs=args.epochs)
                    for kind, space, sampler, pruner, trials in (
                        ("tpe", SPACE, "tpe", "median", args.trials), ("random", SPACE, "random", "median", args.trials),
                        ("grid", GRID, "grid", "none", 13))}  # fmt: skip
            t, r, g = runs["tpe"], runs["random"], runs["grid"]
            ok = "yes" if t["best"] <= min(r["best"], g["best"]) else "no"
            print(f"| {name} | {t['best']:.4f} | {r['best']:.4f} | {g['best']:.4f} | {ok} | {t['seconds']:.0f} | "
                  f"{r['seconds']:.0f} | {g['seconds']:.0f} | {t['pruned']} / {r['pruned']} | "
                  f"{t['saved']:.0%} / {r['saved']:.0%} |", flush=True)
            print(f"<!-- {name} best TPE params: {t['params']}; random: {r['params']}; grid: {g['params']} -->",
                  flush=True)


if __name__ == "__main__":
    main()
