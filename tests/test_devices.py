"""Devices, precision, gradient checkpointing and accumulation (descend.train.devices, descend.models.blocks).

Everything here runs on the CPU: bfloat16 autocast exists there, and float16 autocast with torch's CPU gradient
scaler follows the same rules as on CUDA, so the guard's handling of the scaler is tested without a GPU.
benchmarks/gpu.py checks the CUDA paths on a machine that has one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import descend
from descend.cli.main import cli
from descend.errors import ConfigError
from descend.models import CNN, GPT, MLP, FTTransformer
from descend.models.blocks import set_checkpointing
from descend.train import Callback, DivergenceGuard, devices
from descend.train.options import OPTIONS, PRECISIONS

QUIET = {"progress": False, "diagnostics": False}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


def _classes(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 10, generator=g)
    y = (X[:, :3].sum(1) > 0).long() + (X[:, 3] > 1).long()
    return X, y


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- devices -----------------------------------------------------------------------------------------------


def test_the_tables_precisions_are_the_devices_modules() -> None:
    assert PRECISIONS == devices.PRECISIONS
    assert OPTIONS["device"].resume_free and not OPTIONS["precision"].resume_free
    for word in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert OPTIONS["device"].parse(word) == word
    for bad in ("gpu", "cuda:", "cuda:x", "tpu"):
        with pytest.raises(ConfigError, match="expected auto, cpu, cuda, cuda:N or mps"):
            OPTIONS["device"].parse(bad)


def test_auto_and_cpu_resolve_here() -> None:
    assert devices.resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if devices._mps() else "cpu"
    assert devices.resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_device_is_one_clear_error() -> None:
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError) as caught:
            devices.resolve_device(spec)
        message = str(caught.value)
        assert message.startswith(f"device: device='{spec}' is not available") and "expected one of cpu" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_command_line_refuses_cuda_here_with_one_line_and_no_folder(tmp_path: Path) -> None:
    X, y = _classes(64)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,c,y\n" + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{int(t)}\n" for r, t in zip(X, y)))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(csv), "--target", "y", "--epochs", "1", "--out", str(out),
                                      "--device", "cuda"])  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "device='cuda' is not available" in lines[0]
    assert not out.exists()


def test_a_checkpoint_is_device_free_and_the_run_records_device_and_precision(tmp_path: Path) -> None:
    X, y = _classes(128)
    run = tmp_path / "run"
    descend.fit("mlp:16", (X, y), epochs=2, precision="bf16", run_dir=run, checkpoint_every=3, **QUIET)
    checkpoints = sorted((run / "checkpoints").glob("step-*.pt"))
    assert checkpoints
    for path in checkpoints:
        state = torch.load(path, weights_only=True)  # no map_location: the tensors as they were written

        def tensors(value: Any) -> list[torch.Tensor]:
            if isinstance(value, torch.Tensor):
                return [value]
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
            return [t for v in items for t in tensors(v)]

        found = tensors(state)
        assert found and all(t.device.type == "cpu" for t in found)
    config = json.loads((run / "config.json").read_text())
    assert config["arguments"]["device"] == "cpu" and config["arguments"]["precision"] == "bf16"
    assert config["resolved"]["device"] == "cpu" and config["resolved"]["precision"] == "bf16"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["precision"] == "bf16" and summary["device"] == "cpu"
    from descend.report import run_report

    assert "<td>cpu, bfloat16 autocast</td>" in run_report(run).read_text()


def test_cpu_state_moves_every_tensor_of_a_nested_payload() -> None:
    payload = {"a": torch.ones(2), "b": [torch.zeros(1), {"c": (torch.ones(3),)}], "n": 3}
    moved = devices.cpu_state(payload)
    assert moved["n"] == 3 and torch.equal(moved["b"][1]["c"][0], torch.ones(3))
    assert moved["a"] is payload["a"]  # already on the CPU: not copied


def test_a_run_resumes_with_another_device_argument(tmp_path: Path) -> None:
    X, y = _classes(128)
    run = tmp_path / "run"

    class Stop(Callback):
        def on_step_end(self, state: Any) -> None:
            if state.step == 6:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        descend.fit("mlp:16", (X, y), epochs=3, run_dir=run, device="cpu", checkpoint_every=2,
                    callbacks=[Stop()], **QUIET)  # fmt: skip
    resumed = descend.fit("mlp:16", (X, y), epochs=3, resume=run, device="auto", **QUIET)
    whole = descend.fit("mlp:16", (X, y), epochs=3, run_dir=tmp_path / "whole", **QUIET)
    assert torch.equal(_flat(resumed.model), _flat(whole.model))


# -- precision ---------------------------------------------------------------------------------------------


def test_bf16_trains_digits_within_one_point_of_float32(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    X, y = digits
    scores = {}
    for precision in ("32", "bf16"):
        r = descend.fit("mlp:64", (X, y), epochs=15, precision=precision, tol=None, early_stopping=False, **QUIET)
        scores[precision] = r.final["val_accuracy"]
    assert scores["32"] > 0.95  # a descent that learned, so the comparison means something
    assert abs(scores["bf16"] - scores["32"]) <= 0.01, scores


def test_bf16_runs_the_forward_in_bfloat16_and_keeps_float32_state() -> None:
    X, y = _classes(64)
    seen: list[torch.dtype] = []
    model = MLP(10, 3, hidden=(8,))
    model.net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype) if m.training else None)
    watch = _Inject(model, set())
    r = descend.fit(model, (X, y), epochs=1, precision="bf16", optimizer="adam", callbacks=[watch], **QUIET)
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert all(p.dtype == torch.float32 for p in r.model.parameters())
    assert watch.optimizer_dtypes == {torch.float32}  # Adam's moments


class _Inject(Callback):
    """Makes the first layer's gradient infinite in the backward pass of the chosen steps (before the scaler
    unscales it), and records the parameters after every step."""

    def __init__(self, model: torch.nn.Module, steps: set[int]) -> None:
        self.steps, self.step = steps, 0
        self.after: list[torch.Tensor] = []
        self.optimizer_dtypes: set[torch.dtype] = set()
        first = next(model.parameters())
        first.register_hook(lambda g: torch.full_like(g, float("inf")) if self.step in self.steps else g)

    def on_step_end(self, state: Any) -> None:
        self.after.append(_flat(state.model))
        self.step = state.step
        self.optimizer_dtypes |= {v.dtype for s in state.optimizer.state.values() if isinstance(s, dict)
                                  for v in s.values() if isinstance(v, torch.Tensor) and v.dim() > 0}  # fmt: skip


def test_the_guard_tells_the_scalers_skipped_steps_from_divergence() -> None:
    X, y = _classes(256)
    model = MLP(10, 3, hidden=(16,))
    injected = {4, 5, 6, 20}  # loop steps (0-based) whose scaled gradient overflows; three in a row among them
    inject = _Inject(model, injected)
    guard = DivergenceGuard()
    r = descend.fit(model, (X, y), epochs=3, batch_size=16, lr=1e-2, precision="16-mixed", guard=guard,
                    callbacks=[inject], tol=None, **QUIET)  # fmt: skip
    skips = [e for e in guard.events if e["event"] == "guard_skip"]
    assert [e["step"] for e in skips] == sorted(s + 1 for s in injected)  # an event per skipped step
    assert all(e["reason"] == "loss_scale_overflow" and e["cause"] == "loss_scale" for e in skips)
    assert [e["loss_scale"] for e in skips] == [65536.0 / 2**k for k in range(1, len(injected) + 1)]
    assert guard.scaler_skips == len(injected) and guard.skips == 0  # not bad batches either
    assert guard.rollbacks == 0 and guard.scale == 1.0 and not r.diverged  # no rollback, the rate unchanged
    for s in injected:  # nothing moved on a skipped step
        assert torch.equal(inject.after[s], inject.after[s - 1])
    assert not torch.equal(inject.after[7], inject.after[6])  # and the next step moved again
    assert inject.optimizer_dtypes == {torch.float32}  # the optimizer's state stays float32


def test_a_resumed_run_keeps_the_scalers_scale(tmp_path: Path) -> None:
    """The scale lowered by an overflow before the interruption is the scale after the resume: the next overflow
    halves it again (to a quarter of the initial 65536), as in the uninterrupted run."""
    X, y = _classes(256)

    class Stop(Callback):
        def on_step_end(self, state: Any) -> None:
            if state.step == 8:
                raise KeyboardInterrupt

    def run(folder: Path, stop: bool = False, resume: bool = False) -> DivergenceGuard:
        model = MLP(10, 3, hidden=(16,))
        guard = DivergenceGuard()
        callbacks: list[Callback] = [_Inject(model, {2, 12}), *([Stop()] if stop else [])]
        descend.fit(model, (X, y), epochs=2, batch_size=16, precision="16-mixed", guard=guard, callbacks=callbacks,
                    checkpoint_every=4, tol=None, **({"resume": folder} if resume else {"run_dir": folder}), **QUIET)  # fmt: skip
        return guard

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "stopped", stop=True)
    resumed, whole = run(tmp_path / "stopped", resume=True), run(tmp_path / "whole")
    scales = [[e["loss_scale"] for e in g.events if e["event"] == "guard_skip"] for g in (resumed, whole)]
    assert scales == [[65536.0 / 4], [65536.0 / 2, 65536.0 / 4]]  # the resumed guard saw only the later skip


def test_gradient_health_reads_unscaled_gradients() -> None:
    """The health record's gradient norm under 16-mixed is the true gradient's (the scale is 65536), within
    float16's rounding of the forward pass, against the float32 run's first step."""
    from descend.inspect.monitor import HealthMonitor

    X, y = _classes(64)
    norms = {}
    for precision in ("32", "16-mixed"):
        monitor = HealthMonitor(every=1)
        descend.fit("mlp:16", (X, y), max_steps=1, batch_size=64, precision=precision, callbacks=[monitor],
                    progress=False)  # fmt: skip
        norms[precision] = monitor.records[0]["global_grad_norm"]
    assert norms["16-mixed"] == pytest.approx(norms["32"], rel=1e-2)


def test_precision_is_refused_for_a_closure_optimizer() -> None:
    X, y = _classes(64)
    with pytest.raises(ConfigError, match="precision: precision='bf16' applies to first-order optimizers"):
        descend.fit("mlp:8", (X, y), optimizer="lbfgs", precision="bf16", epochs=1, **QUIET)


def test_compile_steps_eagerly_under_autocast_and_says_so(tmp_path: Path) -> None:
    X, y = _classes(64)
    descend.fit("mlp:8", (X, y), epochs=1, compile=True, precision="bf16", run_dir=tmp_path / "run", **QUIET)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["compile"] is False
    assert config["resolved"]["step"] == "eager: autocast runs eagerly (the compiled step is float32's)"


# -- gradient checkpointing --------------------------------------------------------------------------------


def _grads(model: torch.nn.Module, x: torch.Tensor, checkpointing: bool) -> tuple[list[torch.Tensor], list[Any]]:
    set_checkpointing(model, checkpointing)
    model.train()
    model.zero_grad()
    torch.manual_seed(1)  # dropout draws the same masks in both runs
    out = model(x)
    out.float().pow(2).mean().backward()
    buffers = [b.clone() for b in model.buffers()]  # batch norm's statistics: counted once, with or without
    return [p.grad.clone() for p in model.parameters()], buffers


CHECKPOINTED = {
    "mlp (dropout)": (lambda: MLP(12, 3, hidden=(16, 16, 16), dropout=0.2), (32, 12)),
    "mlp (layer norm)": (lambda: MLP(12, 3, hidden=(16, 16), norm="layer"), (32, 12)),
    "mlp (residual, batch norm)": (lambda: MLP(12, 3, hidden=(16, 16), residual=True, dropout=0.1), (32, 12)),
    "cnn (batch norm)": (lambda: CNN(2, 4, channels=(4, 8, 8)), (8, 2, 12, 12)),
    "cnn (residual)": (lambda: CNN(2, 4, channels=(4, 8), residual=True), (8, 2, 12, 12)),
    "gpt": (lambda: GPT(20, layers=3, dim=16, heads=2, block=8, dropout=0.1), (4, 8)),
    "ftt": (lambda: FTTransformer(6, 3, layers=2, dim=16, heads=2), (16, 6)),
}


@pytest.mark.parametrize("name", list(CHECKPOINTED))
def test_checkpointing_gives_the_same_gradients(name: str) -> None:
    build, shape = CHECKPOINTED[name]
    torch.manual_seed(0)
    model = build().double()
    gen = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 20, shape, generator=gen) if isinstance(model, GPT)
         else torch.randn(shape, generator=gen, dtype=torch.float64))  # fmt: skip
    plain, plain_buffers = _grads(model, x, False)
    torch.manual_seed(0)
    model = build().double()  # the same initial weights and statistics
    checked, checked_buffers = _grads(model, x, True)
    assert set_checkpointing(model, True) > 0
    for a, b in zip(plain, checked):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), (name, (a - b).abs().max())
    for a, b in zip(plain_buffers, checked_buffers):
        assert torch.equal(a, b), name


def test_checkpointing_keeps_less_for_the_backward_pass() -> None:
    """What autograd keeps for the backward pass, counted by its saved-tensor hooks: with checkpointing, a GPT
    keeps each block's input instead of everything inside its blocks."""

    def saved_bytes(on: bool) -> int:
        torch.manual_seed(0)
        model = GPT(50, layers=4, dim=32, heads=4, block=32)
        set_checkpointing(model, on)
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.randint(0, 50, (8, 32))).sum().backward()
        return total

    assert saved_bytes(True) < 0.5 * saved_bytes(False)


