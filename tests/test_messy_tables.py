"""Messy tables train without a flag, predict on rows with new problems, and strict mode refuses each problem.

The tables (tests/messy.py) carry gaps in numeric, categorical and boolean columns, rare and unseen categories,
dates in four formats, an identifier, a name column, a constant column, and case slips with stray whitespace.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner, Result

from descend.cli.main import cli
from descend.data import (
    CategoryError,
    ColumnError,
    ColumnMismatchError,
    DataOptionError,
    DataWarning,
    MissingValueError,
    NonNumericError,
    Preprocessor,
    prepare,
)
from tests.messy import TABLES, messy_table

ROWS = 150


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def quiet_prepare(source: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return prepare(source, **kw)


def new_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the model never saw the like of: new categories, a case slip, gaps everywhere, an extra column,
    the columns in another order."""
    new = frame.drop(columns=["y"]).head(4).copy()
    new["sex"] = ["FEMALE", "  male", None, "robot"]
    new["port"] = ["Atlantis", None, "S", "c"]
    new["age"] = pd.array([None, 30.0, None, 51.5], dtype="Float64")
    new["member"] = ["yes", None, "no", "maybe"]
    new.loc[new.index[0], "when"] = None
    new["comment"] = "new column"
    return new[list(reversed(new.columns))]


@pytest.mark.parametrize("name", list(TABLES))
def test_a_messy_table_trains_and_predicts_from_the_command_line_without_a_flag(tmp_path: Path, name: str) -> None:
    build, task = TABLES[name]
    frame = build(ROWS, 1)
    frame.to_csv(tmp_path / "train.csv", index=False)
    r = invoke("train", tmp_path / "train.csv", "--target", "y", "--epochs", "5", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert "PassengerId" in r.stderr and "name" in r.stderr  # identifiers named in a warning
    assert "'source'" in r.stderr  # the constant column too
    saved = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    decisions = saved["preprocessor"]["decisions"]
    assert any(d.startswith("date: when") for d in decisions) and any(d.startswith("boolean: member") for d in decisions)
    assert saved["task"] == task
    assert not any(f.startswith("when=") for f in saved["feature_names"])  # no one-hot of dates

    new_rows(frame).to_csv(tmp_path / "new.csv", index=False)
    r = invoke("predict", tmp_path / "run", tmp_path / "new.csv", "--out", tmp_path / "pred.csv")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("comment") == 1  # the extra column, named once
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 4 and pred["prediction"].notna().all()
    if task != "regression":
        assert set(pred["prediction"]) <= set(frame["y"])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("messy")
    messy_table(ROWS, 2, task="binary").to_csv(folder / "train.csv", index=False)
    r = invoke("train", folder / "train.csv", "--target", "y", "--epochs", "3", "--out", folder / "run")
    assert r.exit_code == 0, r.output
    return folder


def test_predict_json_without_out_puts_the_predictions_on_stdout(run: Path) -> None:
    new_rows(pd.read_csv(run / "train.csv")).to_csv(run / "new.csv", index=False)
    r = invoke("predict", run / "run", run / "new.csv", "--json", "--proba")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert len(summary["predictions"]) == 4 and set(summary["predictions"]) <= {"died", "survived"}
    p = np.array([summary["probabilities"]["died"], summary["probabilities"]["survived"]])
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-6)


def test_a_one_row_file_with_an_empty_cell_predicts(run: Path) -> None:
    one = pd.read_csv(run / "train.csv").drop(columns=["y"]).head(1)
    one["age"] = np.nan
    one.to_csv(run / "one.csv", index=False)
    r = invoke("predict", run / "run", run / "one.csv", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["predictions"]) == 1
    assert "gap" in r.stderr  # the filled gap is counted


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda f: f.drop(columns=["age"]), "missing feature column(s) 'age'"),
        (lambda f: f.assign(age="old"), "column 'age' was numeric in training but here holds text such as 'old'"),
    ],
    ids=["missing column", "text for numbers"],
)
def test_predict_refuses_a_real_problem_in_one_line(run: Path, change: Any, fragment: str) -> None:
    change(pd.read_csv(run / "train.csv").drop(columns=["y"]).head(3)).to_csv(run / "bad.csv", index=False)
    r = invoke("predict", run / "run", run / "bad.csv")
    assert r.exit_code == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and fragment in r.stderr and "Traceback" not in r.stderr


# --- the library: defaults, overrides, strict mode ---------------------------------------------------------------

