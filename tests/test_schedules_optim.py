"""Schedules as the ``lr`` of descend's own optimizers: the rate used by each update, per group, and resume.

The rate actually used is read off the update itself: with plain SGD, a float64 parameter reset to 0 and a
gradient of 1, the update is ``p = 0 - lr * 1``, so ``-p`` is the learning rate exactly.
"""

from __future__ import annotations

import io
import random

import pytest
import torch

from descend import optim
from descend import schedules as ds


def _schedules() -> list[ds.Schedule]:
    return [
        ds.warmup_cosine(0.1, 300, warmup_steps=30, start_lr=1e-3, min_lr=1e-4),
        ds.one_cycle(1.0, 300, anneal="linear"),
    ]


def _sgd(schedules: list) -> tuple[optim.SGD, list[torch.Tensor]]:
    params = [torch.zeros(3, dtype=torch.float64, requires_grad=True) for _ in schedules]
    groups = [{"params": [p], "lr": s} for p, s in zip(params, schedules)]
    return optim.SGD(groups, lr=0.5), params


def _used_rates(opt: optim.SGD, params: list[torch.Tensor], n: int) -> list[list[float]]:
    """Take n updates; return, per update, the learning rate each group used."""
    out = []
    for _ in range(n):
        for p in params:
            with torch.no_grad():
                p.zero_()
            p.grad = torch.ones_like(p)
        opt.step()
        out.append([float(-p.detach()[0]) for p in params])
    return out


def test_descend_sgd_uses_the_schedule_value_at_each_update_per_group() -> None:
    schedules = _schedules()
    opt, params = _sgd(schedules)
    used = _used_rates(opt, params, 300)
    expected = [[s(t) for s in schedules] for t in range(300)]
    assert used == expected
    assert opt.updates == 300


@pytest.mark.parametrize("seed", [0, 1])
def test_descend_sgd_resume_continues_the_schedule_exactly(seed: int) -> None:
    save_at = random.Random(seed).randrange(1, 200)
    opt, params = _sgd(_schedules())
    full = _used_rates(opt, params, save_at + 100)

    opt, params = _sgd(_schedules())
    _used_rates(opt, params, save_at)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    opt2, params2 = _sgd(_schedules())  # schedules are re-created from config, not unpickled
    opt2.load_state_dict(state)
    assert [g["lr"] for g in opt2.param_groups] == [s(save_at) for s in _schedules()]
    assert _used_rates(opt2, params2, 100) == full[save_at:]


def test_descend_adam_with_schedule_resumes_bit_for_bit() -> None:
    target = torch.linspace(-1, 1, 5, dtype=torch.float64)

    def run(opt: optim.Adam, w: torch.Tensor, n: int) -> list[torch.Tensor]:
        out = []
        for _ in range(n):
            opt.zero_grad()
            ((w - target) ** 2).sum().backward()
            opt.step()
            out.append(w.detach().clone())
        return out

    def build() -> tuple[optim.Adam, torch.Tensor]:
        w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
        return optim.Adam([w], lr=ds.warmup_stable_decay(0.05, 200, warmup_steps=20, decay_steps=50)), w

    opt, w = build()
    full = run(opt, w, 150)
    opt, w = build()
    run(opt, w, 77)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "w": w.detach()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    opt2, w2 = build()
    with torch.no_grad():
        w2.copy_(ckpt["w"])
    opt2.load_state_dict(ckpt["opt"])
    resumed = run(opt2, w2, 73)
    assert all(torch.equal(a, b) for a, b in zip(resumed, full[77:]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reduce_on_plateau_as_descend_lr_resumes_with_its_own_state(seed: int) -> None:
    # The optimizer saves its update count; the plateau's state is saved next to it.
    metrics = [1.0 / (1 + t // 40) + 0.01 * (t % 7) for t in range(400)]

    def run(opt: optim.SGD, params: list[torch.Tensor], plateau: ds.ReduceOnPlateau, ts: range) -> list:
        out = []
        for t in ts:
            out += _used_rates(opt, params, 1)
            if t % 10 == 9:
                plateau.step(metrics[t])
        return out

    def build() -> tuple[optim.SGD, list[torch.Tensor], ds.ReduceOnPlateau]:
        plateau = ds.ReduceOnPlateau(0.1, factor=0.5, patience=1)
        opt, params = _sgd([plateau])
        return opt, params, plateau

    full = run(*build(), range(400))
    rates = [r[0] for r in full]
    cuts = [t for t in range(1, 400) if rates[t] < rates[t - 1]]
    assert len(cuts) >= 3  # the rate was reduced at least three times
    # Save after the first reduction and before the last, so both the reduced rate and the counters must resume.
    save_at = random.Random(seed).randrange(cuts[0], cuts[-1])
    opt, params, plateau = build()
    run(opt, params, plateau, range(save_at))
    state = {"opt": opt.state_dict(), "plateau": plateau.state_dict()}
    opt2, params2, plateau2 = build()
    plateau2.load_state_dict(state["plateau"])
    opt2.load_state_dict(state["opt"])
    assert opt2.param_groups[0]["lr"] == rates[save_at] < 0.1
    assert run(opt2, params2, plateau2, range(save_at, 400)) == full[save_at:]
