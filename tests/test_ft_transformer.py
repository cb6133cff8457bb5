"""The FT-Transformer: built from the table's shape, one token per feature that attends to every other, learns
an interaction a linear model cannot, the JSON round trip, and a killed run resumed bit for bit."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import descend
from descend.errors import ConfigError
from descend.models import FTTransformer, from_config, from_spec
from tests.test_run import Crash

TINY = "ftt:layers=1,dim=16,heads=2,dropout=0"


def xor_table(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    # the class is the sign of x0 * x1: no single feature and no linear score separates it
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] * X[:, 1] > 0).long()


def data(n: int = 400) -> SimpleNamespace:
    X, y = xor_table(n, 0)
    X_val, y_val = xor_table(200, 1)
    return SimpleNamespace(X_train=X, y_train=y, X_val=X_val, y_val=y_val, task="multiclass")


def _quiet_fit(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return descend.fit(*args, progress=False, **kwargs)


def test_spec_builds_from_the_tables_shape() -> None:
    model = from_spec("ftt:layers=2,dim=32,heads=4")
    assert not model.built
    result = _quiet_fit(model, data(64), lr=1e-3, epochs=1)
    assert (result.model.in_features, result.model.out_features) == (4, 2)
    tokenizer = result.model.net.tokenizer
    assert tokenizer.weight.shape == (4, 32) and tokenizer.cls.shape == (1, 1, 32)
    assert len(result.model.net.blocks) == 2


def test_every_feature_reaches_the_cls_token() -> None:
    # non-causal: the CLS token comes first, so a causal mask would hide every feature from it
    model = FTTransformer(5, 3, layers=1, dim=8, heads=2, dropout=0.0).eval()
    x = torch.randn(2, 5)
    base = model(x)
    for j in range(5):
        changed = x.clone()
        changed[:, j] += 1.0
        assert not torch.allclose(model(changed), base), j


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="dim=10 with heads=4"):
        FTTransformer(3, 2, dim=10, heads=4)
    with pytest.raises(ConfigError, match=r"dropout=1\.5"):
        FTTransformer(3, 2, dropout=1.5)
    with pytest.raises(ConfigError, match="layers=0"):
        from_spec("ftt:layers=0")


def test_learns_an_interaction_a_linear_model_cannot() -> None:
    ftt = _quiet_fit(TINY, data(), optimizer="adamw", lr=3e-3, batch_size=32, epochs=40, seed=0, early_stopping=False)
    linear = _quiet_fit("softmax", data(), lr=1e-2, batch_size=32, epochs=40, seed=0, early_stopping=False)
    assert linear.final["val_accuracy"] < 0.65
    assert ftt.final["val_accuracy"] > 0.9


def test_json_round_trip_rebuilds_identical_outputs() -> None:
    model = from_spec("ftt:layers=2,dim=16,heads=4,dropout=0.2").build(6, 3).eval()
    config = json.loads(json.dumps(model.config()))
    twin = from_config(config).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(5, 6)
    assert torch.equal(model(x), twin(x))
    assert config == {"class": "FTTransformer", "in_features": 6, "out_features": 3, "layers": 2, "dim": 16,
                      "heads": 4, "dropout": 0.2}  # fmt: skip


def test_saved_run_predicts_as_the_trained_model(tmp_path: Path) -> None:
    result = _quiet_fit(TINY, data(64), lr=1e-3, epochs=2, run_dir=tmp_path / "run")
    saved = descend.load(tmp_path / "run")
    x = data(64).X_val
    with torch.no_grad():
        assert torch.equal(saved.model.eval()(x), result.model.eval()(x))


def test_a_run_killed_mid_training_resumes_bit_exactly(tmp_path: Path) -> None:
    # dropout on: the resumed run must draw the same dropout masks as the whole one
    spec = "ftt:layers=1,dim=16,heads=2,dropout=0.1"
    options = dict(optimizer="adamw", lr=3e-3, batch_size=16, epochs=3, checkpoint_every=4, seed=5,
                   early_stopping=False, health_every=5, sharpness_every=10)  # fmt: skip
    whole = _quiet_fit(spec, data(96), run_dir=tmp_path / "whole", **options)
    with pytest.raises(KeyboardInterrupt):
        _quiet_fit(spec, data(96), run_dir=tmp_path / "cut", callbacks=[Crash(10)], **options)
    resumed = _quiet_fit(spec, data(96), resume=tmp_path / "cut", **options)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]
