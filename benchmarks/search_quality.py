"""Hyperparameter search quality: 30 TPE trials against 30 random trials and a 13-point learning-rate grid.

For each problem the data is prepared once (``prepare(load_dataset(name), validation=0.2, seed=0)``; mnist1d is
generated offline by the ``mnist1d`` package with its default arguments) and three studies run on it with
``descend.tune.search.search`` (each study seed in ``--seeds``, one worker, Adam, at most ``--epochs`` epochs,
early stopping on):

- ``tpe``: 30 trials, TPE sampler, median pruner (search's default warm-up), over lr (log 1e-4..1e-1) x batch size (16, 32, 64, 128) x
  weight decay (log 1e-6..1e-2) x width (mlp:16, mlp:64, mlp:256);
- ``random``: the same space and pruner, random sampler, 30 trials;
- ``grid``: 13 learning rates log-spaced over 1e-4..1e-1 (each once), the other options at fit's defaults
  (batch 32, no weight decay, the default mlp), no pruner.

Reported per study seed: the best validation loss of each, wall time, trials pruned, and the share of the planned
epochs that pruning saved (the epochs pruned trials did not run, over trials x max epochs). The study seed draws
the samplers' parameters and every trial's initialisation, so with several seeds a second table gives each
method's mean, standard deviation and range of best losses, and TPE's differences to the others paired by seed
with their mean over its standard error: a single seed's ordering is mostly noise (the per-seed differences are
larger than their means), fifteen seeds tell the methods apart.

``--rank`` measures instead what the pruners' warm-up rests on: 30 random trials per problem, no pruning, and the
Spearman correlation between each trial's best validation loss after epoch k and its value at the end.

    flock /tmp/descend-bench.lock .venv/bin/python benchmarks/search_quality.py            # markdown on stdout
    .venv/bin/python benchmarks/search_quality.py --problems wine --epochs 5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
          epochs: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    result = search(data, space, study=folder, n_trials=trials, sampler=sampler, pruner=pruner, seed=seed,
                    epochs=epochs, diagnostics=False, report=False, trial_reports=False)  # fmt: skip
    seconds = time.perf_counter() - start
    best = result.best
    saved = sum(epochs - (r["epochs"] or 0) for r in result.trials if r["state"] == "pruned")
    return {"best": best["value"] if best else float("nan"), "seconds": seconds,
            "pruned": sum(r["state"] == "pruned" for r in result.trials),
            "saved": saved / (len(result.trials) * epochs), "params": {k: best[k] for k in space} if best else {}}


METHODS = ("tpe", "random", "grid")


def loss(value: float) -> str:
    """Four decimals, or two significant digits below 1e-3 (wine's losses reach float32's floor)."""
    return f"{value:.4f}" if value >= 1e-3 or value == 0 else f"{value:.2g}"


def compare(data: Any, root: Path, *, trials: int, epochs: int, seed: int) -> dict[str, dict[str, Any]]:
    """The three studies on one problem with one study seed."""
    plans = (("tpe", SPACE, "tpe", "median", trials), ("random", SPACE, "random", "median", trials),
             ("grid", GRID, "grid", "none", len(GRID["lr"].choices)))  # fmt: skip
    return {kind: study(data, space, root / f"{kind}-{seed}", sampler=sampler, pruner=pruner, trials=n,
                        epochs=epochs, seed=seed) for kind, space, sampler, pruner, n in plans}  # fmt: skip


def rank(data: Any, folder: Path, *, trials: int, epochs: int) -> list[float]:
    """Spearman correlation of the trials' best validation loss after epochs 1..epochs with their values."""
    result = search(data, SPACE, study=folder, n_trials=trials, sampler="random", pruner="none", seed=0,
                    epochs=epochs, diagnostics=False, report=False, trial_reports=False)  # fmt: skip
    curves = pd.DataFrame({r["number"]: pd.read_csv(folder / r["run_dir"] / "metrics.csv")["val_loss"].cummin()
                           for r in result.trials}).T  # rows: trials; columns: epochs (NaN after a stop)  # fmt: skip
    final = pd.Series({r["number"]: r["value"] for r in result.trials})
    return [float(curves[k].corr(final, method="spearman")) for k in range(min(epochs, curves.shape[1]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rank", action="store_true", help="the rank correlation by epoch instead")
    args = parser.parse_args()
    if args.rank:
        print("| problem | " + " | ".join(f"epoch {k + 1}" for k in range(args.epochs)) + " |")
        print("|---" * (args.epochs + 1) + "|")
        with tempfile.TemporaryDirectory() as root:
            for name in args.problems:
                data = prepare(load_dataset(name), validation=0.2, seed=0)
                rho = rank(data, Path(root) / name, trials=args.trials, epochs=args.epochs)
                print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in rho) + " |", flush=True)
        return
    print("| problem | seed | TPE best val_loss | random best | lr grid best | TPE <= both | TPE s | random s | grid s "
          "| pruned TPE / random | epochs saved TPE / random |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    best: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as root:
        for name in args.problems:
            data = prepare(load_dataset(name), validation=0.2, seed=0)
            for seed in args.seeds:
                runs = compare(data, Path(root) / name, trials=args.trials, epochs=args.epochs, seed=seed)
                t, r, g = runs["tpe"], runs["random"], runs["grid"]
                ok = "yes" if t["best"] <= min(r["best"], g["best"]) else "no"
                print(f"| {name} | {seed} | {loss(t['best'])} | {loss(r['best'])} | {loss(g['best'])} | {ok} | "
                      f"{t['seconds']:.0f} | {r['seconds']:.0f} | {g['seconds']:.0f} | {t['pruned']} / {r['pruned']} | "
                      f"{t['saved']:.0%} / {r['saved']:.0%} |", flush=True)  # fmt: skip
                print(f"<!-- {name} seed {seed} best TPE params: {t['params']}; random: {r['params']}; "
                      f"grid: {g['params']} -->", flush=True)  # fmt: skip
                for kind in METHODS:
                    best.setdefault(name, {}).setdefault(kind, []).append(runs[kind]["best"])
    if len(args.seeds) > 1:
        n = len(args.seeds)
        print(f"\n| problem | best val_loss over seeds {', '.join(map(str, args.seeds))}: TPE mean (sd, range) | random "
              "| lr grid | TPE - random: mean [mean / standard error] | TPE - grid | seeds with TPE <= both |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for name, by in best.items():
            cells = [f"{np.mean(v):.4g} ({np.std(v, ddof=1):.2g}, {min(v):.4g}-{max(v):.4g})"
                     for v in (by[k] for k in METHODS)]  # fmt: skip
            for other in ("random", "grid"):  # paired by seed: the study seed draws both methods' initialisations
                diff = np.subtract(by["tpe"], by[other])
                se = np.std(diff, ddof=1) / np.sqrt(n)
                cells.append(f"{diff.mean():.2g} [{diff.mean() / se if se > 0 else 0.0:.1f}]")
            wins = sum(t <= min(r, g) for t, r, g in zip(by["tpe"], by["random"], by["grid"]))
            print(f"| {name} | {' | '.join(cells)} | {wins} of {n} |", flush=True)


if __name__ == "__main__":
    main()