def test_fit_with_checkpointing_follows_the_same_descent() -> None:
    X, y = _classes(128)
    runs = [descend.fit("mlp:32,32,dropout=0.1", (X, y), epochs=2, checkpointing=on, **QUIET) for on in (False, True)]
    assert torch.allclose(_flat(runs[0].model), _flat(runs[1].model), rtol=0, atol=1e-6)


def test_checkpointing_refuses_a_model_without_blocks() -> None:
    X, y = _classes(64)
    with pytest.raises(ConfigError, match="checkpointing: SoftmaxRegression has no blocks"):
        descend.fit("softmax", (X, y), epochs=1, checkpointing=True, **QUIET)


# -- accumulation ------------------------------------------------------------------------------------------


def _accumulated(batch_size: int, accumulate: int, precision: str, updates: int = 20) -> torch.Tensor:
    X, y = _classes(256)
    r = descend.fit("mlp:32,32", (X, y), batch_size=batch_size, accumulate=accumulate, lr=1e-2, epochs=100,
                    max_steps=updates * accumulate, precision=precision, validation=0, tol=None, guard=False,
                    seed=3, **QUIET)  # fmt: skip
    return _flat(r.model)


def test_accumulation_of_n_batches_equals_one_batch_n_times_larger() -> None:
    # 4 micro-batches of 8 rows against one batch of 32, 20 updates of Adam; 256 rows, so the epochs line up
    whole, accumulated = _accumulated(32, 1, "32"), _accumulated(8, 4, "32")
    moved = (whole - _accumulated(32, 1, "32", updates=1)).abs().max()
    assert moved > 0.1  # the 20 updates went somewhere
    assert torch.allclose(whole, accumulated, rtol=0, atol=1e-6), (whole - accumulated).abs().max()


