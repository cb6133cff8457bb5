"""The divergence guard: a 1000x learning-rate jump recovers to the clean run's loss, a NaN batch is skipped
exactly as a hand loop that leaves that batch out, the same runs fail as in plain PyTorch without the guard, a
healthy run is bit-identical with and without it (at batch sizes 1 and 4 too, where one step's loss is mostly
noise), and a blow-up at batch size 1 is still caught and rolled back to a state saved before it."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import descend
from descend.data import Batches
from descend.errors import ConfigError
from descend.models import MLP, LinearRegression, LogisticRegression
from descend.train import Callback, DivergenceGuard, TrainState
from tests.test_run import Crash

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")

# scale_target=False: the oracles are plain PyTorch loops on the raw target
COMMON: dict[str, Any] = {"batch_size": 32, "early_stopping": False, "tol": None, "seed": 1, "progress": False,
                          "scale_target": False}


def problems() -> dict[str, tuple[SimpleNamespace, Any, float]]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(640, 10, generator=g)
    w = torch.randn(10, generator=g)
    y = X @ w + 0.5 * torch.randn(640, generator=g)
    yb = ((X @ w + 0.5 * torch.randn(640, generator=g)) > 0).float()
    reg = SimpleNamespace(X_train=X[:512], y_train=y[:512], X_val=X[512:], y_val=y[512:], task="regression")
    binary = SimpleNamespace(X_train=X[:512], y_train=yb[:512], X_val=X[512:], y_val=yb[512:], task="binary")
    # (data, model factory, base lr for SGD with momentum 0.9)
    return {"linear": (reg, LinearRegression, 0.05), "logistic": (binary, LogisticRegression, 0.5)}


def jump(base: float) -> Any:
    """The learning rate multiplied by 1000 from step 50 on (a schedule: it stays high until the guard acts)."""
    return lambda t: base if t < 50 else 1000 * base


class Jump(Callback):
    """Multiplies the learning rate by 1000 once, at step 50."""

    def on_step_end(self, state: TrainState) -> None:
        if state.step == 50:
            for group in state.optimizer.param_groups:
                group["lr"] *= 1000


def run(data: Any, model: torch.nn.Module, lr: Any, guard: Any, **extra: Any) -> descend.FitResult:
    return descend.fit(model, data, optimizer="momentum", lr=lr, epochs=30, guard=guard, **COMMON, **extra)


@pytest.mark.parametrize("name", ["linear", "logistic"])
def test_lr_times_1000_at_step_50_recovers_to_the_clean_loss(name: str) -> None:
    # Oracle: the clean run (same init, data order and base lr). Tolerance: final training and validation loss
    # within 5%. With factor 0.1 the guard needs three rollbacks (1000 -> 100 -> 10 -> 1) to get back to the base rate;
    # each is an event with the step it went back to.
    data, make, base = problems()[name]
    clean = run(data, make(), base, True)
    guard = DivergenceGuard()
    jumped = run(data, make(), jump(base), guard)
    assert jumped.stop_reason == "max_epochs"
    assert 1 <= guard.rollbacks <= 5
    assert all(e["event"] == "guard_rollback" and e["rolled_back_to"] < e["step"] for e in guard.events)
    for key in ("loss", "val_loss"):
        assert jumped.final[key] == pytest.approx(clean.final[key], rel=0.05), key
    assert all(math.isfinite(p.detach().sum().item()) for p in jumped.model.parameters())


def test_one_off_jump_by_callback_recovers() -> None:
    # The jump made by a callback is undone by the rollback itself (the lr is part of the optimizer state); the
    # run then continues at base/10. On least squares that ends at or below the clean run's loss (+5%).
    data, make, base = problems()["linear"]
    clean = run(data, make(), base, True)
    guard = DivergenceGuard()
    jumped = run(data, make(), base, guard, callbacks=[Jump()])
    assert guard.rollbacks == 1 and guard.scale == pytest.approx(0.1)
    assert jumped.final["lr"] == pytest.approx(base / 10)
    assert jumped.final["val_loss"] <= 1.05 * clean.final["val_loss"]


def plain_pytorch_jump(data: Any, make: Any, base: float, epochs: int = 30) -> float:
    """The same run in plain PyTorch: torch.optim.SGD, the same jump, the same batches; the last epoch's mean loss."""
    model = make()
    model.build(data.X_train.shape[1], 1)
    opt = torch.optim.SGD(model.parameters(), lr=base, momentum=0.9)
    loss_fn = torch.nn.functional.mse_loss if data.task == "regression" else torch.nn.functional.binary_cross_entropy_with_logits
    batches, step, losses = Batches(len(data.X_train), 32, seed=1), 0, list[float]()
    for _ in range(epochs):
        losses = []
        for idx in batches:
            for g in opt.param_groups:
                g["lr"] = base if step < 50 else 1000 * base
            loss = loss_fn(model(data.X_train[idx]), data.y_train[idx].unsqueeze(1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
            step += 1
    return sum(losses) / len(losses)


@pytest.mark.parametrize("name", ["linear", "logistic"])
def test_without_the_guard_the_jump_diverges_as_in_plain_pytorch(name: str) -> None:
    # Least squares overflows to inf/NaN (fit stops as "diverged"); the logistic loss stays finite but ends far
    # above the clean run (>10x), and so does the same run in plain PyTorch.
    data, make, base = problems()[name]
    clean = run(data, make(), base, True).history[-1]["loss"]
    result = run(data, make(), jump(base), False)
    plain = plain_pytorch_jump(data, make, base)
    if name == "linear":
        assert result.stop_reason == "diverged" and not math.isfinite(result.history[-1]["loss"])
        assert not math.isfinite(plain)
    else:
        assert result.history[-1]["loss"] > 10 * clean and plain > 10 * clean


def nan_data() -> tuple[SimpleNamespace, int]:
    data, _, _ = problems()["linear"]
    X = data.X_train.clone()
    X[37, 2] = float("nan")
    return SimpleNamespace(X_train=X, y_train=data.y_train, X_val=data.X_val, y_val=data.y_val, task="regression"), 37


def test_nan_batch_is_skipped_exactly_and_recorded(tmp_path: Path) -> None:
    # Oracle: a hand loop over the same batches that leaves out every batch holding the NaN row; same model
    # init, same optimizer (descend.optim.Momentum). The guard prevents the update, so the two agree to float32
    # rounding (1e-6), and each epoch records one guard_skip event naming the batch.
    data, bad = nan_data()
    torch.manual_seed(5)
    model = LinearRegression(10, 1)
    reference = LinearRegression(10, 1)
    reference.load_state_dict(model.state_dict())
    guard = DivergenceGuard()
    epochs = 5
    result = descend.fit(model, data, optimizer="momentum", lr=0.05, epochs=epochs, guard=guard, run_dir=tmp_path / "r",
                         **COMMON)  # fmt: skip
    assert result.stop_reason == "max_epochs" and guard.rollbacks == 0 and guard.skips == epochs
    opt = descend.optim.Momentum(reference.parameters(), lr=0.05)
    batches, skipped = Batches(len(data.X_train), 32, seed=1), []
    for epoch in range(epochs):
        for b, idx in enumerate(batches):
            if bad in idx.tolist():
                skipped.append((epoch, b + 1))
                continue
            loss = torch.nn.functional.mse_loss(reference(data.X_train[idx]), data.y_train[idx].unsqueeze(1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    skips = [e for e in events if e["event"] == "guard_skip"]
    assert [(e["epoch"], e["batch"]) for e in skips] == skipped
    assert all(e["reason"] == "non_finite_loss" and e["step"] > 0 for e in skips)
    assert all(math.isfinite(row["loss"]) for row in result.history)  # the epoch's loss over its normal steps


def test_nan_batch_without_the_guard_fails_as_in_plain_pytorch() -> None:
    data, _ = nan_data()
    result = descend.fit(LinearRegression(), data, optimizer="momentum", lr=0.05, epochs=2, guard=False, **COMMON)
    assert result.stop_reason == "diverged"
    assert all(torch.isnan(p).all() for p in result.model.parameters())
    model = LinearRegression(10, 1)  # plain PyTorch: one step on the batch with the NaN row poisons every weight
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = torch.nn.functional.mse_loss(model(data.X_train[:64]), data.y_train[:64].unsqueeze(1))
    loss.backward()
    opt.step()
    assert all(torch.isnan(p).all() for p in model.parameters())


def test_retries_run_out_stop_with_the_last_good_state() -> None:
    data, make, _ = problems()["linear"]
    guard = DivergenceGuard(max_retries=2)
    torch.manual_seed(0)
    model = make(10, 1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(data, model, 1e4, guard)  # diverges at 1e4, 1e3 and 1e2
    assert result.stop_reason == "diverged" and guard.rollbacks == 2
    assert guard.events[-1]["event"] == "guard_stop" and "2 rollbacks" in guard.events[-1]["message"]
    assert any("divergence guard ran out of rollbacks" in str(w.message) for w in caught)
    for k, v in result.model.state_dict().items():  # no good state after the start: the model is back at its init
        assert torch.equal(v, start[k])


def assert_untouched(guard: DivergenceGuard, on: descend.FitResult, off: descend.FitResult) -> None:
    """No event, and every parameter and history row (but the wall-clock time) bit-identical to the unguarded run."""
    assert guard.events == [] and guard.rollbacks == 0 and guard.skips == 0 and guard.scale == 1.0
    assert [{k: v for k, v in row.items() if k != "time"} for row in on.history] == [
        {k: v for k, v in row.items() if k != "time"} for row in off.history
    ]
    for p, q in zip(on.model.parameters(), off.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("case", ["mlp-adam", "linear-sgd-full", "logistic-momentum"])
def test_healthy_run_is_untouched(case: str) -> None:
    # Oracle: the same run with guard=False. No event, and every parameter and history row bit-identical.
    g = torch.Generator().manual_seed(3)
    X = torch.randn(300, 6, generator=g)
    y = (X[:, 0] - X[:, 1] > 0).long() + (X[:, 2] > 0.5).long()
    options: dict[str, Any] = {"epochs": 15, "seed": 2, "progress": False}
    if case == "mlp-adam":
        data: Any = SimpleNamespace(X_train=X[:240], y_train=y[:240], X_val=X[240:], y_val=y[240:], task="multiclass")
        make: Any = lambda: MLP(hidden=(16,), dropout=0.1)  # noqa: E731
        options.update(lr=3e-3)
    elif case == "linear-sgd-full":
        data = SimpleNamespace(X_train=X, y_train=X @ torch.arange(6.0), X_val=None, y_val=None, task="regression")
        make = LinearRegression
        options.update(optimizer="sgd", lr=0.3, batch_size="full", epochs=200)
    else:
        data = SimpleNamespace(X_train=X, y_train=(y > 0).float(), X_val=None, y_val=None, task="binary")
        make = LogisticRegression
        options.update(optimizer="momentum", lr=0.5, batch_size=16)
    guard = DivergenceGuard()
    on = descend.fit(make(), data, guard=guard, **options)
    off = descend.fit(make(), data, guard=False, **options)
    assert_untouched(guard, on, off)
    assert guard.block == (2 if case == "logistic-momentum" else 1)  # 16 rows a step: blocks of 2; 32 or full: 1


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("dataset", ["iris", "wine"])
def test_healthy_small_batch_runs_are_untouched(dataset: str, batch_size: int) -> None:
    # `descend train iris.csv --target species --batch-size 1 --epochs 9`: the CLI's default model (mlp:64) and
    # optimizer (Adam, lr 1e-3). Judged step by step, one row's loss against the median of the last 20 rows', this
    # healthy run made 5 rollbacks ("rising"), cut the lr to 1e-8 and stopped as "diverged". Judged on blocks of
    # 32 rows (32 steps at batch size 1, 8 at 4) it is left alone. Oracle: the same run with guard=False.
    data = descend.data.load_dataset(dataset)
    options: dict[str, Any] = {"batch_size": batch_size, "epochs": 9, "progress": False, "diagnostics": False}
    guard = DivergenceGuard()
    on = descend.fit("mlp", data, guard=guard, **options)
    off = descend.fit("mlp", data, guard=False, **options)
    assert on.stop_reason == off.stop_reason == "max_epochs"
    assert guard.block == 32 // batch_size
    assert_untouched(guard, on, off)


class Snapshots(Callback):
    """Records the parameters after every step (the guard, first in line, has acted by then), and the steps at
    which the learning rate was multiplied by ``factor`` (from step ``at`` on)."""

    def __init__(self, at: int, factor: float) -> None:
        self.at, self.factor = at, factor
        self.params: dict[int, list[torch.Tensor]] = {}
        self.lr: dict[int, float] = {}

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.at:
            for group in state.optimizer.param_groups:
                group["lr"] *= self.factor
        self.params[state.step] = [p.detach().clone() for p in state.model.parameters()]
        self.lr[state.step] = float(state.optimizer.param_groups[0]["lr"])


def test_blow_up_at_batch_size_1_is_caught_and_rolled_back() -> None:
    # Breast cancer, one row a step, Adam at 1e-3 multiplied by 1000 after step 2000 (by a callback: the rollback
    # undoes it with the rest of the optimizer state). Unguarded, the next epoch's training loss is over 1000x the
    # clean run's and the validation loss never comes back. Guarded: one rollback, reason "spike", a few blocks of
    # 32 steps after the jump (patience 3, plus the block the jump falls in and one while the loss climbs past 10x
    # its level), back to a state saved before the jump; the parameters right after the rollback are bit-identical
    # to the ones recorded at that step, the lr is 1e-4, and nothing more is needed. Oracle for the ending: the
    # clean run (validation loss no worse than +5%, training loss within 2x: the last 5 epochs ran at lr/10).
    data = descend.data.load_dataset("breast_cancer")
    options: dict[str, Any] = {"batch_size": 1, "epochs": 9, "progress": False, "diagnostics": False,
                               "early_stopping": False}  # fmt: skip
    at = 2000
    clean = descend.fit("mlp", data, guard=False, **options)
    off = descend.fit("mlp", data, guard=False, callbacks=[Snapshots(at, 1000.0)], **options)
    guard, seen = DivergenceGuard(), Snapshots(at, 1000.0)
    on = descend.fit("mlp", data, guard=guard, callbacks=[seen], **options)
    jumped = at // (clean.steps // options["epochs"])  # the row of the epoch holding step at + 1
    assert off.history[jumped]["loss"] > 1000 * clean.history[jumped]["loss"]
    assert off.history[-1]["val_loss"] > 1000 * clean.history[-1]["val_loss"]
    assert on.stop_reason == "max_epochs" and guard.block == 32 and guard.skips == 0
    (event,) = guard.events
    assert event["event"] == "guard_rollback" and event["reason"] == "spike"
    assert at < event["step"] <= at + 32 * (guard.patience + 2)
    back = event["rolled_back_to"]
    assert 0 < back <= at and back % (32 * guard.every) == 0  # a candidate taken every 20 blocks, then trusted
    for p, q in zip(seen.params[event["step"]], seen.params[back], strict=True):
        assert torch.equal(p, q)
    assert seen.lr[event["step"]] == pytest.approx(1e-4) and event["lr"] == pytest.approx(1e-4)
    assert event["loss"] > guard.spike * clean.history[jumped]["loss"]  # the spiking block's mean
    assert all(math.isfinite(row["loss"]) for row in on.history)
    assert on.history[-1]["val_loss"] <= 1.05 * clean.history[-1]["val_loss"]
    assert on.history[-1]["loss"] < 2 * clean.history[-1]["loss"]


def guard_cases() -> dict[str, Any]:
    linear, make_linear, base_linear = problems()["linear"]
    logistic, make_logistic, base_logistic = problems()["logistic"]
    nan, _ = nan_data()
    digits = descend.data.load_dataset("digits")
    iris = descend.data.load_dataset("iris")
    common = {"early_stopping": False, "progress": False, "diagnostics": False}
    return {  # name: (model factory, data, options)
        "jump, 3 rollbacks": (make_linear, linear, {**COMMON, "optimizer": "momentum", "lr": jump(base_linear),
                                                    "epochs": 30}),
        "callback jump": (make_logistic, logistic, {**COMMON, "optimizer": "momentum", "lr": base_logistic,
                                                    "epochs": 30, "callbacks": [Jump()]}),
        "nan batch": (make_linear, nan, {**COMMON, "optimizer": "momentum", "lr": base_linear, "epochs": 10}),
        "healthy digits": (lambda: MLP(hidden=(64,)), digits, {**common, "lr": 1e-3, "epochs": 8, "seed": 0}),
        "iris, batch 4, sgd lr 5": (lambda: MLP(hidden=(64,)), iris, {**common, "optimizer": "sgd", "lr": 5.0,
                                                                      "batch_size": 4, "epochs": 6, "seed": 0}),
    }


def same(a: Any, b: Any) -> bool:
    """Equal states: tensors bit for bit, containers entry by entry."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


class Fresh(DivergenceGuard):
    """The guard copying the model and the optimizer afresh (a clone per tensor) every time: the reference."""

    def _refill(self, spare: dict[str, Any], optimizer: dict[str, Any]) -> None:
        return None


class Refilled(DivergenceGuard):
    """The default guard, counting its candidate copies and those it wrote over a discarded one in place."""

    refills = candidates = 0

    def _take_candidate(self, state: TrainState) -> None:
        self.candidates += 1
        super()._take_candidate(state)

    def _refill(self, spare: dict[str, Any], optimizer: dict[str, Any]) -> Any:
        copies = super()._refill(spare, optimizer)
        self.refills += copies is not None
        return copies


@pytest.mark.parametrize("case", list(guard_cases()))
def test_copies_written_over_in_place_restore_as_fresh_copies(case: str) -> None:
    # A candidate is written into a discarded copy's tensors when the layout matches. Oracle: the guard cloning
    # every copy. Rollbacks (to the copies), rows, weights and the guard's state (its copies) equal bit for bit.
    make, data, options = guard_cases()[case]
    torch.manual_seed(0)
    reference = Fresh()
    ref = descend.fit(make(), data, guard=reference, **options)
    torch.manual_seed(0)
    guard = Refilled()
    got = descend.fit(make(), data, guard=guard, **options)
    assert json.dumps(guard.events) == json.dumps(reference.events)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert json.dumps(strip(got.history)) == json.dumps(strip(ref.history))
    for p, q in zip(got.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert same(guard.state_dict(), reference.state_dict())
    assert guard.refills >= guard.candidates - 2  # all but the first copies (the first spare held no state yet)
    live = {t.data_ptr() for t in got.model.parameters()}
    assert guard._good is not None
    for copy in (guard._good, guard._candidate or guard._good):  # copies, never the live tensors
        assert not live & {t.data_ptr() for t in copy["model"].values()}


def test_a_resume_mid_epoch_is_bit_identical(tmp_path: Path) -> None:
    # A checkpoint holds the guard's statistics and copies: the resumed run judges as the uninterrupted one, and
    # the rollback after the resume (the jump at step 50) lands at the same step, to the same state.
    data, make, base = problems()["linear"]
    options = {**COMMON, "optimizer": "momentum", "lr": base, "epochs": 12}
    torch.manual_seed(0)
    ref = descend.fit(make(), data, run_dir=tmp_path / "reference", callbacks=[Jump()], **options)
    run_dir = tmp_path / "run"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        descend.fit(make(), data, run_dir=run_dir, checkpoint_every=7, callbacks=[Jump(), Crash(40)], **options)
    latest = torch.load(sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    assert latest["step"] == 35 and latest["callbacks"]["DivergenceGuard"]["candidate"] is not None
    resumed = descend.fit(make(), data, resume=run_dir, callbacks=[Jump()], **options)

    def rollbacks(run: Path) -> list[dict[str, Any]]:
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        return [{k: v for k, v in e.items() if k not in ("time", "t")} for e in events if e["event"] == "guard_rollback"]

    assert len(rollbacks(tmp_path / "reference")) == 1
    assert rollbacks(run_dir) == rollbacks(tmp_path / "reference")
    assert resumed.guard == ref.guard
    for p, q in zip(resumed.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 1.0}, "factor=1.0; expected a number in (0, 1)"),
        ({"spike": 0.5}, "spike=0.5; expected a number > 1"),
        ({"rise": True}, "rise=True; expected a number > 1"),
        ({"factor": "x"}, "factor='x'; expected a number in (0, 1)"),
        ({"noise": None}, "noise=None; expected a number > 0"),
        ({"patience": 0}, "patience=0; expected an int >= 1"),
        ({"every": 2.5}, "every=2.5; expected an int >= 1"),
        ({"max_retries": -1}, "max_retries=-1; expected an int >= 0"),
        ({"rows": 0}, "rows=0; expected an int >= 1"),
        ({"check_grads": "some"}, "check_grads='some'; expected 'ends', 'last', 'all' or False"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"DivergenceGuard: invalid {message}".replace("(", r"\(").replace(")", r"\)")):
        DivergenceGuard(**kwargs)


def test_fit_rejects_a_bad_guard() -> None:
    data, _, _ = problems()["linear"]
    with pytest.raises(ConfigError, match="guard: invalid guard='yes'; expected True, False or a DivergenceGuard"):
        descend.fit("linear", data, guard="yes", epochs=1)  # type: ignore[arg-type]


def test_a_checkpoint_with_blocks_left_for_later_adds_them_on_load() -> None:
    # Checkpoints of an earlier guard may hold normal blocks whose judgement it had left for later ("group"):
    # loading adds them to the statistics in order, as that guard would have at its next judged block.
    guard = DivergenceGuard()
    for mean in (2.0, 1.5, 1.2):
        guard._update(mean)
    saved = {**guard.state_dict(), "group": [1.1, 1.0]}
    loaded = DivergenceGuard()
    loaded.load_state_dict(saved)
    for mean in (1.1, 1.0):
        guard._update(mean)
    assert loaded._blocks == guard._blocks + 2
    assert [loaded._n, loaded._level, loaded._var, loaded._last] == [guard._n, guard._level, guard._var, guard._last]


def test_a_copy_of_another_layout_is_made_afresh() -> None:
    # The in-place refill pairs the optimizer's fresh state dict with the old copy's entries; any other layout
    # (no per-parameter mappings, other keys, state that is a list of tensors as L-BFGS keeps) is refused, and
    # the copy is then cloned afresh.
    model = torch.nn.Linear(3, 1)
    guard = DivergenceGuard()
    guard._live = (tuple(model.state_dict()), list(model.state_dict(keep_vars=True).values()))
    spare = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
             "optimizer": {"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": []}}  # fmt: skip
    assert guard._refill(spare, {"param_groups": []}) is None  # no "state"
    assert guard._refill(spare, {"state": {0: [torch.tensor(1.0)]}, "param_groups": []}) is None
    assert guard._refill(spare, {"state": {0: {"step": torch.tensor(2.0), "d": torch.ones(3)}}}) is None
    assert guard._refill(spare, {"state": {0: {"step": [torch.tensor(2.0)]}}}) is None
    with torch.no_grad():
        model.weight.fill_(7.0)
    copied = guard._refill(spare, {"state": {0: {"step": torch.tensor(2.0)}}, "param_groups": [{"lr": 0.1}]})
    assert copied is not None
    assert torch.equal(copied[0]["weight"], torch.full((1, 3), 7.0)) and copied[0]["weight"] is spare["model"]["weight"]
    assert float(copied[1]["state"][0]["step"]) == 2.0 and copied[1]["param_groups"] == [{"lr": 0.1}]
