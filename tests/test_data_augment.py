"""Seeded augmentation (flips, crops) against a naive per-example reference; a resumed run with augmentation is
bit-exact; augment and image_size reach the data from fit and the command line, and are refused where they do not
apply; compile=True trains a CNN without batch norm as the eager loop does and refuses one with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import descend
from descend.cli.main import cli
from descend.data.augment import AUGMENTS, Augment
from descend.errors import ConfigError
from descend.train import options
from tests.test_models_cnn import Crash, bars, bumps

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def naive(x: torch.Tensor, kind: str, seed: int, step: int, pad: int) -> torch.Tensor:
    """The same draws, applied one example and one axis at a time by slicing a zero-padded copy."""
    g = Augment(kind, seed=seed).generator(step)
    out = x.clone()
    if "flip" in kind:
        flips = torch.rand(len(x), generator=g) < 0.5
        out = torch.stack([e.flip(-1) if f else e for e, f in zip(out, flips, strict=True)])
    if "crop" in kind:
        for axis in range(2, x.dim()):
            offsets = torch.randint(0, 2 * pad + 1, (len(x),), generator=g)
            rows = []
            for e, o in zip(out, offsets, strict=True):
                shape = list(e.shape)
                shape[axis - 1] += 2 * pad
                padded = torch.zeros(shape)
                padded.narrow(axis - 1, pad, e.shape[axis - 1]).copy_(e)
                rows.append(padded.narrow(axis - 1, int(o), e.shape[axis - 1]))
            out = torch.stack(rows)
    return out


@pytest.mark.parametrize("kind", ["flip", "crop", "flip+crop"])
@pytest.mark.parametrize("shape", [(6, 2, 9), (6, 3, 5, 7)])
def test_augment_is_the_naive_per_example_rule(kind: str, shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    for step in (0, 5):
        assert torch.equal(Augment(kind, seed=3, pad=2)(x, step), naive(x, kind, 3, step, pad=2))
    # the default pad is an eighth of each axis, at least 1: a crop of 8 pixels moves by at most 1
    moved = Augment("crop", seed=0)(torch.ones(50, 1, 8, 8), 0)
    assert moved.sum((2, 3)).min() >= 49 and moved.sum((2, 3)).min() < 64


def test_augment_is_a_function_of_seed_and_step_only() -> None:
    x = torch.randn(32, 1, 8, 8)
    a = Augment("flip+crop", seed=0)
    rng = torch.get_rng_state()
    first = a(x, 3)
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator (dropout's) is not drawn from
    assert torch.equal(first, Augment("flip+crop", seed=0)(x, 3))
    assert not torch.equal(first, a(x, 4)) and not torch.equal(first, Augment("flip+crop", seed=1)(x, 3))
    assert torch.equal(Augment("none", seed=0)(x, 3), x)
    assert options.AUGMENTS == AUGMENTS


@pytest.mark.parametrize(("spec", "augment"), [("cnn:4,8", "flip+crop"), ("cnn1d:4,dropout=0.2", "crop")])
def test_a_resumed_run_with_augmentation_is_bit_exact(tmp_path: Path, spec: str, augment: str) -> None:
    X, y = bars(120) if spec.startswith("cnn:") else bumps(120)
    if spec.startswith("cnn1d"):
        X = X[:, None]  # N x 1 x L: a signal with its channel axis
    args: dict[str, Any] = {"epochs": 3, "batch_size": 16, "lr": 0.01, "seed": 1, "progress": False,
                            "early_stopping": False, "augment": augment}  # fmt: skip
    reference = descend.fit(spec, (X, y), **args)
    plain = descend.fit(spec, (X, y), **{**args, "augment": "none"})
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        descend.fit(spec, (X, y), run_dir=run, checkpoint_every=5, callbacks=[Crash()], **args)
    resumed = descend.fit(spec, (X, y), resume=run, **args)
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(plain.model.net.head.linear.weight, reference.model.net.head.linear.weight)


def test_augment_is_refused_where_it_does_not_apply() -> None:
    X, y = bars(40)
    with pytest.raises(ConfigError, match=r"augment: augment='flip' applies to examples with a channel and spatial "
                                          r"axes .* the training features have shape \(32, 5\)"):  # fmt: skip
        descend.fit("mlp:4", (torch.randn(40, 5), y), augment="flip", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="augment: augment='crop' needs a first-order optimizer"):
        descend.fit("cnn:4", (X, y), optimizer="lbfgs", augment="crop", epochs=1, progress=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8)
    with pytest.raises(ConfigError, match="augment: augment='flip' applies to data in memory, and this data is a "
                                          "loader"):  # fmt: skip
        descend.fit("cnn:4", loader, augment="flip", epochs=1, progress=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    g = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(10):
            Image.fromarray(g.integers(0, 255, (12, 10), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_image_size_reaches_the_folder_and_is_refused_for_other_data(folder: Path, tmp_path: Path) -> None:
    square = descend.fit("cnn:2", str(folder), image_size=6, epochs=1, progress=False, diagnostics=False)
    assert tuple(square.data.X_train.shape[1:]) == (1, 6, 6)
    oblong = descend.fit("cnn:2", str(folder), image_size=(4, 5), epochs=1, progress=False, diagnostics=False)
    assert tuple(oblong.data.X_train.shape[1:]) == (1, 4, 5)
    with pytest.raises(ConfigError, match="image_size: image_size=8 applies to a folder of images, and this data "
                                          "is not one"):  # fmt: skip
        descend.fit("cnn:2", bars(20), image_size=8, epochs=1, progress=False)
    assert options.OPTIONS["image_size"].parse("7x9") == (7, 9) and options.OPTIONS["image_size"].parse("7") == 7
    r = CliRunner().invoke(cli, ["train", str(folder), "--target", "label", "--model", "cnn:2", "--image-size", "5x7",
                                 "--augment", "flip", "--epochs", "1", "--out", str(tmp_path / "run"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    arguments = json.loads((tmp_path / "run" / "config.json").read_text())["arguments"]
    assert arguments["image_size"] == [5, 7] and arguments["augment"] == "flip"
    saved = descend.load(tmp_path / "run")  # predicts from the folder's images read at the trained size
    assert len(saved.predict(str(folder))) == 20 and saved.preprocessor.image["size"] == [5, 7]


def test_compile_refuses_batch_norm_by_name() -> None:
    with pytest.raises(ConfigError, match=r"compile: module 'net.stage1.norm' \(BatchNorm2d\) updates running "
                                          "statistics"):  # fmt: skip
        descend.fit("cnn:4", bars(32), compile=True, epochs=1, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "data"), [("cnn:4,norm=layer", bars), ("cnn1d:4,norm=none", bumps)])
def test_compile_trains_a_cnn_as_the_eager_loop_does(spec: str, data: Any) -> None:
    args: dict[str, Any] = {"epochs": 2, "batch_size": 16, "lr": 0.01, "seed": 0, "progress": False,
                            "diagnostics": False, "augment": "crop"}  # fmt: skip
    X, y = data(64)
    X = X if X.dim() == 4 else X[:, None]
    compiled = descend.fit(spec, (X, y), compile=True, **args)
    eager = descend.fit(spec, (X, y), **args)
    for a, b in zip(compiled.model.state_dict().values(), eager.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
