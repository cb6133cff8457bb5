"""descend.schedules against torch.optim.lr_scheduler, the oracle, and the ScheduleLR adapter.

Each case runs a torch scheduler on a one-parameter optimizer and reads the learning rate (and momentum) in
force for each of N = 600 updates, the way a training loop sees it; the descend schedule is evaluated at the
same update indices. Equal means a relative difference of at most 1e-12 at every update.

torch's StepLR, ExponentialLR, LinearLR, PolynomialLR and CosineAnnealingLR update the rate recursively
(multiply the previous rate by a factor) where descend uses the closed form, so the two differ by accumulated
rounding. Measured over these grids the worst differences are a few 1e-15 (CyclicLR 2.5e-14, from torch's
``1 + t / size - cycle``), far inside 1e-12. CosineAnnealingLR is compared both with its recursive rates and
with torch's own closed form (``_get_closed_form_lr``, bit-identical), over updates 0 .. ``T_max`` (601 and 1001
updates for ``T_max`` = 600 and 1000) and no further: past ``T_max`` torch's cosine climbs back up, while
descend's holds the floor ``min_lr`` (tested in test_schedules.py).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest
import torch
from torch.optim import lr_scheduler as tl

from descend import schedules as ds

N = 600
REL = 1e-12


def _optimizer(lr: float = 1.0, kind: str = "sgd", groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _run_torch(
    make: Callable[[torch.optim.Optimizer], tl.LRScheduler], n: int = N, *, lr: float = 1.0, kind: str = "sgd"
) -> tuple[list[float], list[float]]:
    """The (lr, momentum) of group 0 in force for updates 0 .. n-1 under a torch scheduler."""
    opt = _optimizer(lr, kind)
    sched = make(opt)
    rates, moms = [], []
    opt.step()  # once, so torch does not warn about the call order; the updates themselves do not matter
    for _ in range(n):
        group = opt.param_groups[0]
        rates.append(float(group["lr"]))
        moms.append(float(group["betas"][0] if "betas" in group else group["momentum"]))
        sched.step()
    return rates, moms


def _max_rel(ours: list[float], ref: list[float]) -> float:
    assert len(ours) == len(ref)
    worst = 0.0
    for a, b in zip(ours, ref):
        if a != b:
            worst = max(worst, abs(a - b) / max(abs(a), abs(b)))
    return worst


def _assert_close(ours: list[float], ref: list[float], rel: float = REL) -> None:
    err = _max_rel(ours, ref)
    assert err <= rel, f"max relative difference {err:.3e} > {rel:.0e}"


# Each case: id, torch scheduler factory, descend schedule, base lr given to the torch optimizer.
CASES: list[tuple[str, Callable[[torch.optim.Optimizer], tl.LRScheduler], ds.Schedule, float]] = []

for lr, size, gamma in itertools.product([0.1, 3.0], [1, 7, 50], [0.1, 0.5, 0.97]):
    if (N // size) * -math.log10(gamma) > 250:
        continue  # lr * 0.1**600 underflows to subnormals, where relative differences mean nothing
    CASES.append(
        (
            f"StepLR-{lr}-{size}-{gamma}",
            lambda o, size=size, gamma=gamma: tl.StepLR(o, step_size=size, gamma=gamma),
            ds.step_decay(lr, size, gamma=gamma),
            lr,
        )
    )
for lr, ms, gamma in itertools.product([0.1, 3.0], [[1], [10, 200, 201, 550], [599]], [0.1, 0.7]):
    CASES.append(
        (
            f"MultiStepLR-{lr}-{ms}-{gamma}",
            lambda o, ms=ms, gamma=gamma: tl.MultiStepLR(o, milestones=ms, gamma=gamma),
            ds.multistep_decay(lr, ms, gamma=gamma),
            lr,
        )
    )
for lr, gamma in itertools.product([0.1, 3.0], [0.9, 0.99, 0.999, 1.0]):
    CASES.append(
        (
            f"ExponentialLR-{lr}-{gamma}",
            lambda o, gamma=gamma: tl.ExponentialLR(o, gamma=gamma),
            ds.exponential_decay(lr, gamma),
            lr,
        )
    )
for lr, (sf, ef), iters in itertools.product([0.1, 3.0], [(1 / 3, 1.0), (0.01, 1.0), (1.0, 0.2), (0.5, 0.5)], [1, 37, 500]):
    CASES.append(
        (
            f"LinearLR-{lr}-{sf}-{ef}-{iters}",
            lambda o, sf=sf, ef=ef, iters=iters: tl.LinearLR(o, start_factor=sf, end_factor=ef, total_iters=iters),
            ds.linear(lr * sf, lr * ef, iters),
            lr,
        )
    )
for lr, iters, power in itertools.product([0.1, 3.0], [1, 40, 599, 1000], [0.5, 1.0, 2.0]):
    CASES.append(
        (
            f"PolynomialLR-{lr}-{iters}-{power}",
            lambda o, iters=iters, power=power: tl.PolynomialLR(o, total_iters=iters, power=power),
            ds.polynomial(lr, iters, power=power),
            lr,
        )
    )
for lr, t0, mult, floor in itertools.product([0.1, 3.0], [1, 7, 50], [1, 2, 3], [0.0, 0.01]):
    CASES.append(
        (
            f"CosineAnnealingWarmRestarts-{lr}-{t0}-{mult}-{floor}",
            lambda o, t0=t0, mult=mult, floor=floor: tl.CosineAnnealingWarmRestarts(
                o, T_0=t0, T_mult=mult, eta_min=floor
            ),
            ds.cosine_warm_restarts(lr, t0, period_mult=mult, min_lr=floor),
            lr,
        )
    )
for (base, top), up, down, mode, gamma in itertools.product(
    [(0.01, 0.1), (0.5, 4.0)], [1, 13, 100], [None, 1, 37], ["triangular", "triangular2", "exp_range"], [0.999]
):
    CASES.append(
        (
            f"CyclicLR-{base}-{top}-{up}-{down}-{mode}",
            lambda o, base=base, top=top, up=up, down=down, mode=mode, gamma=gamma: tl.CyclicLR(
                o, base_lr=base, max_lr=top, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma
            ),
            ds.cyclic(base, top, up, step_size_down=down, mode=mode, gamma=gamma),
            1.0,
        )
    )


@pytest.mark.parametrize(("case", "make_torch", "schedule", "lr"), CASES, ids=[c[0] for c in CASES])
def test_matches_torch_scheduler(case: str, make_torch, schedule: ds.Schedule, lr: float) -> None:
    ref, _ = _run_torch(make_torch, lr=lr)
    _assert_close(schedule.sample(N), ref)


# T_max >= 500 so that the comparison covers at least 500 updates; the small ones test the ends of the curve.
COSINE_GRID = list(itertools.product([0.1, 3.0], [1, 10, 333, 600, 1000], [0.0, 1e-3, 0.05]))


@pytest.mark.parametrize(("lr", "t_max", "floor"), COSINE_GRID)
def test_cosine_annealing_matches_torch_closed_form(lr: float, t_max: int, floor: float) -> None:
    opt = _optimizer(lr)
    sched = tl.CosineAnnealingLR(opt, T_max=t_max, eta_min=floor)
    ref = []
    for t in range(t_max + 1):  # updates 0 .. T_max; torch climbs back up after T_max, descend holds the floor
        sched.last_epoch = t
        ref.append(float(sched._get_closed_form_lr()[0]))
    assert ref[-1] == floor  # the comparison reaches the end of the annealing
    ours = ds.cosine_annealing(lr, t_max, min_lr=floor).sample(len(ref))
    _assert_close(ours, ref)


@pytest.mark.parametrize(("lr", "t_max", "floor"), COSINE_GRID)
def test_cosine_annealing_matches_torch_recursive(lr: float, t_max: int, floor: float) -> None:
    k = t_max + 1  # updates 0 .. T_max, for the reason above
    ref, _ = _run_torch(lambda o: tl.CosineAnnealingLR(o, T_max=t_max, eta_min=floor), n=k, lr=lr)
    ours = ds.cosine_annealing(lr, t_max, min_lr=floor).sample(k)
    _assert_close(ours, ref)


ONE_CYCLE_GRID = list(
    itertools.product([0.1, 25.0], [600, 1000], [0.05, 0.3, 0.45], ["cos", "linear"], [False, True], ["sgd", "adam"])
)


@pytest.mark.parametrize(("top", "total", "pct", "anneal", "three", "kind"), ONE_CYCLE_GRID)
def test_one_cycle_matches_torch_lr_and_momentum(
    top: float, total: int, pct: float, anneal: str, three: bool, kind: str
) -> None:
    kw = {"pct_start": pct, "three_phase": three}
    ref_lr, ref_m = _run_torch(
        lambda o: tl.OneCycleLR(
            o, max_lr=top, total_steps=total, anneal_strategy=anneal, div_factor=10.0, final_div_factor=100.0,
            base_momentum=0.8, max_momentum=0.93, **kw,
        ),
        n=min(N, total),
        kind=kind,
    )
    lr = ds.one_cycle(top, total, anneal=anneal, div_factor=10.0, final_div_factor=100.0, **kw)
    mom = ds.one_cycle_momentum(total, base_momentum=0.8, max_momentum=0.93, anneal=anneal, **kw)
    _assert_close(lr.sample(len(ref_lr)), ref_lr)
    _assert_close(mom.sample(len(ref_m)), ref_m)


def test_one_cycle_reproduces_torch_documented_example() -> None:
    # torch's OneCycleLR documentation: max_lr=25, final_div_factor=2, total_steps=10, anneal_strategy='linear'.
    expected = [1, 13, 25, 21.5, 18, 14.5, 11, 7.5, 4, 0.5]
    s = ds.one_cycle(25.0, 10, final_div_factor=2.0, anneal="linear")
    assert s.sample(10) == pytest.approx(expected, rel=1e-12)
    ref, _ = _run_torch(
        lambda o: tl.OneCycleLR(o, max_lr=25, final_div_factor=2, total_steps=10, anneal_strategy="linear"), n=10
    )
    assert ref == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_cyclic_momentum_matches_torch(mode: str, kind: str) -> None:
    kw = {"step_size_up": 23, "step_size_down": 41, "mode": mode, "gamma": 0.995}
    ref_lr, ref_m = _run_torch(
        lambda o: tl.CyclicLR(o, base_lr=0.01, max_lr=0.2, base_momentum=0.8, max_momentum=0.95, **kw), kind=kind
    )
    _assert_close(ds.cyclic(0.01, 0.2, **kw).sample(N), ref_lr)
    _assert_close(ds.cyclic_momentum(0.8, 0.95, **kw).sample(N), ref_m)


PLATEAU_GRID = list(
    itertools.product(["min", "max"], ["rel", "abs"], [0, 3], [0, 2], [0.0, 0.05], [0.1, 0.5])
)


def _metrics(seed: int, n: int = N) -> list[float]:
    """A noisy, mostly decreasing loss with long plateaus, so that every branch of the rule is taken."""
    rng = random.Random(seed)
    level, out = 5.0, []
    for _ in range(n):
        if rng.random() < 0.05:
            level *= 0.8
        out.append(level * (1 + 0.05 * rng.random()) + (0.0 if rng.random() < 0.9 else 0.2))
    return out


@pytest.mark.parametrize(("mode", "tmode", "patience", "cooldown", "min_lr", "factor"), PLATEAU_GRID)
def test_reduce_on_plateau_matches_torch(
    mode: str, tmode: str, patience: int, cooldown: int, min_lr: float, factor: float
) -> None:
    sign = 1.0 if mode == "min" else -1.0
    metrics = [sign * m for m in _metrics(patience * 7 + cooldown)]
    kw = {"mode": mode, "factor": factor, "patience": patience, "threshold": 1e-2, "threshold_mode": tmode}
    kw |= {"cooldown": cooldown, "min_lr": min_lr}
    # Two groups with different base rates, as torch applies the rule per group.
    opt = _optimizer(groups=2)
    opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = 0.1, 1.0
    ref = tl.ReduceLROnPlateau(opt, **kw)
    plateaus = [ds.ReduceOnPlateau(0.1, **kw), ds.ReduceOnPlateau(1.0, **kw)]
    ours_opt = _optimizer(groups=2)
    adapter = ds.ScheduleLR(ours_opt, plateaus)
    ours_opt.step()
    reductions = 0
    for m in metrics:
        before = plateaus[1].lr
        for p in plateaus:
            p.step(m)
        adapter.step()
        ref.step(m)
        reductions += plateaus[1].lr < before
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in opt.param_groups]
    assert reductions >= 2  # the metric sequence does exercise the rule


def test_schedule_lr_sets_per_group_rates_and_betas() -> None:
    opt = _optimizer(kind="adam", groups=2)
    sched = ds.ScheduleLR(
        opt,
        [ds.step_decay(0.1, 2, gamma=0.5), ds.constant(0.3)],
        momentum=[ds.constant(0.7), ds.cyclic_momentum(0.8, 0.9, 1)],
    )
    seen = []
    for _ in range(4):
        seen.append([(g["lr"], g["betas"]) for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen == [
        [(0.1, (0.7, 0.999)), (0.3, (0.9, 0.999))],
        [(0.1, (0.7, 0.999)), (0.3, (0.8, 0.999))],
        [(0.05, (0.7, 0.999)), (0.3, (0.9, 0.999))],
        [(0.05, (0.7, 0.999)), (0.3, (0.8, 0.999))],
    ]
    assert sched.get_last_lr() == [0.025, 0.3]


def _train_rates(opt: torch.optim.Optimizer, sched: ds.ScheduleLR, n: int, metric: Callable[[int], float]) -> list:
    out = []
    for _ in range(n):
        out.append([(g["lr"], g["momentum"]) for g in opt.param_groups])
        opt.step()
        t = sched.last_epoch
        for s in sched.lr_schedules:
            if isinstance(s, ds.ReduceOnPlateau) and t % 5 == 4:  # the metric arrives once per "epoch"
                s.step(metric(t))
        sched.step()
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_schedule_lr_resume_gives_the_uninterrupted_rates(seed: int, tmp_path) -> None:
    rng = random.Random(seed)
    save_at = rng.randrange(100, 400)  # >= 100, so that a full window of 100 updates precedes the save
    losses = _metrics(seed, 1000)

    def build() -> tuple[torch.optim.Optimizer, ds.ScheduleLR]:
        opt = _optimizer(groups=3)
        lrs = [
            ds.warmup_cosine(0.1, 500, warmup_steps=50, min_lr=1e-4),
            ds.ReduceOnPlateau(0.5, factor=0.5, patience=2),
            ds.one_cycle(1.0, 500, three_phase=True),
        ]
        moms = [ds.constant(0.9), ds.constant(0.9), ds.one_cycle_momentum(500, three_phase=True)]
        return opt, ds.ScheduleLR(opt, lrs, momentum=moms)

    opt, sched = build()
    full = _train_rates(opt, sched, save_at + 100, lambda t: losses[t])

    opt, sched = build()
    _train_rates(opt, sched, save_at, lambda t: losses[t])
    path = tmp_path / "ckpt.pt"
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, path)

    ckpt = torch.load(path, weights_only=True)
    opt2, sched2 = build()
    sched2.load_state_dict(ckpt["scheduler"])
    # The scheduler alone already puts the rates of the saved step on the fresh optimizer.
    assert [(g["lr"], g["momentum"]) for g in opt2.param_groups] == full[save_at]
    opt2.load_state_dict(ckpt["optimizer"])
    resumed = _train_rates(opt2, sched2, 100, lambda t: losses[t])
    assert resumed == full[save_at:]
    # The check means something: the scheduled rates and momenta move over the resumed window, the plateau had
    # already reduced its rate before the save (so its state, not its initial rate, is what resumes) and reduces
    # it again after (so its counters carried over too).
    before, after = full[save_at - 100 : save_at], full[save_at:]
    assert len(before) == len(after) == 100 and before != after
    for group in (0, 2):
        assert len({r[group] for r in resumed}) > 50, f"group {group}'s rates barely move over the window"
    plateau_lr = [r[1][0] for r in full]
    assert plateau_lr[save_at] < plateau_lr[0] == 0.5, "the plateau had not reduced the rate before the save"
    assert min(plateau_lr[save_at:]) < plateau_lr[save_at], "the plateau does not reduce after the save"


def test_schedule_lr_state_dict_is_plain_json() -> None:
    import json

    opt = _optimizer(groups=2)
    p = ds.ReduceOnPlateau(1.0, patience=0)
    sched = ds.ScheduleLR(opt, [ds.constant(0.1), p])
    for m in (1.0, 2.0, 3.0):
        p.step(m)
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert json.loads(json.dumps(state)) == state
    plateau_state = {"lr": 1.0 * 0.1 * 0.1, "best": 1.0, "num_bad": 0, "cooldown_left": 0, "num_metrics": 3}
    assert state == {"last_epoch": 3, "step_count": 4, "schedule_states": [None, plateau_state]}
    assert opt.param_groups[1]["lr"] == plateau_state["lr"]


def test_schedule_lr_rejects_wrong_group_count_and_missing_momentum() -> None:
    opt = _optimizer(groups=2)
    with pytest.raises(ValueError, match=r"ScheduleLR: invalid lr=.*a list of 2 schedules"):
        ds.ScheduleLR(opt, [ds.constant(0.1)])
    plain = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match=r"ScheduleLR: invalid momentum=.*no momentum or betas"):
        ds.ScheduleLR(plain, ds.constant(0.1), momentum=ds.constant(0.9))
