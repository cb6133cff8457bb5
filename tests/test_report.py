"""descend.report: the self-contained HTML report of a run and of a comparison, and the records behind it."""

from __future__ import annotations

import base64
import html
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
from descend.report.html import esc

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
    # The summary's epochs / steps are the run's, as metrics.csv counts them (4 epochs of 3 steps).
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert _pairs(page)["epochs / steps"] == f"{len(metrics)} / {int(metrics['step'].iloc[-1])}" == "4 / 12"


def _pairs(page: str) -> dict[str, str]:
    """The page's name/value rows (``<tr><th>name</th><td>value</td></tr>``), unescaped; the first of each name."""
    rows: dict[str, str] = {}
    for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", page):
        rows.setdefault(html.unescape(k), html.unescape(v))
    return rows


def _final_metrics(page: str) -> dict[str, float]:
    """The final-metrics table that follows "Final metrics", as numbers."""
    table = page.split("Final metrics (the epoch whose weights were kept):</p>", 1)[1].split("</table>", 1)[0]
    names = re.findall(r"<th>(.*?)</th>", table)
    values = re.findall(r"<td[^>]*>(.*?)</td>", table)
    assert len(names) == len(values) > 0, table
    return {html.unescape(k): float(v) for k, v in zip(names, values, strict=True)}


def test_run_report_summary_is_the_run_folders(run_dir: Path) -> None:
    """Every summary field against the file it comes from: config.json, command.json, metrics.csv, events."""
    page = run_report(run_dir).read_text()
    config = json.loads((run_dir / "config.json").read_text())
    command = json.loads((run_dir / "command.json").read_text())
    metrics = pd.read_csv(run_dir / "metrics.csv")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    end = next(e for e in events if e["event"] == "end")
    pairs = _pairs(page)
    assert pairs["status"] == "complete"
    assert pairs["task"] == config["resolved"]["task"] == "binary"
    assert pairs["data"] == command["data"] == "my <data>.csv"
    assert pairs["target"] == command["target"] == "label"
    assert pairs["rows (train / validation)"] == f"{config['data']['n_train']} / {config['data']['n_val']}" == "90 / 30"
    assert pairs["features"] == str(config["data"]["n_features"]) == "3"
    model = config["arguments"]["model"]
    assert pairs["model"] == f"{model['class']}, hidden {', '.join(map(str, model['hidden']))}" == "MLP, hidden 8"
    assert pairs["loss"] == config["resolved"]["loss"]
    assert pairs["optimizer"] == f"{config['arguments']['optimizer']}, lr {config['arguments']['lr']}" == "sgd, lr 0.1"
    assert pairs["batch size"] == str(config["resolved"]["batch_size"]) == "30"
    # How training stopped: the end event's reason, in words; converged as the end event says.
    assert end["stop_reason"] == "max_epochs" and pairs["how training stopped"] == "reached the maximum number of epochs"
    assert pairs["converged"] == ("yes" if end["converged"] else "no")
    assert float(pairs["training time (s)"]) == pytest.approx(metrics["time"].sum(), abs=0.006)
    # Final metrics: the last row of metrics.csv (no early stop), to the 4 significant digits shown.
    final = _final_metrics(page)
    last = metrics.iloc[-1]
    assert {"loss", "val_loss", "val_accuracy"} <= set(final)
    for name, value in final.items():
        assert value == pytest.approx(float(last[name]), rel=5e-4, abs=1e-12), name


def test_run_report_shows_a_findings_evidence(tmp_path: Path) -> None:
    """A provoked over-fit (a wide MLP, 40 training rows, 150 full-batch epochs): the report shows the finding's
    message and its evidence, which are the numbers of metrics.csv."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(30, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 1))
    out = tmp_path / "overfit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit(net, (x[:80], y[:80]), epochs=150, lr=1e-3, validation=0.5, early_stopping=False,
                    batch_size="full", loss="bce", run_dir=out, progress=False, seed=0)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    finding = next(e for e in events if e["event"] == "finding" and e["rule"] == "over_fitting")
    # The oracle: the best epoch and the validation losses, from metrics.csv.
    metrics = pd.read_csv(out / "metrics.csv")
    best = int(metrics["val_loss"].idxmin())
    expected = {"best_epoch": int(metrics["epoch"][best]), "best_val_loss": float(metrics["val_loss"][best]),
                "last_val_loss": float(metrics["val_loss"].iloc[-1])}
    assert finding["evidence"] == pytest.approx(expected, rel=1e-12)
    page = run_report(out).read_text()
    block = re.search(r'<div class="finding"><b>over_fitting</b>.*?</div>', page, re.S)
    assert block is not None
    assert esc(finding["message"]) in block.group(0) and esc(finding["suggestion"]) in block.group(0)
    shown = dict(re.findall(r"(\w+) <code>([^<]*)</code>", block.group(0).split("Evidence:", 1)[1]))
    assert set(shown) == set(expected)
    assert int(shown["best_epoch"]) == expected["best_epoch"]
    for name in ("best_val_loss", "last_val_loss"):
        assert float(shown[name]) == pytest.approx(expected[name], rel=5e-4), name
    # The events table carries the evidence too.
    assert f"evidence: best_epoch {expected['best_epoch']}, best_val_loss {expected['best_val_loss']:.4g}" in page


def test_a_findings_evidence_is_escaped(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "hostile"
    shutil.copytree(run_dir, copy)
    event = {"time": 0.0, "event": "finding", "rule": "plateau", "message": HOSTILE, "suggestion": HOSTILE,
             "evidence": {HOSTILE: HOSTILE, "loss": 0.123456, "ranks": [1, 2]}, "epoch": 2}
    with (copy / "events.jsonl").open("a") as f:
        f.write(json.dumps(event) + "\n")
    page = run_report(copy).read_text()
    assert "<script" not in page
    block = re.search(r'<div class="finding"><b>plateau</b>.*?</div>', page, re.S)
    assert block is not None
    assert f"{esc(HOSTILE)} <code>{esc(HOSTILE)}</code>, loss <code>0.1235</code>, ranks <code>[1, 2]</code>" in (
        block.group(0))


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
