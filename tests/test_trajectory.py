"""The run's own path on its loss surface: closed forms on least squares, numpy's SVD on the digits MLP, a bounded
sample, the same path after a resume, marks, and the command and report that show it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import descend
from descend.cli.main import cli
from descend.data import load_dataset, prepare
from descend.errors import ConfigError
from descend.inspect import Snapshots, TrajectoryRecorder, principal_plane, trajectory_surface
from descend.train import Callback, TrainState


def _least_squares(n: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """X with orthogonal columns, so the Hessian of mean((Xw - y)^2) is diagonal: H = 2/n X^T X = diag(2, 1, 0.5)."""
    q, _ = torch.linalg.qr(torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    X = q * torch.tensor([1.0, 0.5 ** 0.5, 0.25 ** 0.5], dtype=torch.float64) * (n / 1.0) ** 0.5
    w_star = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    return X, X @ w_star, w_star, (2 / n * X.T @ X).numpy()


def _fit_least_squares(steps: int, recorder: TrajectoryRecorder) -> tuple[nn.Module, Any, Any, torch.Tensor]:
    X, y, w_star, _ = _least_squares()
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():  # the start differs from the minimum along the first two eigenvectors only
        model.weight.copy_((w_star + torch.tensor([2.0, 1.5, 0.0], dtype=torch.float64))[None])
    data = SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task="regression")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit(model, data, optimizer="sgd", lr=0.3, batch_size="full", epochs=steps, tol=None, guard=False,
                    diagnostics=False, progress=False, callbacks=[recorder], loss="mse")  # fmt: skip
    return model, X, y, w_star


def test_least_squares_path_lies_in_its_plane_and_the_surface_is_the_loss() -> None:
    recorder = TrajectoryRecorder(snapshots=40, dtype=torch.float64)
    model, X, y, w_star = _fit_least_squares(120, recorder)
    snaps = recorder.snapshots()
    plane = principal_plane(snaps, model)
    final = model.weight.detach().reshape(-1)
    # Gradient descent from w* + (2, 1.5, 0) never moves along the third eigenvector: the plane is e1, e2.
    for d in plane.directions:
        assert abs(float(d[2])) < 1e-12 and abs(float(d.norm()) - 1) < 1e-12
    assert abs(float(plane.directions[0] @ plane.directions[1])) < 1e-12
    assert float(plane.explained.sum()) == pytest.approx(1.0, abs=1e-12)
    assert plane.residual.max() < 1e-12
    # The oracle: numpy's SVD of the centred differences from the final weights.
    W = np.stack([snaps.weights(i).numpy() for i in range(len(snaps))])
    D = W - final.numpy()
    _, s, vt = np.linalg.svd(D - D.mean(0), full_matrices=False)
    np.testing.assert_allclose(plane.explained, (s**2 / (s**2).sum())[:2], rtol=1e-10)
    for k in range(2):
        assert abs(float(np.dot(vt[k], plane.directions[k].numpy()))) == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(plane.coords, D @ np.stack([d.numpy() for d in plane.directions]).T, atol=1e-12)
    assert plane.coords[0, 0] >= 0 and plane.coords[0, 1] >= 0  # the axes point towards the start

    def loss_fn() -> torch.Tensor:
        return ((model(X)[:, 0] - y) ** 2).mean()

    surface = trajectory_surface(model, loss_fn, plane, points=41, margin=0.1)
    assert torch.equal(model.weight.detach().reshape(-1), final)  # the weights are restored

    def direct(w: np.ndarray) -> float:
        return float(np.mean((X.numpy() @ w - y.numpy()) ** 2))

    # The drawn loss at each path point is the loss of those weights (the path lies in the plane).
    np.testing.assert_allclose(surface.path_loss, [direct(w) for w in W], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(surface.snapshot_loss, surface.path_loss, rtol=1e-9, atol=1e-12)
    d1, d2 = (d.numpy() for d in plane.directions)
    for i, j in ((0, 0), (7, 31), (40, 40), (20, 3)):
        w = final.numpy() + surface.alphas[i] * d1 + surface.betas[j] * d2
        assert surface.loss[j, i] == pytest.approx(direct(w), rel=1e-10, abs=1e-14)
    # Convex: the path ends at the surface's minimum in the plane: no grid point is lower, and on a grid through
    # the origin the lowest point is the origin.
    assert surface.final_loss <= surface.loss.min()
    a, b = (np.linspace(-1.1, 1.1, 21) * np.abs(plane.coords[:, k]).max() for k in (0, 1))
    centred = trajectory_surface(model, loss_fn, plane, points=21, alphas=a, betas=b)
    assert np.unravel_index(np.argmin(centred.loss), centred.loss.shape) == (10, 10)
    assert np.linalg.norm(final.numpy() - w_star.numpy()) < 1e-6 and surface.final_loss < 1e-12


def test_digits_mlp_directions_and_variance_match_numpy_svd() -> None:
    recorder = TrajectoryRecorder(snapshots=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(load_dataset("digits").frame, target="digit", seed=0)
        result = descend.fit("mlp:32", prepared, lr=1e-2, epochs=3, early_stopping=False, progress=False,
                             diagnostics=False, callbacks=[recorder])  # fmt: skip
    snaps = recorder.snapshots()
    assert snaps.offsets.dtype == torch.float16 and len(snaps) <= 31  # 30 and the end of the last epoch
    assert snaps.steps[0] == 0 and snaps.steps[-1] == result.steps
    plane = principal_plane(snaps, result.model)
    W = np.stack([snaps.weights(i).numpy() for i in range(len(snaps))])
    D = W - torch.cat([p.detach().reshape(-1) for p in result.model.parameters()]).double().numpy()
    _, s, vt = np.linalg.svd(D - D.mean(0), full_matrices=False)
    np.testing.assert_allclose(plane.explained, (s**2 / (s**2).sum())[:2], rtol=1e-8)
    for k in range(2):
        assert abs(float(np.dot(vt[k], plane.directions[k].numpy()))) == pytest.approx(1.0, abs=1e-8)
    assert 0.5 < plane.explained.sum() <= 1.0
    # The last snapshot is the final weights (no early stopping): the path ends at the origin.
    assert np.abs(plane.coords[-1]).max() < 1e-2 * np.abs(plane.coords).max()


class _Spy(Callback):
    """Reads the recorder's holding after every step."""

    def __init__(self, recorder: TrajectoryRecorder) -> None:
        self.recorder, self.most, self.bytes = recorder, 0, 0

    def on_step_end(self, state: TrainState) -> None:
        self.most = max(self.most, len(self.recorder._rows))
        self.bytes = max(self.bytes, self.recorder.nbytes)


