"""descend.tune.search and descend search: grid coverage, seeded repetition, pruning, the study folder, bad input.

Each trial trains on a small made-up regression table for one to four epochs, so a study of a dozen trials
takes seconds. Multi-process, kill and PostgreSQL tests are in test_search_workers.py.
"""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from descend.cli.main import cli
from descend.errors import ConfigError
from descend.tune.search import CategoricalDistribution, FloatDistribution, search
from descend.tune.space import parse_word, parse_words
from descend.tune.study import best_run

FAST = {"diagnostics": False, "trial_reports": False, "report": False}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=240)
    return pd.DataFrame({**{f"x{j}": X[:, j] for j in range(4)}, "y": y})


@pytest.fixture(scope="module")
def table_file(tmp_path_factory: pytest.TempPathFactory, table: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("data") / "table.csv"
    table.to_csv(path, index=False)
    return path


def _rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _rows(folder: Path) -> list[dict[str, str]]:
    return _rows_of(folder / "trials.csv")


def test_grid_over_3x2_runs_each_combination_once(table: pd.DataFrame, tmp_path: Path) -> None:
    space = {"lr": CategoricalDistribution([1e-3, 1e-2, 1e-1]), "batch_size": CategoricalDistribution([16, 64])}
    result = search(table, space, study=tmp_path / "grid", sampler="grid", pruner="none", target="y", epochs=1,
                    **FAST)
    pairs = [(r["lr"], r["batch_size"]) for r in result.trials]
    assert len(pairs) == 6 and set(pairs) == {(a, b) for a in (1e-3, 1e-2, 1e-1) for b in (16, 64)}
    assert [r["state"] for r in result.trials] == ["complete"] * 6
    assert len({r["run_dir"] for r in result.trials}) == 6
    for r in result.trials:  # each trial a run folder that trained with its parameters
        config = json.loads((tmp_path / "grid" / r["run_dir"] / "config.json").read_text())
        assert (config["arguments"]["lr"], config["arguments"]["batch_size"]) == (r["lr"], r["batch_size"])


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_same_seed_repeats_the_parameter_sequence(table: pd.DataFrame, tmp_path: Path, sampler: str) -> None:
    # 12 trials: TPE's first 10 are its random start-up, the last two come from its model of the first ten
    space = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "weight_decay": FloatDistribution(0.0, 1e-2)}
    runs = [search(table, space, study=tmp_path / f"{sampler}{i}", sampler=sampler, pruner="none", seed=7,
                   n_trials=12, target="y", epochs=1, **FAST) for i in range(2)]  # fmt: skip
    first, second = ([(r["lr"], r["weight_decay"], r["value"]) for r in run.trials] for run in runs)
    assert first == second
    other = search(table, space, study=tmp_path / f"{sampler}-other", sampler=sampler, pruner="none", seed=8,
                   n_trials=3, target="y", epochs=1, **FAST)
    assert [r["lr"] for r in other.trials] != [r[0] for r in first[:3]]


def test_median_pruner_prunes_the_bad_half(table: pd.DataFrame, tmp_path: Path) -> None:
    # plain SGD: rates under ~1e-3 barely move in 4 epochs (the bad half of the log range), the rest learn
    space = {"lr": FloatDistribution(1e-6, 1e-0, log=True)}
    result = search(table, space, study=tmp_path / "median", sampler="random", pruner="median", seed=0, n_trials=12,
                    target="y", optimizer="sgd", epochs=4, early_stopping=False, **FAST)  # fmt: skip
    states = [r["state"] for r in result.trials]
    pruned = [r for r in result.trials if r["state"] == "pruned"]
    assert states.count("pruned") >= len(states) / 3, states
    assert all(r["epochs"] < 4 for r in pruned)
    best = result.best
    assert best is not None and best["lr"] > 1e-3


def _curves(folder: Path, rows: list[dict[str, Any]]) -> dict[int, list[float]]:
    """Each trial's validation loss after each epoch, from its run folder's metrics.csv."""
    return {r["number"]: [float(m["val_loss"]) for m in _rows_of(folder / r["run_dir"] / "metrics.csv")]
            for r in rows}  # fmt: skip


def test_median_pruner_waits_for_its_start_up_and_warm_up(table: pd.DataFrame, tmp_path: Path) -> None:
    # the median rule written out, as the oracle: once `trials` trials have completed, a trial stops at the first
    # epoch e >= `epochs` where its best value so far is above the median of the completed trials' values at e
    trials, epochs, most = 4, 2, 5
    result = search(table, {"lr": FloatDistribution(1e-6, 1e-0, log=True)}, study=tmp_path / "s", sampler="random",
                    pruner="median", prune_after_trials=trials, prune_after_epochs=epochs, seed=0, n_trials=12,
                    target="y", optimizer="sgd", epochs=most, early_stopping=False, tol=None, **FAST)  # fmt: skip
    curves = _curves(tmp_path / "s", result.trials)
    complete: list[int] = []
    for r in result.trials:
        curve, stop = curves[r["number"]], None
        if len(complete) >= trials:
            stop = next((e for e in range(epochs, most + 1)
                         if min(curve[:e]) > np.median([curves[c][e - 1] for c in complete])), None)  # fmt: skip
        assert (r["state"], r["epochs"]) == (("pruned", stop) if stop else ("complete", most)), r
        if stop is None:
            complete.append(r["number"])
    assert [r["state"] for r in result.trials[:trials]] == ["complete"] * trials
    assert any(r["state"] == "pruned" for r in result.trials)  # the rule was exercised, not only waited for


