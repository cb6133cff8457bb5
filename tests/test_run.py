"""Run folders: their files, every checkpoint, exact resume (after SIGKILL mid-epoch and after a crash), and
descend.load."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import descend
from descend.errors import ConfigError, ModelFolderError
from descend.models import MLP
from descend.train import Callback, Checkpoint, EarlyStopping, TrainState

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def dataset() -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 6, generator=g)
    y = (X[:, :3].sum(1) + 0.8 * torch.randn(400, generator=g) > 0).long() + (X[:, 3] > 1).long()
    return SimpleNamespace(X_train=X[:320], y_train=y[:320], X_val=X[320:], y_val=y[320:], task="multiclass", n_classes=3)


ARGS: dict[str, Any] = {"epochs": 12, "batch_size": 32, "lr": 0.01, "seed": 3}


def model() -> MLP:
    return MLP(hidden=(16,), dropout=0.25)  # dropout: the torch RNG must be restored too


def flat(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.state_dict().values()])


def test_run_folder_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = descend.fit(model(), dataset(), run_dir=run, **ARGS)
    config = json.loads((run / "config.json").read_text())
    for name in ("epochs", "batch_size", "lr", "optimizer", "loss", "seed", "l2", "clip_norm", "resume", "threads"):
        assert name in config["arguments"]
    assert config["seed"] == 3 and config["environment"]["torch"] == torch.__version__
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result.epochs
    for row, hist in zip(rows, result.history):
        assert {"loss", "val_loss", "val_accuracy", "lr", "grad_norm", "time"} <= set(row)
        assert float(row["loss"]) == pytest.approx(hist["loss"], rel=1e-12)
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["epochs"] == result.epochs
    assert not list(run.rglob("*.tmp"))
    saved = descend.load(run)
    X = dataset().X_val
    with torch.no_grad():
        expected = result.model.eval()(X).argmax(1)
    assert torch.equal(saved.predict(X), expected)
    probs = saved.predict_proba(X)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(X)), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="holds a complete run; pass overwrite=True"):
        descend.fit(model(), dataset(), run_dir=run, **ARGS)
    with pytest.raises(ConfigError, match="complete"):
        descend.fit(model(), dataset(), resume=run, **ARGS)
    with pytest.raises(ConfigError, match=r"overwrite: invalid overwrite='yes'; expected True or False"):
        descend.fit(model(), dataset(), run_dir=run, overwrite="yes", **ARGS)
    # overwrite: the old run's files go, the new run is the same as a run in a fresh folder
    (run / "stray.txt").write_text("from the old run")
    again = descend.fit(model(), dataset(), run_dir=run, overwrite=True, **{**ARGS, "epochs": 3})
    assert again.epochs == 3 and not (run / "stray.txt").exists()
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
    fresh = descend.fit(model(), dataset(), run_dir=run.with_name("fresh"), **{**ARGS, "epochs": 3})
    assert load_file(run / "model" / "model.safetensors").keys() == \
        load_file(run.with_name("fresh") / "model" / "model.safetensors").keys()
    assert torch.equal(flat(again.model), flat(fresh.model))
    assert not (run / ".descend.lock").exists()


class StepWeights(Callback):
    def __init__(self) -> None:
        self.at: dict[int, torch.Tensor] = {}

    def on_step_end(self, state: TrainState) -> None:
        self.at[state.step] = flat(state.model)


def test_every_checkpoint_opens_with_weights_only(tmp_path: Path) -> None:
    # Oracle: the weights recorded at each step by a callback in the same run.
    weights = StepWeights()
    ckpt = Checkpoint(every_steps=7, every_epochs=1, keep=None)
    result = descend.fit(model(), dataset(), run_dir=tmp_path / "r", callbacks=[weights, ckpt], **ARGS)
    paths = sorted((tmp_path / "r" / "checkpoints").glob("*.pt"))
    steps = {s for s in range(1, result.steps + 1) if s % 7 == 0} | {10 * e for e in range(1, result.epochs + 1)}
    assert len(paths) == len(steps)
    for path in paths:
        state = torch.load(path, weights_only=True)
        assert set(state) >= {"model", "optimizer", "schedule", "rng", "order", "history", "callbacks", "step"}
        assert torch.equal(torch.cat([v.flatten() for v in state["model"].values()]), weights.at[state["step"]])


class Crash(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.at_step:
            raise KeyboardInterrupt


def test_resume_after_crash_keeps_early_stopping_state(tmp_path: Path) -> None:
    args = {**ARGS, "epochs": 60, "lr": 0.05}
    reference = descend.fit(model(), dataset(), early_stopping=EarlyStopping(patience=3), **args)
    assert reference.stop_reason == "early_stopping"
    crash_at = (reference.best_epoch or 0) * 10 + 15  # after the best epoch, mid-epoch, patience running
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        descend.fit(model(), dataset(), run_dir=run, early_stopping=EarlyStopping(patience=3), checkpoint_every=4,
                    callbacks=[Crash(crash_at)], **args)  # fmt: skip
    assert not (run / "summary.json").exists()
    stop = EarlyStopping(patience=3)
    resumed = descend.fit(model(), dataset(), resume=run, early_stopping=stop, **args)
    assert stop.best_epoch == reference.best_epoch and resumed.epochs == reference.epochs
    assert torch.equal(flat(resumed.model), flat(reference.model))
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)
    with open(run / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == resumed.epochs
    os.remove(run / "summary.json")  # pretend it is unfinished: a changed argument is refused
    with pytest.raises(ConfigError, match=r"resume: lr=0\.1 differs from the run's lr=0\.05"):
        descend.fit(model(), dataset(), resume=run, **{**args, "lr": 0.1})


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from test_run import ARGS, dataset, model
import descend
from descend.train import Callback, Checkpoint

class Slow(Callback):
    def on_step_end(self, state):
        time.sleep(0.02)

descend.fit(model(), dataset(), run_dir={run!r}, callbacks=[Slow(), Checkpoint(every_steps=7, every_epochs=None, keep=3)],
            **{{**ARGS, "epochs": 40}})
"""


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_is_bit_identical(tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = CHILD.format(tests=str(Path(__file__).parent), run=str(run))
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while not list((run / "checkpoints").glob("step-*.pt")):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    latest = torch.load(sorted((run / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    assert latest["batch"] not in (0, 10), "the kill should land mid-epoch"
    resumed = descend.fit(model(), dataset(), resume=run, **{**ARGS, "epochs": 40})
    reference = descend.fit(model(), dataset(), **{**ARGS, "epochs": 40})
    assert resumed.steps == reference.steps
    final = load_file(run / "model" / "model.safetensors")
    for key, value in reference.model.state_dict().items():
        assert torch.equal(final[key], value), key


def test_standardised_target_round_trips_through_the_run_folder(tmp_path: Path) -> None:
    # A regression table whose target is in the thousands. The run records the training rows' mean and standard
    # deviation (oracle: numpy on y_train), the loss is the standardised MSE (oracle: computed by hand from the
    # model's predictions), and descend.load predicts raw rows in the target's units, equal to the trained model
    # applied to the prepared features; a resumed run carries the same scale.
    import numpy as np
    import pandas as pd

    from descend.data import prepare

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["price"] = 5000 + 800 * X[:, 0] - 300 * X[:, 1] + 50 * rng.standard_normal(300)
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    data = prepare(path, target="price", validation=0.2, seed=0)
    result = descend.fit("linear", data, epochs=5, run_dir=tmp_path / "run", progress=False, diagnostics=False)
    y = data.y_train.numpy().astype(np.float64)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    scale = config["resolved"]["target_scale"]
    assert scale["mean"][0] == pytest.approx(y.mean(), rel=1e-6)
    assert scale["std"][0] == pytest.approx(y.std(), rel=1e-5)
    model = result.model
    with torch.no_grad():
        pred = model(data.X_val)[:, 0].double()
    mu, sigma = scale["mean"][0], scale["std"][0]
    standardised = float((((pred - mu) / sigma - (data.y_val.double() - mu) / sigma) ** 2).mean())
    assert result.history[-1]["val_loss"] == pytest.approx(standardised, rel=1e-5)
    rmse = float(((pred - data.y_val.double()) ** 2).mean().sqrt())
    assert result.history[-1]["val_rmse"] == pytest.approx(rmse, rel=1e-5)  # metrics in the target's units
    loaded = descend.load(tmp_path / "run")
    raw = frame.drop(columns="price").iloc[data.index_val.numpy()]
    np.testing.assert_allclose(np.asarray(loaded.predict(raw), dtype=np.float64).reshape(-1), pred.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale_target": "yes"}, "scale_target=.yes.; expected auto, True or False"),
        ({"scale_target": True, "loss": lambda out, y: ((out - y) ** 2).mean()}, "the loss is a custom callable"),
    ],
)
def test_bad_scale_target(kwargs: dict[str, Any], message: str) -> None:
    X = torch.randn(40, 2)
    data = SimpleNamespace(X_train=X, y_train=X.sum(1), X_val=X[:0], y_val=X[:0, 0], task="regression")
    with pytest.raises(ConfigError, match=message):
        descend.fit("linear", data, epochs=1, **kwargs)
    with pytest.raises(ConfigError, match="is not a descend model"):
        descend.fit(torch.nn.Linear(2, 1), data, epochs=1, scale_target=True)


class _Pickled:
    """Unpickling this would run code: a checkpoint holding it must be refused, never executed."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch planted",))


@pytest.mark.parametrize("damage", ["truncated", "empty", "zeros", "malicious", "foreign"])
def test_a_corrupt_newest_checkpoint_is_passed_over_for_the_one_before(tmp_path: Path, damage: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from descend.train.run import RunWarning

    monkeypatch.chdir(tmp_path)
    args = {**ARGS, "epochs": 6}
    reference = descend.fit(model(), dataset(), **args)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        descend.fit(model(), dataset(), run_dir=run, callbacks=[Crash(45)], **args)  # after epoch 4's checkpoint
    newest = sorted((run / "checkpoints").glob("step-*.pt"))
    assert len(newest) == 2  # the last two are kept
    body = newest[-1].read_bytes()
    newest[-1].write_bytes({"truncated": body[: len(body) // 2], "empty": b"", "zeros": bytes(len(body))}.get(damage, b""))
    if damage == "malicious":
        torch.save({"format": 1, "step": 40, "model": _Pickled()}, newest[-1])
    if damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, newest[-1])
    with pytest.warns(RunWarning, match=rf"checkpoint '.*{newest[-1].name}' cannot be read"):
        resumed = descend.fit(model(), dataset(), resume=run, **args)
    assert torch.equal(flat(resumed.model), flat(reference.model))
    assert not (tmp_path / "planted").exists()
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events.count("resume") == 1


def test_a_run_whose_every_checkpoint_is_corrupt_is_refused_naming_them(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        descend.fit(model(), dataset(), run_dir=run, callbacks=[Crash(25)], **{**ARGS, "epochs": 6})
    for path in (run / "checkpoints").glob("step-*.pt"):
        path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning), pytest.raises(ModelFolderError, match=r"no checkpoint in .* can be read: step-"):
        descend.fit(model(), dataset(), resume=run, **{**ARGS, "epochs": 6})
