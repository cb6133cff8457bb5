"""Early stopping for classification: monitor validation accuracy or validation loss?

For each dataset and seed, ``descend.fit("mlp", data, ...)`` runs three times with every other option at its
default (Adam at its default rate, batch 32, 100 epochs, patience 10, best weights restored, divergence guard and
diagnostics on), changing only the early-stopping monitor:

- ``val_loss``: ``EarlyStopping(monitor="val_loss")``, fit's default;
- ``val_accuracy``: ``EarlyStopping(monitor="val_accuracy", tie_break=None)``; an epoch that only ties the best
  accuracy is not an improvement (``min_delta=0``, strict ``>``), so the first epoch to reach it is kept;
- ``val_accuracy, ties→val_loss``: ``EarlyStopping(monitor="val_accuracy")``, whose tie-break (the default for
  a metric where larger is better) lets an epoch improve when its accuracy is higher, or equal with a lower
  validation loss than at the best epoch so far.

The three runs of one (dataset, seed) share the seed, hence the split, the initialisation and the batch order:
their trajectories are identical until the first of them stops, and they differ only in where they stop and which
epoch's weights they keep. The score is the accuracy of the returned model (best epoch's weights) on a test set
that no monitor sees, so the paired difference (monitor minus ``val_loss``) per seed isolates the choice.

Data (the seed changes the split where there is one, and always the initialisation and batch order):

- ``digits``, ``wine``, ``breast_cancer``: ``descend.data.prepare(load_dataset(name), validation=0.2, test=0.2,
  seed=seed)`` (stratified split, scaling fitted on the training rows).
- ``mnist1d``: generated offline by the ``mnist1d`` package with its default arguments (``load_dataset("mnist1d")``
  calls ``make_dataset(get_dataset_args())``; its first 4000 rows are the package's training split and the last
  1000 its test split). The 4000 training rows go through ``prepare(..., validation=0.2, seed=seed)``; the 1000
  test rows are encoded with the fitted preprocessor and are the same for every seed.

Accuracy follows ``descend.metrics``: argmax of the logits for multiclass, logit > 0 for binary.

    flock /tmp/descend-bench.lock .venv/bin/python benchmarks/monitor_default.py              # markdown on stdout
    .venv/bin/python benchmarks/monitor_default.py --seeds 5 --datasets wine breast_cancer
    .venv/bin/python benchmarks/monitor_default.py --json runs.json                            # and every run

One process; fit uses one torch thread for these small models. About 15 s a seed over the four datasets on a
2-core x86_64 machine.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass

import torch

import descend
from descend.data import DataWarning, PreparedData, load_dataset, prepare
from descend.metrics import evaluate
from descend.train import ConvergenceWarning, EarlyStopping

DATASETS = ("digits", "wine", "breast_cancer", "mnist1d")
MONITORS = ("val_loss", "val_accuracy", "val_accuracy, ties→val_loss")
BASELINE = "val_loss"
MNIST1D_TRAIN = 4000  # rows of the package's own training split (train_split=0.8 of 5000)


def stopper(monitor: str) -> EarlyStopping:
    if monitor == MONITORS[1]:
        return EarlyStopping(monitor="val_accuracy", tie_break=None)
    return EarlyStopping(monitor="val_accuracy" if monitor == MONITORS[2] else monitor)


@dataclass
class Run:
    dataset: str
    seed: int
    monitor: str
    test_accuracy: float
    epochs: int  # epochs trained
    best_epoch: int | None  # the epoch whose weights were restored
    stop_reason: str
    best_val_accuracy: float  # the best validation accuracy over the epochs trained
    epochs_at_best_val_accuracy: int  # epochs trained whose validation accuracy equals that best
    val_rows: int
    test_rows: int
    seconds: float


def load(name: str, seed: int) -> tuple[PreparedData, torch.Tensor, torch.Tensor]:
    """The prepared data (train/validation split drawn with ``seed``) and the test set's features and labels."""
    ds = load_dataset(name)
    if name != "mnist1d":
        data = prepare(ds, validation=0.2, test=0.2, seed=seed)
        assert data.X_test is not None and data.y_test is not None
        return data, data.X_test, data.y_test
    train, test = ds.frame.iloc[:MNIST1D_TRAIN], ds.frame.iloc[MNIST1D_TRAIN:]
    data = prepare(train, target=ds.target, validation=0.2, seed=seed)
    X_test = data.preprocessor.transform(test)
    index = {c: i for i, c in enumerate(data.classes)}
    y_test = torch.tensor([index[c] for c in test[ds.target].tolist()], dtype=torch.int64)
    return data, X_test, y_test


def run_one(
    name: str, seed: int, monitor: str, data: PreparedData, X_test: torch.Tensor, y_test: torch.Tensor
) -> Run:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a run that uses all 100 epochs
        result = descend.fit("mlp", data, early_stopping=stopper(monitor), progress=False, seed=seed)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        test_accuracy = evaluate(result.model(X_test), y_test, data.task, ["accuracy"])["accuracy"]
    accuracies = [row["val_accuracy"] for row in result.history]
    best = max(accuracies)
    return Run(name, seed, monitor, test_accuracy, result.epochs, result.best_epoch, result.stop_reason, best,
               sum(a == best for a in accuracies), len(data.X_val), len(X_test), seconds)  # fmt: skip


