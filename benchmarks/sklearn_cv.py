"""descend's scikit-learn estimators with their defaults against MLPClassifier / MLPRegressor with theirs, by 5-fold
cross-validation (``cross_validate``, shuffled folds with random_state 0, stratified for classification).

- descend: ``DescendClassifier()`` / ``DescendRegressor()``, every parameter at its default. They scale the
  features inside (standard, the training rows' statistics), so they get the raw features; they choose the
  number of epochs on a held-out fifth and refit on every row (``refit=True``), with one hidden layer of 100 and
  L2 of 1e-4 (``descend.sklearn.ESTIMATOR_DEFAULTS``).
- scikit-learn: ``make_pipeline(StandardScaler(), MLPClassifier(random_state=0))`` (or MLPRegressor): the
  scaling MLP's documentation asks for, so both models see standardised features.
- The categorical table goes through a ColumnTransformer first: one-hot for its text columns; the numeric columns
  pass through to descend (which scales them) and through a StandardScaler to MLP.

Tables: breast_cancer, wine, digits (accuracy), diabetes (R^2) from scikit-learn's bundled data, and a synthetic
table of 1,000 rows with three categorical columns (3, 5 and 8 levels) and two numeric ones whose binary target
depends on the categories, an interaction of a category with a number, and noise (:func:`categorical_table`).

Per table: mean and standard deviation of the five fold scores, the wall time of the whole cross-validation, and
the ratio of the mean fit times (descend / scikit-learn). One process, ``n_jobs=1``.

Run: ``flock /tmp/descend-bench.lock .venv/bin/python benchmarks/sklearn_cv.py [--tables wine,diabetes]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def categorical_table(n: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Three categorical columns and two numeric ones; the target is the sign of a noisy sum of their effects."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], n)
    city = rng.choice([f"city{k}" for k in range(5)], n)
    grade = rng.choice(list("ABCDEFGH"), n)
    income, age = rng.normal(size=n), rng.normal(size=n)
    city_effect = dict(zip([f"city{k}" for k in range(5)], [-1.0, -0.5, 0.0, 0.5, 1.0]))
    grade_effect = dict(zip("ABCDEFGH", np.linspace(1.2, -1.2, 8)))
    signal = (np.vectorize(city_effect.get)(city) + np.vectorize(grade_effect.get)(grade)
              + np.where(colour == "red", 1.0, -0.4) * income + 0.5 * age + 0.5 * rng.normal(size=n))  # fmt: skip
    frame = pd.DataFrame({"colour": colour, "city": city, "grade": grade, "income": income, "age": age})
    return frame, (signal > 0).astype(int)


def tables() -> dict[str, tuple[Callable[[], tuple[Any, Any]], str]]:
    from sklearn import datasets

    def bundled(load: Callable[..., Any]) -> Callable[[], tuple[Any, Any]]:
        return lambda: load(return_X_y=True)

    return {
        "breast_cancer": (bundled(datasets.load_breast_cancer), "classification"),
        "wine": (bundled(datasets.load_wine), "classification"),
        "digits": (bundled(datasets.load_digits), "classification"),
        "diabetes": (bundled(datasets.load_diabetes), "regression"),
        "categorical (synthetic)": (categorical_table, "classification"),
    }


def estimators(name: str, task: str) -> dict[str, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from descend.sklearn import DescendClassifier, DescendRegressor

    ours = DescendClassifier() if task == "classification" else DescendRegressor()
    theirs = MLPClassifier(random_state=0) if task == "classification" else MLPRegressor(random_state=0)
    if name.startswith("categorical"):
        text, numbers = ["colour", "city", "grade"], ["income", "age"]
        passthrough = ColumnTransformer([("text", OneHotEncoder(), text)], remainder="passthrough")
        scaled = ColumnTransformer([("text", OneHotEncoder(), text), ("numbers", StandardScaler(), numbers)])
        return {"descend": make_pipeline(passthrough, ours), "scikit-learn MLP": make_pipeline(scaled, theirs)}
    return {"descend": ours, "scikit-learn MLP": make_pipeline(StandardScaler(), theirs)}


def main() -> None:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_validate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="", help="comma-separated table names (default: all)")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    chosen = [t for t in args.tables.split(",") if t]
    print("| table | rows x features | metric | descend | scikit-learn MLP | descend CV wall s | MLP CV wall s | "
          "fit time ratio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, (load, task) in tables().items():
        if chosen and not any(name.startswith(c) for c in chosen):
            continue
        X, y = load()
        folds = (StratifiedKFold if task == "classification" else KFold)(args.folds, shuffle=True, random_state=0)
        scoring = "accuracy" if task == "classification" else "r2"
        results = {}
        for label, estimator in estimators(name, task).items():
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLP's ConvergenceWarning at its 200 iterations
                out = cross_validate(estimator, X, y, cv=folds, scoring=scoring, n_jobs=1)
            results[label] = (out["test_score"], time.perf_counter() - start, float(np.mean(out["fit_time"])))
        (ours, our_wall, our_fit), (theirs, their_wall, their_fit) = results.values()
        print(f"| {name} | {X.shape[0]} x {X.shape[1]} | {scoring} | {ours.mean():.4f} ± {ours.std():.4f} | "
              f"{theirs.mean():.4f} ± {theirs.std():.4f} | {our_wall:.1f} | {their_wall:.1f} | "
              f"{our_fit / their_fit:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
