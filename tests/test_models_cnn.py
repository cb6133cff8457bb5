"""CNNs (1-D, 2-D, residual) and the MLP's norm/residual options: built from the data's shape, each learns a task of
its kind, a JSON round trip gives identical outputs, a resumed run is bit-exact, curvature runs (and leaves batch
norm's running statistics alone), and a wrong spec names its bad part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import descend
from descend.errors import ConfigError
from descend.inspect.curvature import top_eigenvalue
from descend.inspect.diagnostics import training_loss
from descend.models import CNN, MLP, CNN1d, from_config, from_spec
from descend.train import Callback, TrainState

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def bars(n: int = 240, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 one-channel images of a vertical (class 0) or horizontal (class 1) bar at a random place, with noise."""
    g = torch.Generator().manual_seed(seed)
    X = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    y = torch.arange(n) % 2
    where = torch.randint(0, 8, (n,), generator=g)
    for i in range(n):
        if y[i] == 0:
            X[i, 0, :, where[i]] += 1.0
        else:
            X[i, 0, where[i], :] += 1.0
    return X, y


def bumps(n: int = 240, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals of length 32 holding a bump (class 0) or a dip-then-bump (class 1) at a random place: only the shape,
    not the place, tells the classes apart, the task a convolution is for."""
    g = torch.Generator().manual_seed(seed)
    X = 0.2 * torch.randn(n, 32, generator=g)
    y = torch.arange(n) % 2
    at = torch.randint(2, 28, (n,), generator=g)
    for i in range(n):
        X[i, at[i] - 1 : at[i] + 2] += 1.0
        if y[i] == 1:
            X[i, at[i] - 2] -= 1.5
    return X, y


SPECS = ["cnn:8,16", "cnn:8,residual=true,norm=layer", "cnn1d:8,16", "cnn1d:8,residual=true"]


def data_for(spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    return bars() if spec.startswith("cnn:") else bumps()


@pytest.mark.parametrize("spec", SPECS)
def test_a_cnn_learns_a_task_of_its_kind(spec: str) -> None:
    X, y = data_for(spec)
    result = descend.fit(spec, (X, y), epochs=15, lr=3e-3, seed=0, progress=False, early_stopping=False)
    assert result.history[-1]["val_accuracy"] >= 0.9, result.history[-1]


def test_sizes_come_from_the_examples_shape() -> None:
    X, y = bars(40)
    assert descend.fit("cnn:4", (X, y), epochs=1, seed=0, progress=False).model.in_features == 1
    rgb = torch.randn(40, 3, 6, 6)
    assert descend.fit("cnn:4", (rgb, y), epochs=1, seed=0, progress=False).model.in_features == 3
    assert descend.fit("mlp:8", (rgb, y), epochs=1, seed=0, progress=False).model.in_features == 108
    table, _ = bumps(40)
    assert descend.fit("cnn1d:4", (table, y), epochs=1, seed=0, progress=False).model.in_features == 1
    with pytest.raises(ConfigError, match=r"CNN1d takes examples of shape \(C, L\) or \(L,\); the data's examples "
                                          r"have shape \(3, 6, 6\)"):  # fmt: skip
        descend.fit("cnn1d:4", (rgb, y), epochs=1, seed=0, progress=False)


@pytest.mark.parametrize("model", [CNN(2, 3, channels=(4, 8)), CNN(3, 2, channels=(4, 8), residual=True),
                                   CNN1d(2, 3, channels=(4,), norm="none", dropout=0.2),
                                   MLP(5, 2, hidden=(8, 8), norm="layer"), MLP(5, 2, hidden=(8, 4), residual=True,
                                                                                dropout=0.1)])  # fmt: skip
def test_json_round_trip_gives_identical_outputs(model: Any) -> None:
    import json

    torch.manual_seed(0)
    shape = {CNN: (6, model.in_features, 5, 7), CNN1d: (6, model.in_features, 9), MLP: (6, 5)}[type(model)]
    x = torch.randn(*shape)
    model.train()(x)  # move batch norm's running statistics off their start
    rebuilt = from_config(json.loads(json.dumps(model.config())))
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_layer_names_read_by_block() -> None:
    names = [n for n, _ in CNN(1, 2, channels=(4, 8)).named_parameters()]
    assert names[:4] == ["net.stage1.conv.weight", "net.stage1.conv.bias", "net.stage1.norm.weight",
                         "net.stage1.norm.bias"]  # fmt: skip
    assert names[-1] == "net.head.linear.bias"
    names = [n for n, _ in MLP(3, 2, hidden=(4,), residual=True).named_parameters()]
    assert "net.blocks.block1.linear1.weight" in names and names[-1] == "net.head.bias"


class Crash(Callback):
    def on_step_end(self, state: TrainState) -> None:
        if state.step == 13:
            raise KeyboardInterrupt


@pytest.mark.parametrize("spec", ["cnn:4,8", "cnn1d:4,dropout=0.2", "mlp:8,8,residual=true,dropout=0.2"])
def test_a_resumed_run_is_bit_exact(tmp_path: Path, spec: str) -> None:
    X, y = data_for(spec)
    X, y = X[:120], y[:120]
    args: dict[str, Any] = {"epochs": 4, "batch_size": 16, "lr": 0.01, "seed": 1, "progress": False,
                            "early_stopping": False}  # fmt: skip
    reference = descend.fit(spec, (X, y), **args)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        descend.fit(spec, (X, y), run_dir=run, checkpoint_every=5, callbacks=[Crash()], **args)
    resumed = descend.fit(spec, (X, y), resume=run, **args)
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_curvature_uses_and_keeps_batch_norms_running_statistics() -> None:
    X, y = bars(64)
    model = CNN(1, 2, channels=(4,))
    model.train()(X)  # running statistics away from their start (mean 0, variance 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = training_loss(model, torch.nn.functional.cross_entropy, X, y)
    first = top_eigenvalue(list(model.parameters()), loss, tol=1e-3, seed=0)
    again = top_eigenvalue(list(model.parameters()), loss, tol=1e-3, seed=0)
    assert first.top > 0 and first.top == again.top  # eval mode: the same surface each time
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running statistics not updated by the products
    assert model.training  # the model's mode is restored


def test_fit_measures_the_sharpness_and_gradient_health_of_a_cnn(tmp_path: Path) -> None:
    import json

    X, y = bars(64)
    descend.fit("cnn:4", (X, y), epochs=2, batch_size=16, optimizer="sgd", lr=0.05, seed=0, progress=False,
                sharpness_every=3,
                health_every=3, run_dir=tmp_path / "run")  # fmt: skip
    lines = (tmp_path / "run" / "curvature.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [3, 6] and all(r["sharpness"] > 0 for r in records)
    health = (tmp_path / "run" / "health.jsonl").read_text()
    assert "stage1.conv" in health and "head.linear" in health


@pytest.mark.parametrize(("spec", "message"), [
    ("cnn:0", r"invalid item '0' in 'cnn:0'; expected positive widths \(channels\)"),
    ("cnn:8,kernel=4", r"CNN: invalid kernel=4; expected an odd positive int"),
    ("cnn:8,norm=group", r"CNN: unknown norm 'group'; expected one of batch, layer, none"),
    ("cnn1d:8,hidden=3", r"cnn1d has no setting 'hidden'; expected one of kernel, norm, residual, dropout, init"),
    ("mlp:8,norm=instance", r"MLP: unknown norm 'instance'; expected auto or one of none, batch, layer"),
    ("mlp:8,residual=maybe", r"MLP: invalid residual='maybe'; expected true or false"),
    ("resnet:8", r"unknown model 'resnet:8'; expected one of .*cnn1d, cnn"),
])  # fmt: skip
def test_a_wrong_spec_names_its_bad_part(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_spec(spec)


def test_residual_mlp_is_the_tabular_resnet() -> None:
    m = MLP(4, 3, hidden=(8, 16), residual=True)
    assert m.norm == "batch" and [type(b.linear1).__name__ for b in m.net.blocks] == ["Linear", "Linear"]
    assert m.net.blocks.block2.linear1.out_features == 16 and m.net.blocks.block2.linear2.out_features == 8
    x = torch.randn(10, 4)
    block = m.net.blocks.block1.eval()
    with torch.no_grad():
        inner = block.linear2(torch.relu(block.linear1(block.norm(x[:, :1].expand(10, 8)))))
        assert torch.allclose(block(x[:, :1].expand(10, 8)), x[:, :1].expand(10, 8) + inner)
