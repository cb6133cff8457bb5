"""descend.evaluate and ``descend evaluate``: the metrics of a saved model on a labelled table, held to
scikit-learn's metrics computed on the same predictions, and its errors in one line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sklearn import metrics as sk

import descend
from descend.cli.main import cli
from descend.data import DataWarning
from descend.evaluation import f1_score, roc_auc
from tests.messy import messy_table


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, str]:
    task = request.param
    folder = tmp_path_factory.mktemp(task)
    frame = messy_table(160, 7, task=task, classes=3 if task == "multiclass" else 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        descend.fit("mlp", frame, target="y", epochs=3, seed=0, run_dir=folder / "run")
    test = messy_table(80, 8, task=task, classes=3 if task == "multiclass" else 2)
    test.to_csv(folder / "test.csv", index=False)
    return folder, test, task


def test_metrics_match_scikit_learn(trained: tuple[Path, pd.DataFrame, str]) -> None:
    folder, test, task = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ev = descend.evaluate(folder / "run", folder / "test.csv")
        saved = descend.load(folder / "run")
        features = test.drop(columns=["y"])
        pred = np.asarray(saved.predict(features))
    assert ev.rows == 80 and ev.task == task
    m = ev.metrics
    if task == "regression":
        y = test["y"].to_numpy()
        assert m["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, pred)), rel=1e-5)
        assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, pred), rel=1e-5)
        assert m["r2"] == pytest.approx(sk.r2_score(y, pred), rel=1e-5, abs=1e-6)
        assert ev.confusion is None
        return
    proba = saved.predict_proba(features).numpy()
    y = test["y"].to_numpy()
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, proba, labels=ev.classes), rel=1e-4)
    if task == "binary":
        assert m["f1"] == pytest.approx(sk.f1_score(y, pred, pos_label=ev.classes[1]))
        assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y == ev.classes[1], proba[:, 1]), rel=1e-9)
    else:
        assert m["f1"] == pytest.approx(sk.f1_score(y, pred, average="macro", labels=ev.classes))
        assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, proba, multi_class="ovr", labels=ev.classes), rel=1e-9)
    assert ev.confusion == sk.confusion_matrix(y, pred, labels=ev.classes).tolist()


def test_the_command_prints_a_table_json_and_an_html_page(trained: tuple[Path, pd.DataFrame, str]) -> None:
    folder, _, task = trained
    r = invoke("evaluate", folder / "run", folder / "test.csv")
    assert r.exit_code == 0, r.output
    first = "rmse" if task == "regression" else "accuracy"
    assert any(line.startswith(first) for line in r.stdout.splitlines())
    r = invoke("evaluate", folder / "run", folder / "test.csv", "--json", "--html", folder / "ev.html")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["rows"] == 80 and first in summary["metrics"]
    page = (folder / "ev.html").read_text()
    assert "Evaluation on" in page and "<script" not in page


def test_labels_and_notes_are_escaped_in_the_page(tmp_path: Path) -> None:
    from descend.evaluation import Evaluation
    from descend.report.evaluation import evaluation_report

    ev = Evaluation("binary", {"accuracy": 1.0}, rows=2, source="<b>t.csv", model="m", target=["<y>"],
                    classes=["<script>alert(1)</script>", "ok"], confusion=[[1, 0], [0, 1]], notes=["<i>note"])
    page = evaluation_report(ev, tmp_path / "e.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<i>note" not in page


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda f: f.drop(columns=["y"]), "no target column 'y'; evaluation needs the true values"),
        (lambda f: f.assign(y="maybe"), "label 'maybe' is not one of the 2 classes"),
        (lambda f: f.drop(columns=["age"]), "missing feature column(s) 'age'"),
    ],
    ids=["no target", "unknown label", "missing feature"],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, make: Any, fragment: str) -> None:
    frame = messy_table(100, 9, task="binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        descend.fit("mlp", frame, target="y", epochs=1, seed=0, run_dir=tmp_path / "run")
    make(frame).to_csv(tmp_path / "bad.csv", index=False)
    r = invoke("evaluate", tmp_path / "run", tmp_path / "bad.csv")
    assert r.exit_code == 2 and r.stdout == "" and "Traceback" not in r.output
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("descend evaluate: error: ") and fragment in r.stderr
    r = invoke("evaluate", tmp_path / "nowhere", tmp_path / "bad.csv")
    assert r.exit_code == 2 and "holds no saved model" in r.stderr


def test_f1_and_auc_against_scikit_learn_on_ties_and_one_class() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 2, 200)
    score = np.round(rng.random(200), 1)  # many ties
    assert roc_auc(true, score) == pytest.approx(sk.roc_auc_score(true, score), rel=1e-12)
    assert roc_auc(np.ones(5, dtype=np.int64), np.arange(5.0)) is None
    pred = rng.integers(0, 3, 200)
    true3 = rng.integers(0, 3, 200)
    assert f1_score(true3, pred, 3, binary=False) == pytest.approx(sk.f1_score(true3, pred, average="macro"))
