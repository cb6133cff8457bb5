"""fit(compile=True): the compiled step against the eager one (same run to rounding), which steps run eagerly
(counted exactly), a non-finite gradient handed to the divergence guard with nothing moved, bit-exact resume of a
compiled run with dropout, and the refusals.

Each distinct graph costs a compile of seconds, so the cases share one model shape and data set.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.nn import functional as F

import descend
from descend import optim
from descend.errors import ConfigError
from descend.models import MLP
from descend.optim.fast import compiler_available
from descend.train import Callback, TrainState
from descend.train import compiled as compiled_module
from tests.test_run import Crash

pytestmark = [
    pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning"),
    pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler"),
]


def dataset() -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 6, generator=g)
    y = (X[:, :3].sum(1) + 0.8 * torch.randn(400, generator=g) > 0).long() + (X[:, 3] > 1).long()
    return SimpleNamespace(X_train=X[:320], y_train=y[:320], X_val=X[320:], y_val=y[320:], task="multiclass", n_classes=3)


# 320 rows in batches of 30: 10 full batches and a short one of 20 per epoch (run eagerly).
ARGS: dict[str, Any] = {"epochs": 4, "batch_size": 30, "seed": 3, "tol": None, "early_stopping": False,
                        "diagnostics": False, "progress": False}  # fmt: skip
STEPS, SHORT = 4 * 11, 4


def flat(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.state_dict().values()])


@pytest.fixture
def compiled_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many steps ran through the compiled graph (a spy on CompiledStep.__call__)."""
    calls: list[int] = []
    original = compiled_module.CompiledStep.__call__

    def spy(self: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return original(self, x, y)

    monkeypatch.setattr(compiled_module.CompiledStep, "__call__", spy)
    return calls


CASES = {
    # optimizer, options: the fused update (a descend chain) in three shapes, and torch's Adam stepping on
    # compiled gradients
    "adam, l2 penalty, schedule": ("adam", {"lr": lambda t: 0.02 * 0.99**t, "l2": 1e-3}),
    "nesterov, weight decay": ("nesterov", {"lr": 0.05, "optimizer_options": {"momentum": 0.9}, "weight_decay": 1e-3}),
    "adamw": ("adamw", {"lr": 0.01}),
    "torch Adam": (torch.optim.Adam, {"lr": 0.01}),
    "torch SGD": (torch.optim.SGD, {"lr": 0.05, "optimizer_options": {"momentum": 0.9}}),
}


@pytest.mark.parametrize("case", CASES)
def test_compiled_fit_equals_the_eager_fit(case: str, compiled_calls: list[int]) -> None:
    optimizer, options = CASES[case]
    torch.manual_seed(0)
    eager = descend.fit(MLP(hidden=(16,)), dataset(), optimizer=optimizer, **options, **ARGS)
    assert not compiled_calls
    torch.manual_seed(0)
    fast = descend.fit(MLP(hidden=(16,)), dataset(), optimizer=optimizer, compile=True, **options, **ARGS)
    # Every step but the first (the optimizer makes its state) and each epoch's short last batch.
    assert len(compiled_calls) == STEPS - 1 - SHORT and set(compiled_calls) == {30}
    assert fast.steps == eager.steps == STEPS
    # float32 over 44 steps: the generated code rounds differently (contractions), nothing else differs. torch's
    # optimizers run their own step compiled, which orders Adam's arithmetic otherwise: a looser bound.
    rtol, atol = (2e-4, 1e-5) if case.startswith("torch") else (1e-5, 1e-6)
    torch.testing.assert_close(flat(fast.model), flat(eager.model), rtol=rtol, atol=atol)
    for a, b in zip(fast.history, eager.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=rtol) and a["lr"] == pytest.approx(b["lr"], rel=1e-12)
    assert eager.history[-1]["loss"] < eager.history[0]["loss"]  # it trained


class Poison(Callback):
    """Makes the loss non-finite for the step after ``at`` (through a factor the loss reads) and records the
    parameters and the optimizer's update count around that step."""

    def __init__(self, factor: torch.Tensor, at: int, model: torch.nn.Module, opt: Any, calls: list[int]) -> None:
        self.factor, self.at, self.model, self.opt, self.calls = factor, at, model, opt, calls
        self.seen: dict[str, Any] = {}

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.at:
            self.seen["before"], self.seen["updates"] = flat(self.model).clone(), self.opt.updates
            self.seen["calls"] = len(self.calls)
            self.factor.fill_(float("nan"))
        elif state.step == self.at + 1:
            self.seen["after"], self.seen["updates_after"] = flat(self.model).clone(), self.opt.updates
            self.seen["calls_after"] = len(self.calls)
            self.seen["loss"] = float(state.loss)  # type: ignore[arg-type]
            self.factor.fill_(1.0)


def test_a_non_finite_gradient_moves_nothing_and_reaches_the_guard(tmp_path: Path, compiled_calls: list[int]) -> None:
    factor = torch.ones(())

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out * factor, y)

    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(16,))
    opt = optim.Adam(model.parameters(), lr=0.01)
    poison = Poison(factor, 5, model, opt, compiled_calls)
    result = descend.fit(model, dataset(), optimizer=opt, loss=loss, compile=True, callbacks=[poison],
                         run_dir=tmp_path / "run", **ARGS)  # fmt: skip
    assert poison.seen["calls_after"] == poison.seen["calls"] + 1  # the poisoned step 6 went into the graph
    assert poison.seen["loss"] != poison.seen["loss"]  # NaN: the poisoned step's loss
    assert torch.equal(poison.seen["after"], poison.seen["before"])  # nothing moved
    assert poison.seen["updates_after"] == poison.seen["updates"]  # and the optimizer counted no update
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    skips = [e for e in events if e["event"] == "guard_skip"]
    assert len(skips) == 1 and skips[0]["step"] == 6
    assert result.stop_reason == "max_epochs" and torch.isfinite(flat(result.model)).all()


