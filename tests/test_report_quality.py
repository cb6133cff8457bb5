"""The report's model-quality sections: the numbers behind each figure against scikit-learn on the same predictions
(confusion matrix exactly, ROC AUC, average precision and R^2 to 1e-9, the curves point by point), the rows against
the run's own validation metrics, and the same figures on ``descend evaluate --html``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from descend.cli.main import cli
from descend.data import load_dataset
from descend.report.quality import (
    Predictions,
    calibration_bins,
    permutation_importance,
    precision_recall_points,
    roc_points,
    run_predictions,
)
from descend.report.record import RunRecord

HOSTILE = "<script>alert(1)</script>"


def _train(tmp: Path, name: str, frame: pd.DataFrame, target: str, *extra: str) -> Path:
    frame.to_csv(tmp / f"{name}.csv", index=False)
    out = tmp / name
    result = CliRunner().invoke(cli, ["train", str(tmp / f"{name}.csv"), "--target", target, "--model", "mlp:8",
                                      "--epochs", "5", "--out", str(out), "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("quality")
    iris = load_dataset("iris").frame
    iris["species"] = iris["species"].replace({iris["species"].iloc[0]: HOSTILE})
    cancer = load_dataset("breast_cancer")
    diabetes = load_dataset("diabetes")
    return {
        "multiclass": _train(tmp, "iris", iris, "species"),
        "binary": _train(tmp, "cancer", cancer.frame, cancer.target),
        "regression": _train(tmp, "diabetes", diabetes.frame, diabetes.target),
        "tmp": tmp,
    }


def _predictions(run: Path) -> Predictions:
    found = run_predictions(RunRecord.read(run))
    assert isinstance(found, Predictions), found
    return found


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classification_numbers_equal_scikit_learns(runs: dict[str, Path], task: str) -> None:
    from descend.evaluation import confusion

    p = _predictions(runs[task])
    record = RunRecord.read(runs[task])
    best = record.final
    # The rows are the run's validation rows: the model scores them as the run's metrics say.
    assert float((p.labels == p.y).mean()) == pytest.approx(best["val_accuracy"], abs=1e-9)
    import torch

    matrix = np.array(confusion(torch.as_tensor(p.output), torch.as_tensor(p.y), task, len(p.classes)))
    assert (matrix == skm.confusion_matrix(p.y, p.labels, labels=range(len(p.classes)))).all()
    prob = p.probabilities
    wanted = [1] if task == "binary" else range(len(p.classes))
    for c in wanted:
        true = (p.y == c).astype(int)
        fpr, tpr, thresholds = roc_points(true, prob[:, c])
        sk_fpr, sk_tpr, sk_thr = skm.roc_curve(true, prob[:, c], drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
        np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(thresholds[1:], sk_thr[1:])
        assert float(np.trapezoid(tpr, fpr)) == pytest.approx(skm.roc_auc_score(true, prob[:, c]), abs=1e-9)
        _, _, ap = precision_recall_points(true, prob[:, c])
        assert ap == pytest.approx(skm.average_precision_score(true, prob[:, c]), abs=1e-9)
    if task == "binary":
        bins = calibration_bins(p.y, prob[:, 1])
        observed, predicted = calibration_curve(p.y, prob[:, 1], n_bins=10, strategy="uniform")
        used = bins["counts"] > 0
        np.testing.assert_allclose(bins["observed"][used], observed, atol=1e-12)
        np.testing.assert_allclose(bins["predicted"][used], predicted, atol=1e-12)
        assert bins["counts"].sum() == len(p.y)


def test_regression_numbers_equal_scikit_learns(runs: dict[str, Path]) -> None:
    from descend.report.quality import _headline

    p = _predictions(runs["regression"])
    r2 = _headline(p)["r2"]
    # descend's scores sum in float32 (as training's metrics do), scikit-learn in float64: float32's rounding over
    # the validation rows, not a difference of formula, bounds the gap.
    assert r2 == pytest.approx(skm.r2_score(p.y, p.output.reshape(-1)), abs=1e-6)
    # ... and the run's own validation R^2 of its best epoch (computed in float32 during training).
    assert r2 == pytest.approx(RunRecord.read(runs["regression"]).final["val_r2"], abs=1e-5)


def test_permutation_importance_against_a_model_that_ignores_a_feature() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 2.0 * X[:, 0] + 0.5 * X[:, 2]
    p = Predictions("regression", y.copy(), y, X=X, features=["a", "b", HOSTILE],
                    score_rows=lambda rows: 2.0 * rows[:, 0] + 0.5 * rows[:, 2])
    found = {r["feature"]: r for r in permutation_importance(p, rows=200, repeats=4)}
    assert found["b"]["mean"] == 0.0 and found["b"]["std"] == 0.0  # never used: no drop at all
    # Shuffling a feature of variance v in y = w x + ...: R^2 falls by about 2 w^2 v / var(y).
    assert found["a"]["mean"] == pytest.approx(2 * 4.0 / 4.25, rel=0.25)
    assert 0 < found[HOSTILE]["mean"] < found["a"]["mean"]


def test_report_shows_the_quality_section(runs: dict[str, Path]) -> None:
    from descend.report import run_report

    for task, sections in (("multiclass", 4), ("regression", 2)):
        page = run_report(runs[task]).read_text()
        assert '<h2 id="quality">Model quality</h2>' in page
        quality = page.split('<h2 id="quality">', 1)[1].split("<h2", 1)[0]
        assert len(re.findall(r'<img class="plot"', quality)) == sections, task
        assert "5 shuffles" in quality and "validation rows" in quality
        assert "<script" not in page


def test_evaluate_html_has_the_figures(runs: dict[str, Path]) -> None:
    tmp = runs["tmp"]
    page = tmp / "eval.html"
    result = CliRunner().invoke(cli, ["evaluate", str(runs["binary"]), str(tmp / "cancer.csv"), "--html", str(page),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert '<h2 id="quality">Model quality</h2>' in text
    assert len(re.findall(r'<img class="plot"', text)) == 4  # confusion, ROC + PR, calibration, importance
