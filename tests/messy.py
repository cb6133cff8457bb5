"""Messy tables, generated: gaps, rare and unseen categories, dates in several formats, identifiers, constant
columns, booleans, stray whitespace and case slips. Shared by the tests and benchmarks/messy_tables.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["TABLES", "messy_table"]


def _dates(rng: np.random.Generator, n: int, fmt: str) -> tuple[pd.Series, np.ndarray]:
    days = rng.integers(0, 3 * 365, n)
    when = pd.Timestamp("2022-01-01") + pd.to_timedelta(days, unit="D")
    if "%H" in fmt:
        when = when + pd.to_timedelta(rng.integers(0, 24 * 60, n), unit="min")
    return pd.Series(when.strftime(fmt)), days / 365.0


def messy_table(n: int, seed: int, *, task: str, date_format: str = "%Y-%m-%d", classes: int = 2,
                noise: float = 0.3) -> pd.DataFrame:
    """A table whose target depends on a numeric column with gaps, a categorical column (with case slips,
    whitespace, gaps and rare values), a boolean and a date; plus an identifier, a name, a constant column."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n)
    sex = rng.choice(["male", "female"], n)
    port = rng.choice(["S", "C", "Q"], n, p=[0.6, 0.25, 0.15])
    member = rng.random(n) < 0.4
    when, years = _dates(rng, n, date_format)
    signal = (
        (age - 40) / 12 + np.where(sex == "female", 1.0, -1.0) + np.select([port == "C", port == "Q"], [0.8, -0.5], 0.0)
        + np.where(member, 0.7, -0.3) + 0.8 * (years - 1.5) + noise * rng.normal(size=n)
    )  # fmt: skip
    if task == "regression":
        y: np.ndarray = 10 * signal + 50
    elif classes == 2:
        y = np.where(signal > 0, "survived", "died")
    else:
        y = np.array(["low", "mid", "high"])[np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))]
    messy_sex = np.where(rng.random(n) < 0.06, np.char.add(np.char.capitalize(sex), " "), sex).astype(object)
    messy_port = port.astype(object)
    messy_port[rng.random(n) < 0.05] = None
    messy_port[rng.random(n) < 0.02] = "Z"  # a rare category
    ages = np.round(age, 1).astype(object)
    ages[rng.random(n) < 0.15] = None
    flags = np.where(member, "yes", "no").astype(object)
    flags[rng.random(n) < 0.03] = None
    return pd.DataFrame({
        "PassengerId": np.arange(1, n + 1),
        "name": [f"Passenger {i:05d} {rng.choice(['Ann', 'Bo', 'Cy'])}" for i in range(n)],
        "age": pd.array(ages, dtype="Float64"),
        "sex": messy_sex,
        "port": messy_port,
        "member": flags,
        "when": when,
        "source": "web",
        "y": y,
    })  # fmt: skip


def _table(task: str, **kw: object) -> Callable[[int, int], pd.DataFrame]:
    return lambda n, seed: messy_table(n, seed, task=task, **kw)  # type: ignore[arg-type]


#: name -> (builder(n, seed), task): six tables, three date formats, binary, multiclass and regression.
TABLES: dict[str, tuple[Callable[[int, int], pd.DataFrame], str]] = {
    "binary, ISO dates": (_table("binary"), "binary"),
    "binary, 03/05/2024 dates": (_table("binary", date_format="%m/%d/%Y"), "binary"),
    "multiclass, 5 Mar 2024 dates": (_table("multiclass", classes=3, date_format="%d %b %Y"), "multiclass"),
    "multiclass, datetimes": (_table("multiclass", classes=3, date_format="%Y-%m-%d %H:%M"), "multiclass"),
    "regression, ISO dates": (_table("regression"), "regression"),
    "regression, 03/05/2024 dates": (_table("regression", date_format="%m/%d/%Y", noise=0.6), "regression"),
}
