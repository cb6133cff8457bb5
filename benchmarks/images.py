"""Signals and images from the command line: mnist1d (softmax, MLP, 1-D CNN) and scikit-learn's digits as 8x8
images (2-D CNN), with ``--lr auto`` and the model spec the only choices; and the tabular ResNet against the MLP.

- ``mnist1d``: generated offline by the installed ``mnist1d`` package's procedural generator with its default
  arguments (``make_dataset(get_dataset_args())``), on the package's own split: 4000 training signals (descend holds
  20% of them out for validation and early stopping) and 1000 test signals. Each model is trained by
  ``descend train mnist1d_train.npz --target y --model SPEC --lr auto --seed S`` and scored by
  ``descend evaluate RUN mnist1d_test.npz``.
- ``digits``: ``sklearn.datasets.load_digits`` images as N x 1 x 8 x 8, a stratified 80/20 split (seed 0); the test
  images are scored by ``descend evaluate``.
- ``tabular``: ``mlp`` against ``mlp:...,residual=true`` with the same widths on digits, wine, breast_cancer,
  diabetes and mnist1d-as-table, from Python's ``descend.fit`` with ``lr="auto"``: validation score (accuracy or
  R^2) at the best epoch, and seconds per epoch.

Run: ``flock /tmp/descend-bench.lock python benchmarks/images.py [mnist1d|digits|tabular] [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DESCEND = [str(Path(sys.executable).parent / "descend")]
# mlp:256,256 as a user would first write it; the dropout MLP chosen by validation accuracy (seed 0) among a few
# specs with dropout, layer norm and widths (docs/benchmarks.md lists them)
MNIST1D = ["softmax", "mlp:256,256", "mlp:256,256,256,dropout=0.3", "cnn1d:32,64,128"]


def cli(*args: str) -> str:
    done = subprocess.run([*DESCEND, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"descend {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def train_and_score(train: Path, test: Path, spec: str, seed: int, work: Path) -> tuple[float, float]:
    """Test accuracy and wall seconds of ``descend train`` (the evaluation not counted)."""
    run = work / f"{spec.replace(':', '_').replace(',', '_').replace('=', '_')}-{seed}"
    start = time.perf_counter()
    cli("train", str(train), "--target", "y", "--model", spec, "--lr", "auto", "--seed", str(seed), "--out",
        str(run), "-q")  # fmt: skip
    wall = time.perf_counter() - start
    scored = json.loads(cli("evaluate", str(run), str(test), "--json"))
    return float(scored["metrics"]["accuracy"]), wall


def report(name: str, specs: list[str], train: Path, test: Path, seeds: int, work: Path) -> None:
    print(f"\n{name}: mean (min-max) test accuracy over seeds 0..{seeds - 1}, wall seconds per run")
    for spec in specs:
        results = [train_and_score(train, test, spec, s, work) for s in range(seeds)]
        acc = [a for a, _ in results]
        walls = [w for _, w in results]
        print(f"  {spec:<22} {100 * np.mean(acc):6.2f}%  ({100 * min(acc):.1f}-{100 * max(acc):.1f})  "
              f"{np.mean(walls):6.1f} s  each: {', '.join(f'{100 * a:.1f}' for a in acc)}", flush=True)  # fmt: skip


def mnist1d(seeds: int, work: Path, specs: list[str] | None = None) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    np.savez(work / "mnist1d_train.npz", X=d["x"].astype(np.float32), y=d["y"])
    np.savez(work / "mnist1d_test.npz", X=d["x_test"].astype(np.float32), y=d["y_test"])
    report("mnist1d", specs or MNIST1D, work / "mnist1d_train.npz", work / "mnist1d_test.npz", seeds, work)


def digits(seeds: int, work: Path) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = d.images[:, None].astype(np.float32)
    tr, te = train_test_split(np.arange(len(X)), test_size=0.2, stratify=d.target, random_state=0)
    np.savez(work / "digits_train.npz", X=X[tr], y=d.target[tr])
    np.savez(work / "digits_test.npz", X=X[te], y=d.target[te])
    report("digits (8x8 images)", ["cnn"], work / "digits_train.npz", work / "digits_test.npz", seeds, work)


def tabular(seeds: int) -> None:
    import descend
    from descend.data import load_dataset

    print("\ntabular: validation score at the best epoch (accuracy; R^2 for diabetes), seconds per epoch")
    for name in ("digits", "wine", "breast_cancer", "diabetes", "mnist1d"):
        data = load_dataset(name)
        for spec in ("mlp:256,256", "mlp:256,256,residual=true,dropout=0.1"):
            scores, per_epoch = [], []
            for seed in range(seeds):
                start = time.perf_counter()
                result = descend.fit(spec, data, target=data.target, lr="auto", seed=seed, progress=False,
                                     metrics=["r2"] if name == "diabetes" else None)  # fmt: skip
                per_epoch.append((time.perf_counter() - start) / result.epochs)
                key = "val_r2" if name == "diabetes" else "val_accuracy"
                best = result.best_epoch or result.epochs
                scores.append(result.history[best - 1][key])
            print(f"  {name:<14} {spec:<40} {np.mean(scores):.4f}  {1000 * np.mean(per_epoch):7.1f} ms/epoch",
                  flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="*", default=["mnist1d", "digits", "tabular"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--specs", nargs="*", help="mnist1d's models (default: the four of the table)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for part in args.parts:
            if part == "tabular":
                tabular(args.seeds)
            elif part == "mnist1d":
                mnist1d(args.seeds, work, args.specs)
            else:
                digits(args.seeds, work)


if __name__ == "__main__":
    main()