def test_snapshots_stay_bounded_and_evenly_spaced() -> None:
    X = torch.randn(200, 4, generator=torch.Generator().manual_seed(1))
    y = X @ torch.tensor([1.0, -1.0, 2.0, 0.0])
    recorder = TrajectoryRecorder(snapshots=10)
    spy = _Spy(recorder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = descend.fit("linear", (X, y), optimizer="sgd", lr=0.01, batch_size=1, epochs=12, tol=None,
                        early_stopping=False, validation=0.0, progress=False, diagnostics=False,
                        callbacks=[recorder, spy])  # fmt: skip
    assert r.steps == 2400
    assert spy.most <= 10  # planned 2400 steps: one every 240, never more than 10 held
    assert spy.bytes <= (10 + 2) * 5 * 4  # 10 snapshots and the epoch's end in float16, the origin in float32
    snaps = recorder.snapshots()
    steps = snaps.steps[:-1] if snaps.steps[-1] % snaps.every else snaps.steps
    assert steps == list(range(0, r.steps + 1, snaps.every))[: len(steps)] and len(steps) >= 5
    with pytest.raises(ConfigError, match="snapshots"):
        TrajectoryRecorder(snapshots=3)
    small = TrajectoryRecorder(budget_mb=1e-4)  # 10 snapshots of 5 parameters in float16 need 100 bytes
    small.start(nn.Linear(100, 1))
    assert not small.enabled and "budget_mb" in small.reason
    with pytest.raises(ConfigError, match="nothing recorded"):
        small.snapshots()


def test_thinning_keeps_every_other_snapshot() -> None:
    model = nn.Linear(1, 1)
    recorder = TrajectoryRecorder(snapshots=10, dtype=torch.float32)
    recorder.start(model, planned=10)
    for step in range(1, 25):
        with torch.no_grad():
            model.bias.fill_(float(step))
        recorder.take(model, step)
    snaps = recorder.snapshots()
    assert snaps.every == 4 and snaps.steps == [0, 4, 8, 12, 16, 20, 24]
    assert [float(snaps.weights(i)[1]) for i in range(1, len(snaps))] == pytest.approx(snaps.steps[1:], rel=1e-6)


def test_principal_plane_refuses_too_few_snapshots_and_another_model() -> None:
    model = nn.Linear(2, 1)
    recorder = TrajectoryRecorder(snapshots=10)
    recorder.start(model)
    recorder.take(model, 1)
    with pytest.raises(ConfigError, match="at least 3"):
        principal_plane(recorder.snapshots(), model)
    with pytest.raises(ConfigError, match="parameters"):
        principal_plane(recorder.snapshots(), nn.Linear(3, 1))


def _stop_at(step: int) -> Any:
    original = TrajectoryRecorder.on_step_end

    def on_step_end(self: TrajectoryRecorder, state: TrainState) -> None:
        original(self, state)
        if state.step == step:
            raise KeyboardInterrupt

    return on_step_end


def test_a_resumed_run_records_the_same_trajectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    X = torch.randn(300, 5, generator=torch.Generator().manual_seed(2))
    y = (X[:, 0] - X[:, 1] > 0).long()
    options: dict[str, Any] = dict(lr=0.01, epochs=6, batch_size=32, progress=False, early_stopping=False, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit("mlp:8", (X, y), run_dir=tmp_path / "whole", **options)
        monkeypatch.setattr(TrajectoryRecorder, "on_step_end", _stop_at(40))  # in epoch 5, after 4 checkpoints
        with pytest.raises(KeyboardInterrupt):
            descend.fit("mlp:8", (X, y), run_dir=tmp_path / "cut", **options)
        monkeypatch.undo()
        assert not (tmp_path / "cut" / "trajectory.pt").exists()
        descend.fit("mlp:8", (X, y), resume=tmp_path / "cut", **options)
    whole, cut = Snapshots.load(tmp_path / "whole" / "trajectory.pt"), Snapshots.load(tmp_path / "cut" / "trajectory.pt")
    assert whole.steps == cut.steps and whole.epochs == cut.epochs and whole.lrs == cut.lrs
    assert torch.equal(whole.offsets, cut.offsets) and torch.equal(whole.origin, cut.origin)
    assert whole.marks == cut.marks and len(whole) > 20


def test_rollbacks_and_learning_rate_drops_are_marked() -> None:
    diabetes = load_dataset("diabetes")
    recorder = TrajectoryRecorder(snapshots=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # SGD at lr 3 blows up in the first epoch; the guard rolls back and the run recovers (as the report's
        # "recovered" screenshot shows).
        descend.fit("mlp:32", diabetes.frame, target=diabetes.target, optimizer="sgd", lr=3.0, epochs=6,
                    progress=False, diagnostics=False, callbacks=[recorder])  # fmt: skip
    kinds = [m["kind"] for m in recorder.snapshots().marks]
    assert "rollback" in kinds and "lr" in kinds
    drop = next(m for m in recorder.snapshots().marks if m["kind"] == "lr")
    assert drop["to"] == pytest.approx(drop["from"] * 0.1)  # the guard's factor

    stepped = TrajectoryRecorder(snapshots=50)
    X = torch.randn(128, 3, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit("linear", (X, X.sum(1)), optimizer="sgd", lr=0.1, schedule="step", step_size=40, gamma=0.1,
                    epochs=10, batch_size=16, validation=0.0, tol=None, progress=False, diagnostics=False,
                    callbacks=[stepped])  # fmt: skip
    marks = [m for m in stepped.snapshots().marks if m["kind"] == "lr"]
    assert [m["to"] / m["from"] for m in marks] == pytest.approx([0.1] * len(marks)) and len(marks) >= 1


def test_landscape_trajectory_of_a_run_folder_and_its_report(tmp_path: Path) -> None:
    frame = load_dataset("iris").frame.copy()
    frame = frame.rename(columns={frame.columns[0]: "<b>sepal</b>"})
    frame.to_csv(tmp_path / "iris.csv", index=False)
    runner = CliRunner()
    r = runner.invoke(cli, ["train", str(tmp_path / "iris.csv"), "--target", "species", "--model", "mlp:8",
                            "--epochs", "6", "--lr", "0.05", "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "trajectory.pt").is_file()  # fit records the path of a run with a folder
    r = runner.invoke(cli, ["landscape", str(tmp_path / "run"), "--trajectory", "--points", "7", "--rows", "50",
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    record = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert out["explained"] == pytest.approx(record["explained"]) and 0 < sum(out["explained"]) <= 1 + 1e-9
    assert record["rows"] == 50 and record["available"] == 120 and record["split"] == "train"
    assert len(record["surface"]) == 7 and len(record["coords"]) == record["snapshots"]
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Path over the loss surface" in page and 'alt="trajectory over the loss surface"' in page
    assert "the first 50 of 120 training rows" in page
    r = runner.invoke(cli, ["landscape", str(tmp_path / "run"), "--trajectory", "--points", "5", "--split",
                            "validation", "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "trajectory.json").read_text())["available"] == 30
    bare = tmp_path / "bare"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descend.fit("linear", (torch.randn(40, 2), torch.randn(40)), epochs=2, run_dir=bare, diagnostics=False,
                    progress=False)  # fmt: skip
    r = runner.invoke(cli, ["landscape", str(bare), "--trajectory"])
    assert r.exit_code != 0 and "recorded no trajectory" in r.output