def mean_sd(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    m = statistics.fmean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def ci95(values: list[float], scale: float = 100.0) -> str:
    """The mean's 95% confidence interval (Student's t), in percentage points."""
    if len(values) < 2:
        return "—"
    from scipy import stats

    m = statistics.fmean(values) * scale
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) * scale / math.sqrt(len(values))
    return f"[{m - half:+.2f}, {m + half:+.2f}]"


def tally(diffs: list[float]) -> str:
    """Seeds where the monitor's test accuracy was higher / equal / lower than val_loss's."""
    eps = 1e-12
    return f"{sum(d > eps for d in diffs)}/{sum(abs(d) <= eps for d in diffs)}/{sum(d < -eps for d in diffs)}"


def report(runs: list[Run], datasets: list[str], seeds: list[int]) -> str:
    by = {(r.dataset, r.seed, r.monitor): r for r in runs}
    lines = [
        "| dataset (val / test rows) | monitor | test accuracy % | epochs trained | best epoch | ran all 100 | Δ test acc "
        "vs val_loss, pp (mean ± sd) | 95% CI of Δ | higher/equal/lower |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pooled: dict[str, list[float]] = {m: [] for m in MONITORS[1:]}
    for name in datasets:
        first = by[(name, seeds[0], BASELINE)]
        label = f"{name} ({first.val_rows} / {first.test_rows})"
        for monitor in MONITORS:
            rs = [by[(name, s, monitor)] for s in seeds]
            acc = mean_sd([r.test_accuracy for r in rs], 100.0, 2)
            epochs = mean_sd([float(r.epochs) for r in rs], 1.0, 1)
            best = mean_sd([float(r.best_epoch or 0) for r in rs], 1.0, 1)
            capped = f"{sum(r.stop_reason == 'max_epochs' for r in rs)}/{len(rs)}"
            if monitor == BASELINE:
                delta = ci = wtl = "—"
            else:
                diffs = [
                    by[(name, s, monitor)].test_accuracy - by[(name, s, BASELINE)].test_accuracy
                    for s in seeds
                ]
                pooled[monitor] += diffs
                delta, ci, wtl = f"{mean_sd(diffs, 100.0, 2)}", ci95(diffs), tally(diffs)
            lines.append(
                f"| {label} | {monitor} | {acc} | {epochs} | {best} | {capped} | {delta} | {ci} | {wtl} |"
            )
            label = ""
    if len(datasets) > 1:
        for monitor, diffs in pooled.items():
            lines.append(f"| all ({len(diffs)} pairs) | {monitor} | | | | | {mean_sd(diffs, 100.0, 2)} | {ci95(diffs)} | "
                         f"{tally(diffs)} |")  # fmt: skip

    lines += [
        "",
        'Ties on validation accuracy (the `val_accuracy` runs; an epoch "at best" has exactly the best validation '
        "accuracy of its run):",
        "",
        "| dataset | one val row, pp | best val accuracy % | runs with the best reached 2+ times | epochs at best | "
        "runs at 100% val | seeds where the tie-break changed the kept epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in datasets:
        rs = [by[(name, s, "val_accuracy")] for s in seeds]
        tb = [by[(name, s, MONITORS[2])] for s in seeds]
        changed = sum(a.best_epoch != b.best_epoch for a, b in zip(rs, tb))
        lines.append(
            f"| {name} | {100.0 / rs[0].val_rows:.2f} | {mean_sd([r.best_val_accuracy for r in rs], 100.0, 2)} | "
            f"{sum(r.epochs_at_best_val_accuracy > 1 for r in rs)}/{len(rs)} | "
            f"{mean_sd([float(r.epochs_at_best_val_accuracy) for r in rs], 1.0, 1)} | "
            f"{sum(r.best_val_accuracy == 1.0 for r in rs)}/{len(rs)} | {changed}/{len(rs)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 per dataset (default 20)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), metavar="NAME",
                        help=f"any of {', '.join(DATASETS)} (default: all)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the spread needs two)")
    seeds = list(range(args.seeds))
    runs: list[Run] = []
    start = time.perf_counter()
    for name in args.datasets:
        for seed in seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)  # digits' constant pixels, dropped
                data, X_test, y_test = load(name, seed)
            for monitor in MONITORS:
                runs.append(run_one(name, seed, monitor, data, X_test, y_test))
        print(f"{name}: done, {time.perf_counter() - start:.0f} s so far", file=sys.stderr)
    total = time.perf_counter() - start
    print(report(runs, args.datasets, seeds))
    print()
    print(f"{len(seeds)} seeds (0..{len(seeds) - 1}) per dataset, {len(runs)} fits, {total:.0f} s; "
          f"Python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}.")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in runs], f, indent=1)


if __name__ == "__main__":
    main()
