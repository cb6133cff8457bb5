"""fit(schedule=...): a named shape or a multiplier over the planned run, peaking at the given rate or at the one
the range test picks; early stopping waits for the annealing."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
import torch

import descend
from descend.errors import ConfigError
from descend.schedules import annealing_start, cosine_annealing, named

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def _digits() -> descend.data.Dataset:
    return descend.data.load_dataset("digits")


def _quiet(**options: object) -> descend.train.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return descend.fit(progress=False, **options)  # type: ignore[arg-type]


def test_a_named_schedule_is_the_schedule_built_by_hand() -> None:
    common = {"model": "softmax", "data": _digits(), "optimizer": "momentum", "epochs": 3, "batch_size": 128,
              "early_stopping": False, "tol": None}  # fmt: skip
    planned = 3 * math.ceil(1437 / 128)
    by_name = _quiet(**common, lr=0.05, schedule="cosine")
    by_hand = _quiet(**common, lr=cosine_annealing(0.05, planned))
    assert [r["loss"] for r in by_name.history] == [r["loss"] for r in by_hand.history]
    for a, b in zip(by_name.model.parameters(), by_hand.model.parameters()):
        assert torch.equal(a, b)
    multiplier = _quiet(**common, lr=0.05, schedule=lambda t: 0.5 ** (t // 10))
    assert [r["lr"] for r in multiplier.history] == [0.05 * 0.5 ** ((r["step"]) // 10) for r in multiplier.history]


@pytest.mark.parametrize("optimizer", ["adam", torch.optim.SGD])
def test_lr_auto_picks_the_peak_of_the_schedule(tmp_path, optimizer: object) -> None:  # type: ignore[no-untyped-def]
    options = {"lr": "auto", "schedule": "one-cycle", "epochs": 4, "batch_size": 64, "early_stopping": False,
               "tol": None}  # fmt: skip
    if optimizer is torch.optim.SGD:
        options["optimizer_options"] = {"momentum": 0.9}
    result = _quiet(model="mlp", data=_digits(), optimizer=optimizer, run_dir=tmp_path / "run", **options)
    peak = result.lr_find.lr
    planned = 4 * math.ceil(1437 / 64)
    shape = named("one-cycle", peak, total_steps=planned)
    # metrics.csv's lr: the one-cycle over the run, peaking at the range test's rate; the rate of the next
    # update, for a descend optimizer and a torch one alike.
    assert [r["lr"] for r in result.history] == pytest.approx([shape(r["step"]) for r in result.history], rel=1e-9)
    rates = pd.read_csv(tmp_path / "run" / "schedule.csv")
    assert len(rates) == planned and rates["lr"].max() == pytest.approx(peak, rel=1e-3)
    config = descend.train.RunFolder(tmp_path / "run").read_json("config.json")
    assert config["resolved"]["lr"] == peak


def test_early_stopping_waits_for_the_schedule_to_anneal() -> None:
    # 60 noisy rows and a large MLP: the validation loss stops improving within a few epochs. With a constant
    # rate early stopping ends the run there; with a cosine it waits until the rate has fallen to half its peak.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(75, 8, generator=g)
    y = (X[:, 0] + 2 * torch.randn(75, generator=g) > 0).float()
    common = {"model": descend.models.MLP(8, 1, hidden=(128, 128)), "data": (X, y), "lr": 0.01, "epochs": 80,
              "early_stopping": descend.train.EarlyStopping(patience=3), "tol": None}  # fmt: skip
    constant = _quiet(**common)
    assert constant.stop_reason == "early_stopping" and constant.epochs < 30
    common["model"] = descend.models.MLP(8, 1, hidden=(128, 128))
    common["early_stopping"] = descend.train.EarlyStopping(patience=3)
    cosine = _quiet(**common, schedule="cosine")
    planned = 80 * 2  # 60 training rows, batches of 32
    assert annealing_start(cosine_annealing(0.01, planned), planned) == 80
    assert cosine.epochs >= 40 and cosine.stop_reason in ("early_stopping", "max_epochs")


def test_schedule_errors_name_the_argument() -> None:
    data = _digits()
    with pytest.raises(ConfigError, match="schedule: invalid schedule='sawtooth'; expected one of constant, cosine"):
        descend.fit("softmax", data, schedule="sawtooth", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="lr is already a schedule"):
        descend.fit("softmax", data, lr=cosine_annealing(0.1, 10), schedule="cosine", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="start_epoch"):
        descend.train.EarlyStopping(start_epoch=-1)
