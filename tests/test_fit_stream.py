"""fit on data that need not fit in memory: a DataLoader of (X, y) batches, with a validation loader.

Oracles: a hand-written loop over the same DataLoader reseeded with ``seed + epoch`` each epoch (bit for bit,
float64), the validation numbers computed on the concatenated validation tensors, and an uninterrupted run for
a resume from a checkpoint written mid-epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

import descend
from descend.data import LoaderBatches
from descend.errors import ConfigError, DataError
from descend.metrics import evaluate
from descend.models import MLP
from tests.test_run import Crash

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def tensors(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).long() + (X[:, 3] > 0.8).long()
    return X, y


def loaders(batch_size: int = 16) -> tuple[DataLoader[Any], DataLoader[Any]]:
    X, y = tensors()
    return (DataLoader(TensorDataset(X[:240], y[:240]), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(X[240:], y[240:]), batch_size=25))  # fmt: skip


def net() -> MLP:
    torch.manual_seed(0)
    return MLP(5, 3, hidden=(12,)).double()


def test_a_shuffling_loader_trains_as_a_hand_written_loop_reseeded_per_epoch() -> None:
    train, _ = loaders()
    model, reference = net(), net()
    result = descend.fit(model, train, validation=None, optimizer="momentum", lr=0.05, epochs=4, seed=7, tol=None,
                         progress=False)  # fmt: skip
    assert result.steps == 4 * 15 and result.stop_reason == "max_epochs"
    X, y = tensors()
    gen = torch.Generator()
    hand = DataLoader(TensorDataset(X[:240], y[:240]), batch_size=16, shuffle=True, generator=gen)
    opt = descend.optim.Momentum(reference.parameters(), lr=0.05)
    losses = []
    for epoch in range(4):
        gen.manual_seed(7 + epoch)
        total = 0.0
        for xb, yb in hand:
            loss = F.cross_entropy(reference(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss)
        losses.append(total / 15)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    assert [row["loss"] for row in result.history] == pytest.approx(losses, rel=1e-12)


def test_validation_loader_gives_the_numbers_of_the_whole_validation_set() -> None:
    train, val = loaders()
    result = descend.fit(net(), train, validation=val, epochs=3, early_stopping=False, progress=False)
    X, y = tensors()
    with torch.no_grad():
        out = result.model(X[240:])
    row = result.history[-1]
    assert row["val_loss"] == pytest.approx(float(F.cross_entropy(out, y[240:])), rel=1e-12)
    for name, value in evaluate(out, y[240:], "multiclass").items():
        assert row[f"val_{name}"] == pytest.approx(value, rel=1e-12)
    # With a validation loader, early stopping is on by default, as with a validation split.
    stopped = descend.fit(net(), train, validation=val, epochs=200, lr=0.05, progress=False)
    assert stopped.stop_reason == "early_stopping"


def test_resume_mid_epoch_continues_with_the_same_batches(tmp_path: Path) -> None:
    train, val = loaders()
    args: dict[str, Any] = {"validation": val, "epochs": 5, "lr": 0.02, "seed": 2, "tol": None, "progress": False,
                            "early_stopping": False}  # fmt: skip
    reference = descend.fit(net(), train, **args)
    with pytest.raises(KeyboardInterrupt):
        descend.fit(net(), train, run_dir=tmp_path / "run", checkpoint_every=4, callbacks=[Crash(37)], **args)
    resumed = descend.fit(net(), train, resume=tmp_path / "run", **args)
    assert resumed.steps == reference.steps == 75
    for p, q in zip(resumed.model.parameters(), reference.model.parameters()):
        assert torch.equal(p, q)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)


def test_task_is_read_from_the_first_batches_and_lr_auto_uses_them() -> None:
    X, y = tensors()
    binary = DataLoader(TensorDataset(X, (y > 0).long()), batch_size=32)
    regression = DataLoader(TensorDataset(X, X[:, 0] * 2.0), batch_size=32)
    assert descend.fit("logistic", binary, epochs=1, progress=False).model(X.float()).shape == (300, 1)
    fitted = descend.fit("linear", regression, epochs=30, lr="auto", progress=False)
    assert fitted.lr_find is not None and not fitted.lr_find.fallback
    assert fitted.history[-1]["loss"] < 0.05 * fitted.history[0]["loss"]


class NoLength(torch.utils.data.IterableDataset[Any]):
    def __iter__(self) -> Any:
        X, y = tensors(64)
        return iter(zip(X, y))


class Triples(Dataset[Any]):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> Any:
        return torch.zeros(5), torch.tensor(0), torch.tensor(1)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        (DataLoader(NoLength(), batch_size=8), {}, ConfigError, "does not know its length"),
        (loaders()[0], {"validation": 0.2}, ConfigError, "validation=0.2 with a loader"),
        (DataLoader(Triples(), batch_size=4), {}, DataError, "batch 0 of the loader is a list; expected a pair"),
        (loaders()[0], {"optimizer": "lbfgs", "batch_size": "full"}, ConfigError, "which a loader does not hold"),
        (loaders()[0], {"scale_target": True}, ConfigError, "the data is a loader"),
        (LoaderBatches([]), {}, DataError, "yields no batches"),
    ],
)
def test_bad_loaders_are_refused(data: Any, kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        descend.fit(net(), data, epochs=1, progress=False, **kwargs)


def test_a_class_beyond_the_models_outputs_is_named() -> None:
    X, y = tensors(4000)
    y = y.clone()
    y[3000] = 5  # the first 2,048 rows hold classes 0-2; row 3000 is in batch 93 (unshuffled, 32 per batch)
    loader = DataLoader(TensorDataset(X, y), batch_size=32)
    with pytest.raises(DataError, match=r"batch 93 of epoch 1 holds class 5, but the model has 3 outputs"):
        descend.fit(MLP(hidden=(4,)).double(), loader, epochs=1, progress=False)
