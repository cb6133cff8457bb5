"""descend's defaults against a scikit-learn pipeline on messy tables, by 5-fold cross-validation.

The tables (tests/messy.py) carry gaps, rare and unseen categories, case slips and stray whitespace, dates,
booleans, an identifier, a name column and a constant column. Each fold trains on four fifths and scores the fifth:

- descend: ``descend.fit("mlp", train_rows, target="y")`` with every option at its default, scored on the held-out
  fifth through the saved preprocessing (``descend.evaluate``): accuracy, or R^2 for regression.
- scikit-learn: ColumnTransformer[SimpleImputer(median, add_indicator) + StandardScaler on the numeric columns;
  SimpleImputer(most_frequent) + OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5) on the text
  columns] + MLPClassifier / MLPRegressor with their defaults (random_state=0). It gets the columns a person
  would hand it: the numeric ones and the text ones, dates left as text (one-hot) and the identifier left out.

Run: ``flock /tmp/descend-bench.lock .venv/bin/python benchmarks/messy_tables.py [--rows 600] [--folds 5]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.messy import TABLES


def sklearn_pipeline(task: str, numeric: list[str], text: list[str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5)), text),
    ])  # fmt: skip
    model = MLPRegressor(random_state=0) if task == "regression" else MLPClassifier(random_state=0)
    return Pipeline([("columns", columns), ("model", model)])


def score_sklearn(train: pd.DataFrame, test: pd.DataFrame, task: str) -> float:
    from sklearn.metrics import accuracy_score, r2_score

    numeric = ["age"]
    text = ["sex", "port", "member", "when", "source"]

    def clean(f: pd.DataFrame) -> pd.DataFrame:
        out = f[numeric + text].copy()
        out["age"] = out["age"].astype(float)
        out[text] = out[text].astype(object).where(out[text].notna(), np.nan)
        return out

    pipe = sklearn_pipeline(task, numeric, text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(clean(train), train["y"])
        pred = pipe.predict(clean(test))
    return float(r2_score(test["y"], pred) if task == "regression" else accuracy_score(test["y"], pred))


def score_descend(train: pd.DataFrame, test: pd.DataFrame, task: str, seed: int) -> float:
    import descend

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit("mlp", train.reset_index(drop=True), target="y", seed=seed, run_dir=Path(tmp) / "run")
        ev = descend.evaluate(Path(tmp) / "run", test.reset_index(drop=True))
    value = ev.metrics["r2" if task == "regression" else "accuracy"]
    assert value is not None
    return float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    from sklearn.model_selection import KFold

    print("| table | rows | metric | descend defaults | scikit-learn pipeline | descend - sklearn |")
    print("|---|---:|---|---:|---:|---:|")
    start = time.perf_counter()
    for name, (build, task) in TABLES.items():
        frame = build(args.rows, 0)
        ours, theirs = [], []
        for k, (tr, te) in enumerate(KFold(args.folds, shuffle=True, random_state=0).split(frame)):
            ours.append(score_descend(frame.iloc[tr], frame.iloc[te], task, seed=k))
            theirs.append(score_sklearn(frame.iloc[tr], frame.iloc[te], task))
        a, b = np.array(ours), np.array(theirs)
        metric = "R^2" if task == "regression" else "accuracy"
        print(f"| {name} | {args.rows} | {metric} | {a.mean():.3f} ± {a.std():.3f} | {b.mean():.3f} ± {b.std():.3f} "
              f"| {a.mean() - b.mean():+.3f} |", flush=True)
    print(f"\n{args.folds}-fold cross-validation, mean ± standard deviation over folds; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
