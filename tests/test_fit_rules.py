"""fit's smaller promises, each against an oracle: the tolerance rule counts consecutive epochs, penalties apply to
the chosen parameters, events name early stops and warnings, steps.csv holds each step's loss and rate, a
checkpoint killed mid-write leaves the previous one whole, the progress bar is silent off a terminal, and
config.json records the library versions."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import descend
from descend.models import LinearRegression
from descend.train import ProgressBar, Recorder

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def regression(n: int = 80, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64) + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return SimpleNamespace(X_train=X[: n * 3 // 4], y_train=y[: n * 3 // 4], X_val=X[n * 3 // 4 :], y_val=y[n * 3 // 4 :],
                           task="regression")  # fmt: skip


@pytest.mark.parametrize("patience", [1, 3, 6])
def test_tolerance_stops_at_the_first_run_of_n_small_changes(patience: int) -> None:
    # Oracle: the rule applied by hand to the epochs' training losses: stop at the first epoch that ends a run
    # of `patience` consecutive relative changes below tol.
    tol = 1e-3
    result = descend.fit(LinearRegression(4, 1).double(), regression(), optimizer="sgd", lr=0.02, batch_size="full",
                         epochs=3000, tol=tol, n_iter_no_change=patience, early_stopping=False)  # fmt: skip
    losses = [row["loss"] for row in result.history]
    run, expected = 0, None
    for e in range(1, len(losses)):
        run = run + 1 if abs(losses[e - 1] - losses[e]) / abs(losses[e - 1]) < tol else 0
        if run >= patience:
            expected = e + 1
            break
    assert result.stop_reason == "tolerance" and result.epochs == expected


@pytest.mark.parametrize(
    ("penalize", "chosen"),
    [("weights", ["net.weight"]), ("all", ["net.weight", "net.bias"]), (["net.bias"], ["net.bias"]),
     (lambda name, p: name.endswith("bias"), ["net.bias"])],
)
def test_penalty_applies_to_the_chosen_parameters(penalize: Any, chosen: list[str]) -> None:
    # One full-batch step at a negligible rate: epoch 1's loss is the objective at the start, written by hand:
    # mse + l1 Σ|θ| + l2/2 Σ θ² over the chosen parameters only.
    data = regression()
    model = LinearRegression(4, 1, init="xavier").double()
    torch.nn.init.constant_(model.net.bias, 0.7)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = descend.fit(model, data, optimizer="sgd", lr=1e-12, batch_size="full", epochs=1, l1=0.2, l2=0.6,
                         penalize=penalize, scale_target=False, tol=None)  # fmt: skip
    X, y = data.X_train, data.y_train
    mse = torch.nn.functional.mse_loss(X @ start["net.weight"][0] + start["net.bias"][0], y)
    penalty = sum(0.2 * start[k].abs().sum() + 0.3 * (start[k] ** 2).sum() for k in chosen)
    assert result.history[0]["loss"] == pytest.approx(float(mse + penalty), rel=1e-10)


def test_events_name_the_early_stop_and_the_not_converged_warning(tmp_path: Path) -> None:
    stopped = descend.fit(LinearRegression(4, 1).double(), regression(n=200), lr=0.05, epochs=400, progress=False,
                          run_dir=tmp_path / "a")  # fmt: skip
    events = [json.loads(x) for x in (tmp_path / "a" / "events.jsonl").read_text().splitlines()]
    stop = [e for e in events if e["event"] == "early_stop"]
    assert stopped.stop_reason == "early_stopping" and len(stop) == 1
    assert stop[0]["best_epoch"] == stopped.best_epoch and stop[0]["epoch"] == stopped.epochs
    short = descend.fit(LinearRegression(4, 1).double(), regression(), lr=1e-4, epochs=2, progress=False,
                        run_dir=tmp_path / "b")  # fmt: skip
    events = [json.loads(x) for x in (tmp_path / "b" / "events.jsonl").read_text().splitlines()]
    warned = [e for e in events if e["event"] == "warning"]
    assert not short.converged and [e["category"] for e in warned] == ["not_converged"]
    assert "2 epochs" in warned[0]["message"]


def test_steps_csv_holds_each_steps_loss_and_rate(tmp_path: Path) -> None:
    schedule = lambda t: 0.05 / (1 + t)  # noqa: E731
    result = descend.fit(LinearRegression(4, 1).double(), regression(), optimizer="sgd", lr=schedule, batch_size=20,
                         epochs=3, tol=None, run_dir=tmp_path / "r", callbacks=[Recorder(steps=True)],
                         diagnostics=False, progress=False)  # fmt: skip
    with open(tmp_path / "r" / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, result.steps + 1))
    # lr as in metrics.csv: the optimizer's rate after the step, i.e. the rate of the next update (step k -> k)
    assert [float(r["lr"]) for r in rows] == pytest.approx([schedule(k) for k in range(1, result.steps + 1)], rel=1e-12)
    per_epoch = [sum(float(r["loss"]) for r in rows if int(r["epoch"]) == e) / 3 for e in range(3)]
    assert per_epoch == pytest.approx([row["loss"] for row in result.history], rel=1e-12)


def test_a_checkpoint_killed_mid_write_leaves_the_previous_one_whole(tmp_path: Path, monkeypatch: Any) -> None:
    from descend.train import run as run_module

    folder = run_module.RunFolder.create(tmp_path / "r")
    first = folder.save_checkpoint({"step": 1, "w": torch.arange(1000.0)}, keep=2)
    real_open = open

    class Torn:
        def __init__(self, path: Any, mode: str) -> None:
            self.f = real_open(path, mode)

        def write(self, data: bytes) -> int:
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise KeyboardInterrupt  # the process dies halfway through the bytes

        def __enter__(self) -> Torn:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()

    monkeypatch.setattr(run_module, "open", lambda path, mode="r", *a, **k: Torn(path, mode), raising=False)
    with pytest.raises(KeyboardInterrupt):
        folder.save_checkpoint({"step": 2, "w": torch.arange(1000.0) * 2}, keep=2)
    monkeypatch.undo()
    assert folder.list_checkpoints() == [first]
    assert not (first.parent / "step-00000002.pt").exists()
    loaded = folder.latest_checkpoint()
    assert loaded is not None and loaded["step"] == 1 and torch.equal(loaded["w"], torch.arange(1000.0))


def test_progress_bar_is_silent_off_a_terminal_and_draws_when_forced(capsys: Any) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", descend.train.ConvergenceWarning)
        descend.fit(LinearRegression(4, 1).double(), regression(), epochs=3, progress=None)
        assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
        descend.fit(LinearRegression(4, 1).double(), regression(), epochs=3, progress=False,
                    callbacks=[ProgressBar(force=True)])  # fmt: skip
    err = capsys.readouterr().err
    assert "epoch" in err and "3/3" in err


def test_config_records_the_versions_that_decide_the_numbers(tmp_path: Path) -> None:
    from importlib.metadata import version

    from descend.train import EarlyStopping

    descend.fit(LinearRegression(4, 1).double(), regression(), epochs=1, run_dir=tmp_path / "r", progress=False,
                early_stopping=EarlyStopping(patience=7, min_delta=0.01))  # fmt: skip
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    stopping = config["arguments"]["early_stopping"]  # a callback's settings, not its repr
    assert (stopping["class"], stopping["patience"], stopping["min_delta"]) == ("EarlyStopping", 7, 0.01)
    env = config["environment"]
    assert env["torch"] == torch.__version__
    for name in ("numpy", "pandas", "pyarrow", "scikit-learn", "safetensors"):
        assert env[name] == version(name)


def test_step_hooks_and_profiles_see_every_step() -> None:
    # fit calls the optimizer's algorithm without torch's profiler annotation; hooks must still run around every
    # step, and under a running profiler every step must still be annotated.
    data = regression()
    model = LinearRegression(4, 1).double()
    opt = descend.optim.SGD(model.parameters(), lr=0.01)
    seen: list[str] = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: seen.append("post"))
    result = descend.fit(model, data, optimizer=opt, batch_size=20, epochs=2, tol=None, progress=False)
    assert seen == ["pre", "post"] * result.steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        again = descend.fit(LinearRegression(4, 1).double(), data, optimizer="sgd", batch_size=20, epochs=2, tol=None,
                            progress=False, diagnostics=False)  # fmt: skip
    steps = [e for e in prof.events() if e.name.startswith("Optimizer.step#")]
    zeroed = [e for e in prof.events() if e.name.startswith("Optimizer.zero_grad#")]
    assert len(steps) == len(zeroed) == again.steps