def test_defaults_state_each_decision_and_handle_held_out_problems() -> None:
    frame = messy_table(200, 3, task="binary")
    frame.loc[frame.index[-20:], "port"] = "NEW"  # only in the last rows: some reach validation unseen
    with pytest.warns(DataWarning, match=r"identifiers: 'PassengerId', 'name'"):
        data = prepare(frame, target="y", seed=0)
    lines = data.decisions
    assert lines == data.preprocessor.describe() == Preprocessor.from_dict(data.preprocessor.to_dict()).describe()
    kinds = [line.split(":")[0] for line in lines]
    assert kinds[:5] == ["numeric", "boolean", "date", "categorical", "left out as identifiers (keep=[...] to use them)"]
    assert "case slips merged" in lines[3] and "'Male' -> 'male'" in lines[3]
    assert "dropped as constant over the training rows: source" in lines
    assert data.feature_names[:2] == ["age", "age.missing"]
    train = frame.iloc[data.index_train.numpy()]
    median = float(np.nanmedian(train["age"].to_numpy(dtype=float, na_value=np.nan)))
    assert data.preprocessor.columns_[2].fill == pytest.approx(median)  # age: the training median
    missing = train["age"].isna().to_numpy()
    np.testing.assert_array_equal(data.X_train[:, 1].numpy(), missing.astype(np.float32))
    assert torch.isfinite(data.X_train).all() and torch.isfinite(data.X_val).all()


def test_dates_in_three_formats_give_the_same_parts() -> None:
    days = pd.Series(pd.to_datetime(["2024-03-05", "2023-12-31", "2024-07-04", "2022-01-15"] * 5))
    parts = []
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%d %b %Y"):
        frame = pd.DataFrame({"when": days.dt.strftime(fmt), "x": np.arange(20.0) % 7, "y": np.arange(20.0)})
        data = quiet_prepare(frame, target="y", validation=0.0)
        parts.append(data.X_train[:, :5])
        assert [n for n in data.feature_names if n.startswith("when.")] == [
            "when.year", "when.month", "when.weekday", "when.yearday", "when.days"]
    torch.testing.assert_close(parts[0], parts[1], rtol=0, atol=0)
    torch.testing.assert_close(parts[0], parts[2], rtol=0, atol=0)
    raw = days.dt.year.to_numpy(dtype=float)
    want = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(parts[0][:, 0].numpy(), want, atol=1e-6)


def test_categories_trim_whitespace_merge_case_slips_and_keep_deliberate_case() -> None:
    colour = ["red"] * 10 + [" Red "] * 2 + ["blue"] * 10 + ["A"] * 6 + ["a"] * 6
    frame = pd.DataFrame({"c": colour, "y": np.arange(len(colour)) % 2})
    data = quiet_prepare(frame, target="y", validation=0.0)
    assert data.feature_names == ["c=A", "c=a", "c=blue", "c=red"]
    got = data.preprocessor.transform(pd.DataFrame({"c": ["RED", "red  ", "A", "a", "BLUE"]}))
    assert got.argmax(dim=1).tolist() == [3, 3, 0, 1, 2]


def test_rare_and_unseen_categories_go_to_the_infrequent_pool() -> None:
    c = ["x"] * 10 + ["y"] * 10 + ["rare1"] * 2 + ["rare2"]
    frame = pd.DataFrame({"c": c, "y": np.arange(len(c)) % 2})
    data = quiet_prepare(frame, target="y", validation=0.0)
    assert data.feature_names == ["c=x", "c=y", "c=(infrequent)"]
    # 'rare1' was seen (and pooled), so only 'never' counts as unseen; both land in the pool.
    with pytest.warns(DataWarning, match=r"column 'c': 1 rare or unseen value\(s\) \(e\.g\. 'never'\) encoded as '\(infrequent\)'"):
        got = data.preprocessor.transform(pd.DataFrame({"c": ["rare1", "never", "x"]}))
    assert got.tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0]]
    assert quiet_prepare(frame, target="y", validation=0.0, min_frequency=1).feature_names == [
        "c=rare1", "c=rare2", "c=x", "c=y"]
    ignore = quiet_prepare(frame, target="y", validation=0.0, min_frequency=1, unseen="ignore")
    assert ignore.preprocessor.transform(pd.DataFrame({"c": ["never"]})).sum() == 0
    refuse = quiet_prepare(frame, target="y", validation=0.0, unseen="error")
    with pytest.raises(CategoryError, match=r"category 'never' was not seen in training"):
        refuse.preprocessor.transform(pd.DataFrame({"c": ["never"]}))


@pytest.mark.parametrize(
    ("impute", "fill", "width"),
    [("median", np.median, 2), ("mean", np.mean, 2), ("drop", np.median, 1)],
)
def test_impute_choices(impute: str, fill: Any, width: int) -> None:
    a = np.array([1.0, 2.0, np.nan, 10.0, 4.0, np.nan, 7.0, 3.0, 5.0, 6.0] * 3)
    frame = pd.DataFrame({"a": a, "y": np.arange(30.0)})
    data = quiet_prepare(frame, target="y", validation=0.0, impute=impute)
    assert data.n_features == width  # a.missing only when gaps are filled
    assert data.preprocessor.columns_[0].fill == pytest.approx(float(fill(a[~np.isnan(a)])))
    assert len(data.X_train) == (24 if impute == "drop" else 30)
    with pytest.raises(MissingValueError, match=r"column 'a', row 3: value is missing"):
        prepare(frame, target="y", impute="error")
    with pytest.raises(MissingValueError, match=r"column 'a', row 3: value is missing"):
        prepare(frame, target="y", impute=None)  # None, the old spelling, refuses gaps as before