@pytest.mark.parametrize(("every", "crash", "again"), [(4, 26, 2), (7, 22, 0)])
def test_a_compiled_run_resumes_bit_for_bit(every: int, crash: int, again: int, tmp_path: Path,
                                            compiled_calls: list[int]) -> None:  # fmt: skip
    """Resumed mid-epoch (from step 24), and just before an epoch's short last batch (from step 21, so the
    resumed run's first batch is the short one, step 22)."""
    args = {**ARGS, "lr": 0.02}
    reference = descend.fit(MLP(hidden=(16,), dropout=0.25), dataset(), compile=True, **args)
    uninterrupted = len(compiled_calls)
    with pytest.raises(KeyboardInterrupt):
        descend.fit(MLP(hidden=(16,), dropout=0.25), dataset(), compile=True, run_dir=tmp_path / "run",
                    checkpoint_every=every, callbacks=[Crash(crash)], **args)  # fmt: skip
    resumed = descend.fit(MLP(hidden=(16,), dropout=0.25), dataset(), compile=True, resume=tmp_path / "run", **args)
    # The resumed run compiles its first full batch too (the optimizer state came with the checkpoint): the same
    # steps run compiled as in the uninterrupted run, so the numbers are the same bit for bit. ``again``: the
    # steps after the checkpoint, up to the crash, that ran compiled twice.
    assert len(compiled_calls) - uninterrupted == uninterrupted + again
    assert torch.equal(flat(resumed.model), flat(reference.model))
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)


