"""The report's curves and summary read right: a panel per metric on its own axis, the marks where the run put
them, the learning rate as run and the plan cut where the run stopped, readable layer names, rounded events, a
status that agrees with the outcome, and the f - f* axis floored when a run reaches exactly 0."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import descend
from descend.report import RunRecord, run_report
from descend.report.curves import constant_lr, layer_names, marks_of, plot_learning_curves, plot_lr_schedule
from descend.report.plots import gap_floor
from descend.report.run import status


def _rows(n: int = 6, per_epoch: int = 10) -> list[dict[str, float]]:
    return [{"epoch": float(e), "step": float(per_epoch * e), "loss": 1.0 / e, "val_loss": 1.1 / e,
             "val_rmse": 55.0 + e, "val_r2": 0.1 * e, "lr": 0.1 if e < 4 else 0.01} for e in range(1, n + 1)]


def test_a_panel_per_metric_with_its_own_axis_and_the_marks() -> None:
    metrics = _rows()
    events = [{"event": "guard_rollback", "step": 25}, {"event": "start"}]
    marks = marks_of(metrics, events, 5)
    assert marks.best_epoch == 5.0 and marks.rollbacks == [2.5] and marks.lr_changes == [3.0]
    fig = plot_learning_curves(metrics, marks=marks)
    assert fig is not None
    loss, rmse, r2 = (ax for ax in fig.axes if ax.get_visible())
    assert [ax.get_title() for ax in (loss, rmse, r2)] == ["Loss", "Validation RMSE", "Validation R²"]
    low, high = r2.get_ylim()
    assert low > -0.1 and high < 0.7  # R² on its own axis, not squashed beside RMSE near 60
    assert rmse.get_ylim()[0] > 50
    for ax in (loss, rmse, r2):  # best epoch, rollback, lr change on every panel
        xs = sorted(float(line.get_xdata()[0]) for line in ax.get_lines() if len(set(line.get_xdata())) == 1)
        assert xs == [2.5, 3.0, 5.0], ax.get_title()


def test_the_learning_rate_as_run_and_the_plan_cut_where_it_stopped() -> None:
    metrics = _rows(4)
    steps = [{"step": float(s), "epoch": float((s - 1) // 10), "loss": 1.0, "lr": 0.1 if s <= 25 else 0.01}
             for s in range(1, 41)]
    schedule = [{"step": float(s), "lr": 0.1 * (1 - s / 100)} for s in range(100)]  # planned for 100 steps
    fig = plot_lr_schedule(metrics, steps, schedule)
    assert fig is not None
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert max(lines["planned"].get_xdata()) <= 40  # the plan only as far as the run went
    assert list(lines["used"].get_ydata()) == [r["lr"] for r in steps]
    assert fig.axes[0].get_yscale() == "linear"  # 0.1 to 0.01 is within 20x
    assert constant_lr(metrics, steps, schedule) is None
    assert constant_lr(metrics, [{"step": 1.0, "lr": 0.001}, {"step": 2.0, "lr": 0.001}]) == 0.001


def test_layer_names_from_the_model() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.LayerNorm(32),
                              torch.nn.Conv1d(3, 8, 5), torch.nn.Linear(32, 1))
    assert layer_names(net) == {"0": "layer 1 Linear 64->32", "2": "layer 2 LayerNorm 32",
                                "3": "layer 3 Conv1d 3->8 5", "4": "layer 4 Linear 32->1"}


def test_gap_floor_when_a_run_reaches_zero() -> None:
    newton = np.array([10.0, 1e-3, 0.0, 0.0])
    gd = np.array([10.0, 5.0, 2.0, 1.0])
    assert gap_floor([newton, gd]) == pytest.approx(1e-4)
    assert gap_floor([np.zeros(3)]) == 1e-12


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], dtype=np.float32)
    out = tmp_path_factory.mktemp("curves") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit("mlp:8", (X, y), epochs=3, run_dir=out, progress=False, seed=0)
    return out


def test_status_never_contradicts_the_outcome(small_run: Path, tmp_path: Path) -> None:
    assert status(RunRecord.read(small_run)) == "complete"
    copy = tmp_path / "copy"
    shutil.copytree(small_run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    recovered = {**summary, "diverged": True, "guard": {"rollbacks": 2, "skips": 0, "lr_scale": 0.010000000000000002}}
    (copy / "summary.json").write_text(json.dumps(recovered))
    assert status(RunRecord.read(copy)) == ("complete, after the descent diverged and the divergence guard "
                                            "recovered it (2 rollback(s), learning rate scaled by 0.01)")
    stopped = {**summary, "diverged": True, "stop_reason": "diverged", "divergence": "out of rollbacks"}
    (copy / "summary.json").write_text(json.dumps(stopped))
    assert status(RunRecord.read(copy)) == "stopped: the descent diverged (out of rollbacks)"
    assert "complete" not in status(RunRecord.read(copy))


def test_events_are_rounded_and_features_folded(small_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "events"
    shutil.copytree(small_run, copy)
    with (copy / "events.jsonl").open("a") as f:
        f.write(json.dumps({"time": 0.0, "event": "plateau", "lr": 1.0000000000000003e-05, "epoch": 2}) + "\n")
    page = run_report(copy).read_text()
    assert "lr=1e-05" in page and "1.0000000000000003e-05" not in page
    assert "<details><summary>All 3 feature names</summary>" in page
    assert "No quality view: the run does not record a data file" in page  # trained on arrays in memory