def test_drop_keep_dates_and_categorical_override_the_rules() -> None:
    frame = messy_table(100, 4, task="binary").assign(code=lambda f: np.arange(len(f)) % 3 + 1)
    data = quiet_prepare(frame, target="y", drop=["age"], keep=["name", "source"], categorical=["code"])
    names = data.feature_names
    assert "age" not in names and "code=1" in names and "source=web" in names
    assert any(n.startswith("name=") for n in names)
    as_dates = quiet_prepare(frame.assign(stamp=frame["when"]), target="y", dates=["stamp"])
    assert "stamp.year" in as_dates.feature_names
    for option, value, match in [
        ("drop", ["agee"], r"drop names 'agee', not a feature column of DataFrame"),
        ("keep", "nope", r"keep names 'nope'"),
        ("dates", ["sex"], r"column 'sex' is named in dates= but no date format reads its values"),
        ("categorical", [3], r"categorical must be a list of column names; got \[3\]"),
        ("min_frequency", 0, r"min_frequency must be an integer >= 1; got 0"),
        ("unseen", "zero", r"unseen must be one of 'infrequent', 'ignore', 'error'; got 'zero'"),
        ("impute", "zero", r"impute must be one of 'median', 'mean', 'drop', 'error'; got 'zero'"),
        ("strict", "yes", r"strict must be True or False; got 'yes'"),
    ]:
        with pytest.raises((DataOptionError, NonNumericError), match=match):
            quiet_prepare(frame, target="y", **{option: value})
    with pytest.raises(DataOptionError, match=r"drop and keep both name 'age'"):
        prepare(frame, target="y", drop=["age"], keep=["age"])


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda f: f, ColumnError, r"column 'PassengerId' looks like an identifier \(values 1\.\.100, one per row\); pass drop=\['PassengerId'\]"),
        (lambda f: f.drop(columns=["PassengerId"]), ColumnError, r"column 'name' looks like an identifier \(100 distinct values in 100 rows\)"),
        (lambda f: f.drop(columns=["PassengerId", "name", "when"]), MissingValueError, r"column 'age', line \d+: value is missing"),
        (lambda f: f.drop(columns=["PassengerId", "name"]).assign(age=1.0), NonNumericError, r"column 'when' holds dates \(e\.g\. '"),
        (lambda f: f.drop(columns=["PassengerId", "name", "when"]).assign(age=1.0), MissingValueError, r"column '(port|member)', line \d+: value is missing"),
        (lambda f: f.drop(columns=["PassengerId", "name", "when"]).assign(age="1", member="no", port="S").assign(
            age=lambda g: g["age"].where(g.index != 5, "?")), NonNumericError, r"column 'age', line 7: '\?' is not a number"),
    ],
    ids=["integer index", "nearly unique text", "numeric gap", "dates", "categorical gap", "stray word"],
)
def test_strict_refuses_each_problem(tmp_path: Path, change: Any, error: type[Exception], match: str) -> None:
    path = tmp_path / "t.csv"
    change(messy_table(100, 5, task="binary")).to_csv(path, index=False)
    with pytest.raises(error, match=match):
        quiet_prepare(path, target="y", strict=True)


def test_strict_refuses_unseen_categories_and_gaps_at_prediction_time() -> None:
    frame = pd.DataFrame({"c": ["x", "y"] * 10, "a": np.arange(20.0) % 5, "y": np.arange(20) % 2})
    data = prepare(frame, target="y", validation=0.0, strict=True)
    with pytest.raises(CategoryError, match=r"category 'z' was not seen in training"):
        data.preprocessor.transform(pd.DataFrame({"c": ["z"], "a": [1.0]}))
    with pytest.raises(MissingValueError, match=r"column 'a', row 2: value is missing"):
        data.preprocessor.transform(pd.DataFrame({"c": ["x", "x"], "a": [1.0, np.nan]}))
    with pytest.raises(ColumnMismatchError, match=r"column 'c' was categorical in training but here holds numbers"):
        data.preprocessor.transform(pd.DataFrame({"c": [1.0], "a": [1.0]}))


def test_a_target_gap_drops_the_row_unless_strict() -> None:
    frame = pd.DataFrame({"a": np.arange(20.0) % 7, "y": [0.5, np.nan, *np.arange(18.0)]})
    with pytest.warns(DataWarning, match=r"target: 1 row\(s\) without a target value left out"):
        data = prepare(frame, target="y", validation=0.0)
    assert len(data.X_train) == 19 and "target: 1 row(s) without a target value left out" in data.decisions
    with pytest.raises(MissingValueError, match=r"target 'y', row 2: value is missing"):
        prepare(frame, target="y", strict=True)


def test_fit_trains_a_messy_table_with_its_defaults(tmp_path: Path) -> None:
    import descend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = descend.fit("mlp", messy_table(120, 6, task="regression"), target="y", epochs=2, seed=0,
                             run_dir=tmp_path / "run")
    saved = descend.load(tmp_path / "run")
    assert saved.preprocessor is not None and saved.preprocessor.describe()[0].startswith("numeric: age")
    assert result is not None