def test_a_parameter_without_gradient_keeps_the_run_eager(compiled_calls: list[int]) -> None:
    class WithSpare(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(6, 3)
            self.spare = torch.nn.Parameter(torch.ones(2))  # unused: autograd leaves its grad None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    torch.manual_seed(0)
    eager = descend.fit(WithSpare(), dataset(), lr=0.01, **ARGS)
    torch.manual_seed(0)
    fast = descend.fit(WithSpare(), dataset(), lr=0.01, compile=True, **ARGS)
    assert not compiled_calls
    assert torch.equal(flat(fast.model), flat(eager.model))


def test_refusals() -> None:
    with pytest.raises(ConfigError, match=r"compile: invalid compile='yes'; expected True, False or None"):
        descend.fit(MLP(hidden=(4,)), dataset(), compile="yes", **ARGS)
    bn = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    with pytest.raises(ConfigError, match=r"compile: module '1' \(BatchNorm1d\) .*batch normalisation"):
        descend.fit(bn, dataset(), compile=True, **ARGS)
    with pytest.raises(ConfigError, match=r"compile: LBFGS re-evaluates the loss through a closure"):
        descend.fit(MLP(hidden=(4,)), dataset(), optimizer="lbfgs", batch_size="full", compile=True,
                    **{k: v for k, v in ARGS.items() if k != "batch_size"})  # fmt: skip


def test_a_step_torch_compile_cannot_take_goes_on_eagerly_with_a_warning(compiled_calls: list[int]) -> None:
    class Branchy(torch.nn.Module):  # control flow on a tensor's value: no single graph holds it
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            return out if float(out.sum()) > 0 else out * 2.0

    torch.manual_seed(0)
    eager = descend.fit(Branchy(), dataset(), lr=0.01, **ARGS)
    torch.manual_seed(0)
    with pytest.warns(RuntimeWarning, match=r"compile: torch.compile could not compile this training step .*eager"):
        fast = descend.fit(Branchy(), dataset(), lr=0.01, compile=True, **ARGS)
    assert len(compiled_calls) == 1  # tried once, then eager throughout
    assert torch.equal(flat(fast.model), flat(eager.model))


def test_train_compile_on_the_command_line(tmp_path: Path) -> None:
    """``descend train --compile`` trains through the compiled step: recorded in config.json, and the epochs'
    losses are the eager run's to rounding; an optimizer it cannot take is refused with exit 2."""
    import csv

    from click.testing import CliRunner

    from descend.cli.main import cli
    from descend.data import load_dataset

    load_dataset("iris").frame.to_csv(tmp_path / "iris.csv", index=False)
    args = ["train", str(tmp_path / "iris.csv"), "--target", "species", "--model", "mlp:8", "--batch-size", "16",
            "--epochs", "3", "--no-early-stopping", "--no-diagnostics", "--quiet"]  # fmt: skip
    losses = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        result = CliRunner().invoke(cli, [*args, *extra, "--out", str(tmp_path / name)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        with open(tmp_path / name / "metrics.csv") as f:
            losses[name] = [float(row["loss"]) for row in csv.DictReader(f)]
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["arguments"]["compile"] is (True if name == "compiled" else None)
        assert config["resolved"]["compile"] is (name == "compiled")
        said = "compiled: compile=True" if name == "compiled" else "eager: 24 planned steps, under 20,000"
        assert config["resolved"]["step"].startswith(said)
        assert config["resolved"]["step"] in (tmp_path / name / "report.html").read_text()  # the report says it too
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)
    # An optimizer the compiled step cannot take: exit 2, one line naming why, and no run folder left behind.
    refused = CliRunner().invoke(cli, [*args[:-3], "--optimizer", "lbfgs", "--batch-size", "full", "--compile",
                                       "--out", str(tmp_path / "refused")])  # fmt: skip
    assert refused.exit_code == 2 and not (tmp_path / "refused").exists()
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "compile: LBFGS re-evaluates the loss through a closure" in lines[0], refused.output


def test_hooks_that_would_watch_inside_the_step_keep_it_eager(compiled_calls: list[int]) -> None:
    """A gradient hook on a parameter, or an optimizer step hook other than the guard's, cannot run inside the
    graph: those steps run eagerly, the hooks see every step, and the run is the eager one bit for bit."""
    seen = {"grad": 0, "post": 0}

    def run(compile: bool, hook: str | None) -> torch.Tensor:
        torch.manual_seed(0)
        model = MLP(6, 3, hidden=(16,))
        opt = optim.Adam(model.parameters(), lr=0.01)
        if hook == "grad":
            model.net[0].weight.register_hook(lambda g: seen.__setitem__("grad", seen["grad"] + 1))
        if hook == "post":
            opt.register_step_post_hook(lambda o, a, k: seen.__setitem__("post", seen["post"] + 1))
        result = descend.fit(model, dataset(), optimizer=opt, compile=compile, **ARGS)
        return flat(result.model)

    eager = run(False, None)
    for hook in ("grad", "post"):
        assert torch.equal(run(True, hook), eager)
        assert not compiled_calls and seen[hook] == STEPS


def test_a_weight_decay_mask_is_applied_per_parameter(compiled_calls: list[int]) -> None:
    """A rule active for some parameters of a group only (decay on matrices, not biases) is chosen per parameter
    in the graph too; list-valued settings (betas as a list) are accepted."""

    def run(compile: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = MLP(6, 3, hidden=(16,))
        opt = optim.AdamW(model.parameters(), lr=0.01, betas=[0.9, 0.99], weight_decay=0.5,
                          weight_decay_mask="matrices")  # fmt: skip
        return flat(descend.fit(model, dataset(), optimizer=opt, compile=compile, **ARGS).model)

    eager = run(False)
    assert torch.allclose(run(True), eager, rtol=1e-5, atol=1e-6)
    assert len(compiled_calls) == STEPS - 1 - SHORT


class Switch(Callback):
    """At the end of the first epoch: sets every group's ``key`` to ``value``, or freezes ``param``."""

    def __init__(self, opt: Any, key: str = "", value: Any = None, param: torch.nn.Parameter | None = None) -> None:
        self.opt, self.key, self.value, self.param = opt, key, value, param

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch != 0:
            return
        if self.param is not None:
            self.param.requires_grad_(False)
        else:
            for group in self.opt.param_groups:
                group[self.key] = self.value


@pytest.mark.parametrize("change", ["momentum on", "freeze a layer"])
def test_settings_changed_mid_run_are_followed(change: str, compiled_calls: list[int]) -> None:
    """Momentum switched on mid-run keeps its buffer (the rule creates it on its first use, which the graph
    cannot hand back: that step runs eagerly); a parameter frozen mid-run is no longer trained."""

    def run(compile: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = MLP(6, 3, hidden=(16,))
        if change == "momentum on":
            opt: Any = optim.SGD(model.parameters(), lr=0.05)
            switch = Switch(opt, "momentum", 0.9)
        else:
            opt = optim.Adam(model.parameters(), lr=0.01)
            switch = Switch(opt, param=model.net[0].weight)
        return flat(descend.fit(model, dataset(), optimizer=opt, compile=compile, callbacks=[switch], **ARGS).model)

    eager = run(False)
    assert torch.allclose(run(True), eager, rtol=1e-5, atol=1e-6)
    assert compiled_calls  # the first epoch at least ran compiled


def test_a_rollback_to_the_first_state_runs_on(tmp_path: Path, compiled_calls: list[int]) -> None:
    """A parameter made NaN after step 5 is divergence (a NaN batch alone would be skipped): the guard rolls back
    to the state before the first step, where the optimizer holds no state yet: the next step runs eagerly (the
    optimizer makes its state again), then the run compiles on."""

    class PoisonWeight(Callback):
        def on_step_end(self, state: TrainState) -> None:
            if state.step == 5:
                with torch.no_grad():
                    state.model.net[0].weight[0, 0] = float("nan")

    def run(compile: bool) -> tuple[torch.Tensor, descend.train.DivergenceGuard]:
        torch.manual_seed(0)
        model = MLP(6, 3, hidden=(16,))
        opt = optim.Adam(model.parameters(), lr=0.01)
        guard = descend.train.DivergenceGuard()
        result = descend.fit(model, dataset(), optimizer=opt, compile=compile, guard=guard, callbacks=[PoisonWeight()],
                             **ARGS)  # fmt: skip
        return flat(result.model), guard

    eager, eager_guard = run(False)
    fast, fast_guard = run(True)
    assert eager_guard.rollbacks == fast_guard.rollbacks == 1
    assert eager_guard.events[0]["reason"] == fast_guard.events[0]["reason"] == "non_finite_params"
    assert eager_guard.events[0]["rolled_back_to"] == 0
    assert torch.allclose(fast, eager, rtol=1e-5, atol=1e-6)


class Scaled(torch.nn.Module):
    """An MLP whose outputs a 0-d parameter scales (a temperature)."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = MLP(6, 3, hidden=(16,))
        self.t = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) * self.t


@pytest.mark.parametrize("shape", ["mlp", "with a 0-d parameter"])
def test_a_float64_model_equals_the_eager_fit(shape: str, compiled_calls: list[int]) -> None:
    """float64: the step counts (0-d float64 tensors, which torch.compile does not write back when the graph
    changes them in place) advance as in the eager fit, and so do a 0-d parameter's moments."""

    def run(compile: bool) -> tuple[torch.Tensor, list[float]]:
        torch.manual_seed(0)
        model = (MLP(6, 3, hidden=(16,)) if shape == "mlp" else Scaled()).double()
        opt = optim.Adam(model.parameters(), lr=0.01)
        result = descend.fit(model, dataset(), optimizer=opt, compile=compile, **ARGS)
        return flat(result.model), [float(st["step"]) for st in opt.state.values() if "step" in st]

    (eager, eager_steps), (fast, fast_steps) = run(False), run(True)
    assert fast_steps == eager_steps == [STEPS] * len(eager_steps)
    torch.testing.assert_close(fast, eager, rtol=1e-9, atol=1e-12)
    assert len(compiled_calls) == STEPS - 1 - SHORT


def test_a_torch_optimizer_whose_lr_changes_goes_back_to_its_eager_step(compiled_calls: list[int]) -> None:
    """torch's compiled step guards on the lr's value: a new lr recompiles it once, which retires it; the steps
    go on with torch's eager step on the compiled gradients, and the run is the eager one to rounding."""

    class Halve(Callback):
        def __init__(self, opt: torch.optim.Optimizer) -> None:
            self.opt = opt

        def on_step_end(self, state: TrainState) -> None:
            if state.step == 20:
                for group in self.opt.param_groups:
                    group["lr"] /= 2

    def run(compile: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = MLP(6, 3, hidden=(16,))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        descend.fit(model, dataset(), optimizer=opt, compile=compile, callbacks=[Halve(opt)], **ARGS)
        return flat(model)

    eager = run(False)
    torch.testing.assert_close(run(True), eager, rtol=2e-4, atol=1e-5)
    assert len(compiled_calls) == STEPS - 1 - SHORT  # the gradients stayed compiled throughout



def test_compile_none_decides_from_the_planned_steps_and_the_model(monkeypatch: pytest.MonkeyPatch,
                                                                   compiled_calls: list[int]) -> None:
    """compile=None (the default) compiles a run of at least AUTO_MIN_STEPS planned steps (lowered here, so the
    test does not take 20,000 steps): the same run as compile=True, bit for bit; a shorter plan, compile=False, a
    model with batch norm or a closure optimizer stay eager, and each says why."""
    monkeypatch.setattr(compiled_module, "AUTO_MIN_STEPS", STEPS)
    torch.manual_seed(0)
    auto = descend.fit(MLP(hidden=(16,)), dataset(), lr=0.01, **ARGS)
    assert auto.step == f"compiled: {STEPS} planned steps, at least {STEPS}: the compile pays"
    assert len(compiled_calls) == STEPS - 1 - SHORT
    torch.manual_seed(0)
    forced = descend.fit(MLP(hidden=(16,)), dataset(), lr=0.01, compile=True, **ARGS)
    assert forced.step == "compiled: compile=True" and torch.equal(flat(forced.model), flat(auto.model))
    compiled_calls.clear()
    short = descend.fit(MLP(hidden=(16,)), dataset(), lr=0.01, **{**ARGS, "epochs": 3})
    assert short.step == f"eager: 33 planned steps, under {STEPS}: a compile of seconds would not pay"
    off = descend.fit(MLP(hidden=(16,)), dataset(), lr=0.01, compile=False, **ARGS)
    assert off.step == "eager: compile=False"
    bn = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    assert descend.fit(bn, dataset(), lr=0.01, **ARGS).step.startswith("eager: batch norm")
    lbfgs = descend.fit(MLP(hidden=(4,)), dataset(), optimizer="lbfgs",
                        **{**ARGS, "batch_size": "full", "epochs": STEPS})  # fmt: skip
    assert lbfgs.step == "eager: the optimizer re-evaluates the loss through a closure"
    assert not compiled_calls


@pytest.mark.parametrize(
    "change,why",
    [
        ({"mixed": True}, "autocast runs eagerly"),
        ({"distributed": True}, "DistributedDataParallel steps eagerly"),
        ({"device": torch.device("meta")}, "the rule is measured on CPUs"),
        ({"checkpointing": True}, "activation checkpointing"),
        ({"planned": compiled_module.AUTO_MIN_STEPS - 1}, "under 20,000"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_step_path_keeps_eager_what_the_compiled_step_does_not_serve(change: dict[str, Any], why: str) -> None:
    base: dict[str, Any] = {"planned": compiled_module.AUTO_MIN_STEPS, "model": torch.nn.Linear(3, 1), "penalty": None,
                            "closure": None, "mixed": False, "distributed": False, "device": torch.device("cpu"),
                            "checkpointing": False}  # fmt: skip
    assert compiled_module.step_path(None, **base)[0]
    compiled, said = compiled_module.step_path(None, **{**base, **change})
    assert not compiled and said.startswith("eager: ") and why in said