def test_hyperband_judges_a_trial_after_its_smallest_rung(table: pd.DataFrame, tmp_path: Path) -> None:
    result = search(table, {"lr": FloatDistribution(1e-6, 1e-0, log=True)}, study=tmp_path / "s", sampler="random",
                    pruner="hyperband", prune_after_epochs=2, seed=0, n_trials=12, target="y", optimizer="sgd",
                    epochs=6, early_stopping=False, tol=None, **FAST)  # fmt: skip
    assert all(r["epochs"] >= 2 for r in result.trials if r["state"] == "pruned"), result.trials


def test_the_command_line_copies_the_search_settings_and_keeps_a_study_s_own(table_file: Path,
                                                                             tmp_path: Path) -> None:
    from descend.cli import _search
    from descend.tune import search as library

    assert (_search.SAMPLERS, _search.PRUNERS, _search.PRUNE_AFTER) == (library.SAMPLERS, library.PRUNERS,
                                                                         library.PRUNE_AFTER)  # fmt: skip
    first = _cli(str(table_file), "--target", "y", "--study", "s", "--param", "lr=log:1e-3:1e-1", "--trials", "1",
                 "--epochs", "1", "--prune-after-trials", "2", "--prune-after-epochs", "4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    held = json.loads((tmp_path / "s" / "study.json").read_text())["identity"]
    assert held["prune_after"] == {"trials": 2, "epochs": 4}
    again = _cli("--study", "s", "--trials", "2", cwd=tmp_path)  # continued: its own warm-up, not the defaults
    assert again.returncode == 0 and len(_rows(tmp_path / "s")) == 2, again.stderr
    other = _cli("--study", "s", "--trials", "3", "--prune-after-epochs", "1", cwd=tmp_path)
    assert other.returncode == 2 and "holds another study (its prune_after" in other.stderr


def test_study_folder_trials_csv_and_report(table_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    result = search(table_file, {"lr": FloatDistribution(1e-3, 1e-1, log=True)}, study=folder, n_trials=3,
                    pruner="none", target="y", epochs=2, diagnostics=False)  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == [".trials.lock", "heartbeats", "journal.log", "report.html",
                                                        "study.json", "trials", "trials.csv"]  # fmt: skip
    rows = _rows(folder)
    assert [r["number"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"complete"}
    for r in rows:
        run = folder / r["run_dir"]
        assert {"config.json", "metrics.csv", "model", "report.html", "summary.json"} <= {p.name for p in run.iterdir()}
        assert float(r["value"]) == json.loads((run / "summary.json").read_text())["final"]["val_loss"]
    page = (folder / "report.html").read_text()
    assert "Optimization history" in page and "Best trial" in page and "http" not in page.split("<main>")[1]
    assert result.best_run == folder / min(rows, key=lambda r: float(r["value"]))["run_dir"] == best_run(folder)
    record = json.loads((folder / "study.json").read_text())
    assert record["identity"]["space"] == {"lr": "log:0.001:0.1"} and "python" in record["environment"]
    # run again: it continues the same study to a larger number of trials
    more = search(table_file, {"lr": FloatDistribution(1e-3, 1e-1, log=True)}, study=folder, n_trials=5,
                  pruner="none", target="y", epochs=2, diagnostics=False, report=False)  # fmt: skip
    assert [r["number"] for r in more.trials] == [0, 1, 2, 3, 4]
    # the study folder serves as a model: predict and evaluate take its best trial
    best = best_run(folder)
    for command in (["predict", str(folder), str(table_file), "--json"],
                    ["predict", str(best), str(table_file), "--json"]):  # fmt: skip
        r = CliRunner().invoke(cli, command)
        assert r.exit_code == 0, r.output
        predictions = json.loads(r.stdout)["predictions"]
        if command[1] == str(folder):
            from_study = predictions
    assert from_study == predictions and len(predictions) == len(pd.read_csv(table_file))
    r = CliRunner().invoke(cli, ["evaluate", str(folder), str(table_file), "--json"])
    assert r.exit_code == 0 and "r2" in json.loads(r.stdout)["metrics"], r.output


def test_study_report_states_the_warm_up_and_the_epochs_pruning_saved(tmp_path: Path) -> None:
    from descend.report.study import study_report

    identity = {"space": {"lr": "log:0.001:0.1"}, "sampler": "tpe", "pruner": "median", "monitor": "val_loss",
                "direction": "minimize", "options": {"epochs": 10}, "prune_after": {"trials": 5, "epochs": 3}}
    (tmp_path / "study.json").write_text(json.dumps({"identity": identity}))
    (tmp_path / "trials.csv").write_text("number,state,value,lr,epochs,seconds,run_dir\n0,complete,0.5,0.01,10,1.0,"
                                         "trials/0000\n1,pruned,,0.09,3,0.4,trials/0001\n2,pruned,,0.05,6,0.6,"
                                         "trials/0002\n")  # fmt: skip
    page = study_report(tmp_path).read_text()
    # pruned after 3 and 6 of 10 epochs: 7 + 4 = 11 of the 3 x 10 planned
    assert "11 of 30 (37%)" in page
    assert "median: no trial pruned before 5 trials have completed, nor before it has run 3 epochs" in page


def test_space_words() -> None:
    space = parse_words(["lr=log:1e-4:1e-1", "optimizer=choice:sgd,momentum,adam", "model=choice:mlp:64|mlp:128,64",
                         "epochs=int:2:5", "batch_size=choice:16,full"])  # fmt: skip
    assert space["optimizer"].choices == ("sgd", "momentum", "adam")
    assert space["model"].choices == ("mlp:64", "mlp:128,64")
    assert (space["epochs"].low, space["epochs"].high) == (2, 5) and space["batch_size"].choices == (16, "full")
    assert parse_word("lr=choice:auto,0.01")[1].choices == ("auto", 0.01)


@pytest.mark.parametrize(("word", "message"), [
    ("momentm=float:0:1", "unknown parameter 'momentm'"),
    ("optimizer=choice:", "empty choice"),
    ("lr=float:0.1:0.01", "low > high"),
    ("lr=log:-1:1", "log range through zero"),
    ("lr=log:0:0.1", "log range through zero"),
    ("optimizer=choice:sgd,adamm", "invalid optimizer='adamm'"),
    ("dropout=float:0:1.5", "dropout can give 1.5"),
    ("model=choice:mlp:64|mlpx", "unknown model"),
    ("seed=int:0:3", "option of the whole study"),
    ("lr=between:0:1", "expected NAME=KIND:SPEC"),
])  # fmt: skip
def test_space_errors(word: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_words([word])


def _cli(*args: str, cwd: Path) -> Any:
    """``descend search ARGS`` in this process, in the folder ``cwd``: (exit code, stderr)."""
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(cli, ["search", *args])
    return SimpleNamespace(returncode=result.exit_code, stderr=result.stderr)


BAD = [
    (["--param", "momentm=float:0:1"], "unknown parameter"),
    (["--param", "optimizer=choice:"], "empty choice"),
    (["--param", "lr=float:1:0.1"], "low > high"),
    (["--param", "lr=log:0:1"], "log range through zero"),
    (["--param", "lr=log:1e-3:1e-1", "--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_exit_2_nothing_written(table_file: Path, tmp_path: Path, args: list[str],
                                                       message: str) -> None:
    result = _cli(str(table_file), "--target", "y", "--study", "s", "--epochs", "1", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_another_study_is_refused(table_file: Path, tmp_path: Path) -> None:
    search(table_file, {"lr": FloatDistribution(1e-3, 1e-1, log=True)}, study=tmp_path / "s", n_trials=1,
           target="y", epochs=1, **FAST)  # fmt: skip
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = _cli(str(table_file), "--target", "y", "--study", "s", "--param", "lr=log:1e-4:1e-1", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "holds another study" in result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("sampler", "pruner"), [("gp", "hyperband"), ("tpe", "none")])
def test_other_samplers_and_pruners_run(table: pd.DataFrame, tmp_path: Path, sampler: str, pruner: str) -> None:
    space = {"lr": FloatDistribution(1e-3, 1e-1, log=True), "optimizer": CategoricalDistribution(["sgd", "adam"])}
    result = search(table, space, study=tmp_path / sampler, sampler=sampler, pruner=pruner, n_trials=3, target="y",
                    epochs=2, **FAST)  # fmt: skip
    assert len(result.trials) == 3 and {r["state"] for r in result.trials} <= {"complete", "pruned"}


def test_a_trial_fit_refuses_fails_with_its_reason(table: pd.DataFrame, tmp_path: Path) -> None:
    # newton is full-batch: fit refuses a batch size with it; the study goes on
    space = {"optimizer": CategoricalDistribution(["newton", "adam"])}
    result = search(table, space, study=tmp_path / "s", sampler="grid", pruner="none", target="y", epochs=1,
                    batch_size=16, model="linear", **FAST)  # fmt: skip
    states = {r["optimizer"]: (r["state"], r["reason"]) for r in result.trials}
    assert states["adam"][0] == "complete"
    assert states["newton"][0] == "fail" and "batch" in states["newton"][1]