@pytest.mark.parametrize("schedule", ["cosine", "one-cycle"])
def test_accumulation_follows_the_schedule_of_the_larger_batch(schedule: str) -> None:
    """A schedule runs on the optimizer's updates: over 3 epochs, 24 updates of 4 micro-batches each, as the
    batch of 32 takes them (the schedule ends at the same rate, the weights agree)."""
    X, y = _classes(256)
    runs = [descend.fit("mlp:32,32", (X, y), batch_size=bs, accumulate=k, lr=1e-2, epochs=3, schedule=schedule,
                        validation=0, tol=None, guard=False, seed=3, **QUIET) for bs, k in ((32, 1), (8, 4))]  # fmt: skip
    assert runs[0].history[-1]["lr"] == pytest.approx(runs[1].history[-1]["lr"], abs=1e-12)
    assert torch.allclose(_flat(runs[0].model), _flat(runs[1].model), rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_accumulation_under_mixed_precision(precision: str) -> None:
    """Under autocast each micro-batch's gradient is rounded to 16 bits before the mean where the whole batch's
    is rounded once (bfloat16 keeps 8 bits: a relative 2**-8 = 0.4%), so the two runs agree to rounding, not
    to 1e-6. The tolerance: 1e-2 absolute on weights that moved by 0.17 (measured: 1.5e-3 bf16, 4.7e-3
    16-mixed), and a quarter of the gap between the 16-bit run and float32's (measured: 5.6e-2, 3.7e-2), so the
    accumulation adds much less than the precision itself does."""
    whole, accumulated = _accumulated(32, 1, precision), _accumulated(8, 4, precision)
    gap = (whole - _accumulated(32, 1, "32")).abs().max()
    difference = (whole - accumulated).abs().max()
    assert difference < 1e-2 and difference < 0.25 * gap, (difference, gap)
