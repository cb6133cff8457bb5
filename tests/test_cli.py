"""The descend command, through click's CliRunner: exit codes, output and the files written."""

from __future__ import annotations

import base64
import io
import json
import re
import warnings
from pathlib import Path

import matplotlib.image
import pytest
from click.testing import CliRunner

import descend
from descend.cli.main import cli
from descend.data import DataWarning, load_dataset, prepare


@pytest.mark.slow
def test_demo_trains_and_writes_a_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["demo", "--epochs", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "digits: 1438 training rows, 359 validation rows" in result.output
    assert "epoch   5  loss" in result.output and f"run folder: {out}" in result.output
    for name in ("config.json", "metrics.csv", "events.jsonl", "summary.json", "model/model.safetensors"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["epochs"] == 6
    assert summary["final"]["val_accuracy"] > 0.9  # an MLP on digits is past 0.9 after 6 epochs of Adam
    config = json.loads((out / "config.json").read_text())
    assert config["arguments"]["epochs"] == 6 and config["seed"] == 0
    # The saved model scores the validation rows exactly as the summary says.
    loaded = descend.load(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = prepare(load_dataset("digits"), validation=0.2, seed=0)
    accuracy = float((loaded.output(data.X_val).argmax(1) == data.y_val).double().mean())
    assert accuracy == pytest.approx(summary["final"]["val_accuracy"], abs=1e-12)
    # The report: written where the output says, this run's, and self-contained (no script, nothing fetched).
    report = out / "report.html"
    assert result.output.splitlines()[-1] == f"report: {report}"
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert f"<tr><th>epochs / steps</th><td>6 / {summary['steps']}</td></tr>" in page
    assert "<script" not in page and "<link" not in page and "<iframe" not in page
    assert "http://" not in page and "https://" not in page and "url(" not in page
    sources = re.findall(r'\b(?:src|href)="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    # Curves, gradient norms, sharpness (measured at step 250 of 270; the constant learning rate is a sentence),
    # and the model's quality (confusion matrix, ROC and precision-recall, calibration, permutation importance):
    # seven PNGs that decode.
    assert len(sources) == 7
    for src in sources:
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 500 and pixels.std() > 0.01


def test_demo_rejects_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    result = CliRunner().invoke(cli, ["demo", "--epochs", "1", "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert "is not empty and holds no descend run" in result.output


def test_demo_bad_option() -> None:
    result = CliRunner().invoke(cli, ["demo", "--dataset", "mnist"])
    assert result.exit_code == 2 and "Invalid value for '--dataset'" in result.output
