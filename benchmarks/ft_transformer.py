"""The FT-Transformer against the MLP on four tables: score and seconds per epoch.

Each table (digits, wine, breast_cancer, diabetes) is split by ``descend.data.prepare`` into 60% training,
20% validation (early stopping) and 20% test rows (stratified for classes, from the seed); ``descend.fit``
trains each model with ``lr="auto"`` (the range test's choice) and its other defaults (Adam, batch 32, up to
100 epochs, early stopping on the validation loss, the best epoch's weights kept); the test rows are scored
once, by accuracy (R^2 for diabetes). Seconds per epoch: the median of the epochs' own times in the fit's
history (training steps and the epoch's validation; the range test not included).

    .venv/bin/python benchmarks/ft_transformer.py [--seeds 1] [--tables digits wine ...] [--epochs 100] [--threads auto]
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np
import torch

SPECS = ("mlp:256,256", "ftt:layers=3,dim=64,heads=8")
TABLES = ("digits", "wine", "breast_cancer", "diabetes")


def score(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, regression: bool) -> float:
    with torch.no_grad():
        out = model.eval()(X)
    if regression:
        pred = out.reshape(-1).double()
        truth = y.reshape(-1).double()
        return float(1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())
    labels = out.argmax(1) if out.shape[1] > 1 else (out.reshape(-1) > 0).long()
    return float((labels == y.reshape(-1)).double().mean())


def main() -> None:
    import descend
    from descend.data import load_dataset, prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--tables", nargs="*", default=list(TABLES))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", default="auto", help="fit's threads: auto, or a number (1 on a shared machine)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"load average at start: {os.getloadavg()[0]:.2f}, torch threads {torch.get_num_threads()}")
    print("| table | model | parameters | test score | epochs (best) | s / epoch (median) |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.tables:
        table = load_dataset(name)
        regression = name == "diabetes"
        for spec in SPECS:
            scores, per_epoch, epochs, best, params = [], [], [], [], 0
            for seed in range(args.seeds):
                data = prepare(table, validation=0.2, test=0.2, seed=seed)
                result = descend.fit(spec, data, lr="auto", seed=seed, progress=False, epochs=args.epochs,
                                     threads=args.threads if args.threads == "auto" else int(args.threads),
                                     metrics=["r2"] if regression else None)  # fmt: skip
                per_epoch.append(float(np.median([row["time"] for row in result.history])))
                scores.append(score(result.model, data.X_test, data.y_test, regression))
                epochs.append(result.epochs)
                best.append(result.best_epoch or result.epochs)
                params = sum(p.numel() for p in result.model.parameters())
            print(f"| {name} | `{spec}` | {params:,} | {np.mean(scores):.4f} | {np.mean(epochs):.0f} "
                  f"({np.mean(best):.0f}) | {np.mean(per_epoch):.3f} |", flush=True)  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
