"""Batches: each example once per epoch, seeded order, exact mid-epoch resume through torch.save/torch.load."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from descend.data import Batches, DataOptionError, LoaderBatches

N = 53  # prime, so no batch size above 1 divides it and the last batch is short


def epoch(b: Batches) -> list[torch.Tensor]:
    return list(b)


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("batch_size", [1, 7, N, "full", N + 10])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_example_appears_exactly_once_per_epoch(batch_size: int | str, shuffle: bool) -> None:
    b = Batches(N, batch_size, shuffle=shuffle, seed=3)
    size = N if batch_size == "full" else min(int(batch_size), N)
    orders = []
    for e in range(3):
        batches = epoch(b)
        assert b.epoch == e
        assert len(batches) == len(b) == -(-N // size)
        assert all(x.dtype == torch.int64 for x in batches)
        assert [len(x) for x in batches[:-1]] == [size] * (len(batches) - 1)
        order = torch.cat(batches)
        assert torch.equal(torch.sort(order).values, torch.arange(N))
        orders.append(order)
    if shuffle:
        assert not torch.equal(orders[0], orders[1])  # reshuffled each epoch
    if not shuffle:
        assert all(torch.equal(o, torch.arange(N)) for o in orders)


def test_drop_last_leaves_out_the_short_batch() -> None:
    batches = epoch(Batches(N, 10, seed=0, drop_last=True))
    assert [len(x) for x in batches] == [10] * 5


def test_same_seed_same_order_other_seed_other_order() -> None:
    a = [torch.cat(epoch(b)) for b in [Batches(N, 7, seed=11)] for _ in range(4)]
    b = [torch.cat(epoch(b)) for b in [Batches(N, 7, seed=11)] for _ in range(4)]
    c = [torch.cat(epoch(b)) for b in [Batches(N, 7, seed=12)] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_shuffled_order_matches_torch_randperm_from_the_seed() -> None:
    # The reference: one generator seeded once, one randperm per epoch.
    g = torch.Generator().manual_seed(5)
    want = [torch.randperm(N, generator=g) for _ in range(3)]
    b = Batches(N, 4, seed=5)
    for w in want:
        assert torch.equal(torch.cat(epoch(b)), w)


@pytest.mark.parametrize(("epochs_done", "batches_done"), [(0, 3), (2, 5), (1, 0), (1, 8)])
def test_resume_mid_epoch_continues_the_same_order(epochs_done: int, batches_done: int) -> None:
    reference = Batches(N, 6, seed=9)
    full = [torch.cat(epoch(reference)) for _ in range(epochs_done + 2)]

    run = Batches(N, 6, seed=9)
    for _ in range(epochs_done):
        epoch(run)
    it = iter(run)
    seen = [next(it) for _ in range(batches_done)]
    state = roundtrip(run.state_dict())  # a checkpoint after the step on the last batch seen
    # Before the first batch of an epoch, the state still describes the finished previous epoch.
    assert state["position"] == batches_done or (batches_done == 0 and state["epoch_done"])

    resumed = Batches(N, 6, seed=0)  # the seed comes from the state
    resumed.load_state_dict(state)
    rest = epoch(resumed)
    got = torch.cat(seen + rest)
    assert torch.equal(got, full[epochs_done])
    assert resumed.epoch == epochs_done
    assert torch.equal(torch.cat(epoch(resumed)), full[epochs_done + 1])


def test_resume_after_the_last_batch_keeps_the_callers_epoch_count() -> None:
    run, reference = Batches(N, 10, seed=1), Batches(N, 10, seed=1)
    want = [torch.cat(epoch(reference)) for _ in range(2)]
    it = iter(run)
    first = [next(it) for _ in range(len(run))]  # every batch, loop not yet finished
    assert torch.equal(torch.cat(first), want[0])
    resumed = Batches(N, 10, seed=1)
    resumed.load_state_dict(roundtrip(run.state_dict()))
    assert epoch(resumed) == []  # the rest of epoch 0 is empty
    assert torch.equal(torch.cat(epoch(resumed)), want[1]) and resumed.epoch == 1


def test_state_dict_holds_only_plain_types_and_tensors() -> None:
    b = Batches(N, 7, seed=2)
    next(iter(b))
    for v in b.state_dict().values():
        assert isinstance(v, (int, str, bool, torch.Tensor))


def test_resuming_with_other_settings_is_refused() -> None:
    state = Batches(N, 7).state_dict()
    with pytest.raises(DataOptionError, match=r"saved batches have n=53, these have n=54"):
        Batches(54, 7).load_state_dict(state)
    with pytest.raises(DataOptionError, match=r"batch_size=7, these have batch_size=8"):
        Batches(N, 8).load_state_dict(state)


def test_over_gathers_rows_of_each_tensor() -> None:
    X, y = torch.randn(N, 3), torch.arange(N)
    b = Batches(N, 8, seed=0)
    got = list(b.over(X, y))
    reference = Batches(N, 8, seed=0)
    for (xb, yb), idx in zip(got, epoch(reference)):
        assert torch.equal(xb, X[idx]) and torch.equal(yb, y[idx])


@pytest.mark.parametrize(
    ("batch_size", "match"),
    [
        (0, r"got 0"),
        (-4, r"got -4"),
        (2.5, r"got 2\.5"),
        ("all", r"got 'all'"),
        (True, r"got True"),
        (None, "got None"),
    ],
)
def test_bad_batch_sizes_are_refused(batch_size: Any, match: str) -> None:
    with pytest.raises(
        DataOptionError, match=r"batch_size must be 'full' .* integer >= 1 \(mini-batch\); " + match
    ):
        Batches(N, batch_size)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"n": 0}, r"n \(the number of rows\)"), ({"seed": "x"}, r"seed")]
)
def test_bad_rows_or_seed_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(DataOptionError, match=match):
        Batches(**{"n": N, **kwargs})


def test_loader_batches_resume_a_seeded_shuffling_dataloader() -> None:
    ds = TensorDataset(torch.arange(40.0).unsqueeze(1), torch.arange(40))

    def make() -> LoaderBatches:
        return LoaderBatches(DataLoader(ds, batch_size=6, shuffle=True), seed=4)

    reference = make()
    want = [[yb for _, yb in reference] for _ in range(2)]
    assert not all(torch.equal(a, b) for a, b in zip(want[0], want[1]))  # shuffled per epoch
    run = make()
    it = iter(run)
    seen = [next(it)[1] for _ in range(3)]
    resumed = make()
    resumed.load_state_dict(roundtrip(run.state_dict()))
    rest = [yb for _, yb in resumed]
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, want[0]))
    assert all(torch.equal(a, b) for a, b in zip([yb for _, yb in resumed], want[1]))


def test_loader_batches_pass_through_any_iterable() -> None:
    batches = [(torch.ones(2, 1) * k, torch.tensor([k, k])) for k in range(5)]
    lb = LoaderBatches(batches)
    assert [int(y[0]) for _, y in lb] == [0, 1, 2, 3, 4] and lb.epoch == 0
    assert [int(y[0]) for _, y in lb] == [0, 1, 2, 3, 4] and lb.epoch == 1
    with pytest.raises(DataOptionError, match="seed= applies to a torch DataLoader"):
        LoaderBatches(batches, seed=1)
