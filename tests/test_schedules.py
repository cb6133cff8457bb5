"""descend.schedules against closed forms written out here, and the table of rejected arguments.

Schedules that torch also has are held to torch in test_schedules_torch.py; here each of the others is compared,
at every step of a long horizon, with a naive reference written independently in the test (a loop or a
piecewise formula), to 1e-12 relative.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest

from descend import schedules as ds
from descend.errors import ConfigError

REL = 1e-12


def _close(ours: list[float], ref: list[float]) -> None:
    assert ours == pytest.approx(ref, rel=REL, abs=0.0)


def test_constant_and_inverse_time_and_invscaling() -> None:
    _close(ds.constant(0.3).sample(1000), [0.3] * 1000)
    # Keras InverseTimeDecay: lr / (1 + rate * t / steps).
    _close(ds.inverse_time(0.5, 0.3, decay_steps=7).sample(1000), [0.5 / (1 + 0.3 * t / 7) for t in range(1000)])
    # scikit-learn invscaling: eta0 / t**power_t with t = 1 at the first update.
    for power in (0.0, 0.25, 0.5, 1.0):
        ref = []
        t_sklearn = 1.0
        for _ in range(1000):
            ref.append(0.2 / t_sklearn**power)
            t_sklearn += 1
        _close(ds.invscaling(0.2, power=power).sample(1000), ref)


@pytest.mark.parametrize(("total", "power", "end"), [(1, 1.0, 0.0), (100, 0.5, 0.01), (999, 2.0, 0.1), (50, 3.0, 0.2)])
def test_polynomial_with_end_lr(total: int, power: float, end: float) -> None:
    ref = [end + (0.5 - end) * (1 - t / total) ** power if t < total else end for t in range(1200)]
    _close(ds.polynomial(0.5, total, power=power, end_lr=end).sample(1200), ref)


@pytest.mark.parametrize(("warm", "start"), [(1, 0.0), (10, 0.0), (500, 0.01)])
def test_linear_warmup(warm: int, start: float) -> None:
    ref, lr = [], start
    for t in range(1000):
        ref.append(min(lr, 0.4) if t < warm else 0.4)
        lr = start + (0.4 - start) * (t + 1) / warm
    _close(ds.linear_warmup(0.4, warm, start_lr=start).sample(1000), ref)


def test_cosine_annealing_holds_its_floor_after_the_horizon() -> None:
    s = ds.cosine_annealing(0.1, 100, min_lr=0.002)
    assert s(100) == pytest.approx(0.002, rel=REL)
    assert s.sample(500, start=100) == [s(100)] * 500
    values = s.sample(101)
    assert all(a > b for a, b in itertools.pairwise(values))  # strictly decreasing to the floor


@pytest.mark.parametrize(("total", "warm", "start", "floor"), [(1000, 0, 0.0, 0.0), (1000, 100, 0.0, 1e-3), (600, 599, 0.01, 0.05)])
def test_warmup_cosine(total: int, warm: int, start: float, floor: float) -> None:
    def ref(t: int) -> float:
        if t < warm:
            return start + (0.3 - start) * t / warm
        progress = min(t - warm, total - warm) / (total - warm)
        return floor + 0.5 * (0.3 - floor) * (1 + math.cos(math.pi * progress))

    _close(ds.warmup_cosine(0.3, total, warmup_steps=warm, start_lr=start, min_lr=floor).sample(1500),
           [ref(t) for t in range(1500)])


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
@pytest.mark.parametrize(("total", "warm", "decay"), [(1000, 100, 200), (1000, 0, 1000), (500, 250, 250)])
def test_warmup_stable_decay(shape: str, total: int, warm: int, decay: int) -> None:
    f = {"linear": lambda p: 1 - p, "cosine": lambda p: (1 + math.cos(math.pi * p)) / 2, "sqrt": lambda p: 1 - p**0.5}
    ref = []
    for t in range(1200):
        if t < warm:
            ref.append(0.001 + (0.2 - 0.001) * t / warm)
        elif t < total - decay:
            ref.append(0.2)
        else:
            ref.append(1e-4 + (0.2 - 1e-4) * f[shape](min(1.0, (t - (total - decay)) / decay)))
    s = ds.warmup_stable_decay(0.2, total, warmup_steps=warm, decay_steps=decay, start_lr=0.001, min_lr=1e-4,
                               decay_shape=shape)
    _close(s.sample(1200), ref)


def test_join_gives_each_schedule_its_own_step_count() -> None:
    a, b, c = ds.constant(1.0), ds.exponential_decay(0.5, 0.99), ds.linear(0.1, 0.0, 50)
    s = ds.join([a, b, c], boundaries=[10, 300])
    ref = [a(t) if t < 10 else b(t - 10) if t < 300 else c(t - 300) for t in range(600)]
    assert s.sample(600) == ref
    assert ds.join([b], boundaries=[]).sample(600) == b.sample(600)


def test_warmup_combinator_ramps_to_the_first_value_then_shifts() -> None:
    inner = ds.step_decay(0.2, 100, gamma=0.5)
    s = ds.warmup(inner, 40, start_lr=0.02)
    ref = [0.02 + (0.2 - 0.02) * t / 40 for t in range(40)] + [inner(t) for t in range(760)]
    _close(s.sample(800), ref)
    assert ds.warmup(inner, 0).sample(300) == inner.sample(300)


def test_scaled_schedule_is_a_multiplier_applied_to_a_base_rate() -> None:
    shape = ds.cosine_annealing(1.0, 100)
    for s in (0.01 * shape, shape * 0.01):
        assert s.sample(150) == [0.01 * x for x in shape.sample(150)]
    assert repr(0.01 * shape) == "scale(factor=0.01, schedule=cosine_annealing(lr=1.0, total_steps=100, min_lr=0.0))"
    with pytest.raises(ValueError, match=r"^Schedule.__mul__: invalid factor=-1.0; expected"):
        shape * -1.0


def test_one_cycle_holds_min_lr_after_the_last_update() -> None:
    s = ds.one_cycle(1.0, 100, div_factor=10.0, final_div_factor=100.0)
    assert s(99) == pytest.approx(1e-3, rel=REL)
    assert s.sample(50, start=100) == [s(99)] * 50


def test_sample_and_repr() -> None:
    s = ds.step_decay(1.0, 3, gamma=0.5)
    assert ds.sample(s, 7) == s.sample(7) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert s.sample(2, start=3) == [0.5, 0.5]
    assert ds.sample(lambda t: 2.0 * t, 3) == [0.0, 2.0, 4.0]  # any callable step -> lr
    assert s.sample(0) == []
    assert repr(s) == "step_decay(lr=1.0, step_size=3, gamma=0.5)"
    assert s.params == {"lr": 1.0, "step_size": 3, "gamma": 0.5}


def test_reduce_on_plateau_rule_by_hand() -> None:
    p = ds.ReduceOnPlateau(1.0, factor=0.5, patience=2, cooldown=1, threshold=0.1, min_lr=0.2)
    # best 10; 9.5 is not 10% better (bad 1); 9.2 (bad 2); 9.1 (bad 3 > 2: reduce to 0.5, cooldown 1);
    # 9.0 is not < 10 * 0.9, but in cooldown (bad reset); 9.3 x 3 bad 1, 2, 3: reduce to 0.25; 1.0 improves;
    # then three bad: 0.125 is below min_lr, so 0.2.
    seen = [p.step(m) for m in (10, 9.5, 9.2, 9.1, 9.0, 9.3, 9.3, 9.3, 1.0, 1.0, 1.0, 1.0)]
    assert seen == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2]
    assert p(0) == p(10**6) == p.lr == 0.2
    # eps: a reduction smaller than eps is skipped.
    q = ds.ReduceOnPlateau(1e-9, patience=0, eps=1e-8)
    assert [q.step(m) for m in (1.0, 2.0, 3.0)] == [1e-9, 1e-9, 1e-9]


def test_reduce_on_plateau_state_round_trips_through_json() -> None:
    kw = {"mode": "max", "factor": 0.3, "patience": 3, "cooldown": 2}
    p = ds.ReduceOnPlateau(0.1, **kw)
    metrics = [math.sin(t / 5.0) + t / 100.0 for t in range(300)]
    for m in metrics[:137]:
        p.step(m)
    state = json.loads(json.dumps(p.state_dict()))
    q = ds.ReduceOnPlateau(0.1, **kw)
    q.load_state_dict(state)
    assert [q.step(m) for m in metrics[137:]] == [p.step(m) for m in metrics[137:]]
    fresh = ds.ReduceOnPlateau(0.1, **kw).state_dict()
    assert fresh == {"lr": 0.1, "best": None, "num_bad": 0, "cooldown_left": 0, "num_metrics": 0}
    with pytest.raises(ValueError, match=r"ReduceOnPlateau: invalid state=\['lr'\]; expected a dict with keys"):
        q.load_state_dict({"lr": 0.1})


# (factory, arguments, the argument the message must name, the value it must show)
BAD = [
    (ds.constant, (0.0,), {}, "lr", "0.0"),
    (ds.constant, (math.nan,), {}, "lr", "nan"),
    (ds.constant, ("0.1",), {}, "lr", "'0.1'"),
    (ds.step_decay, (0.1, 0), {}, "step_size", "0"),
    (ds.step_decay, (0.1, 2.5), {}, "step_size", "2.5"),
    (ds.step_decay, (0.1, True), {}, "step_size", "True"),
    (ds.step_decay, (0.1, 10), {"gamma": 1.5}, "gamma", "1.5"),
    (ds.multistep_decay, (0.1, [5, 3]), {}, r"milestones\[1\]", "3"),
    (ds.multistep_decay, (0.1, [0]), {}, r"milestones\[0\]", "0"),
    (ds.multistep_decay, (0.1, 5), {}, "milestones", "5"),
    (ds.exponential_decay, (0.1, 0.0), {}, "gamma", "0.0"),
    (ds.exponential_decay, (-0.1, 0.9), {}, "lr", "-0.1"),
    (ds.inverse_time, (0.1, -1.0), {}, "decay_rate", "-1.0"),
    (ds.inverse_time, (0.1, 1.0), {"decay_steps": 0}, "decay_steps", "0"),
    (ds.invscaling, (0.1,), {"power": -0.5}, "power", "-0.5"),
    (ds.polynomial, (0.1, -3), {}, "total_steps", "-3"),
    (ds.polynomial, (0.1, 10), {"end_lr": 0.2}, "end_lr", "0.2"),
    (ds.polynomial, (0.1, 10), {"power": 0.0}, "power", "0.0"),
    (ds.linear, (0.1, -0.1, 10), {}, "end_lr", "-0.1"),
    (ds.linear, (0.1, 0.2, 0), {}, "total_steps", "0"),
    (ds.linear_warmup, (0.1, 0), {}, "warmup_steps", "0"),
    (ds.linear_warmup, (0.1, 10), {"start_lr": 0.5}, "start_lr", "0.5"),
    (ds.cosine_annealing, (0.1, -3), {}, "total_steps", "-3"),
    (ds.cosine_annealing, (0.1, 100), {"min_lr": 0.2}, "min_lr", "0.2"),
    (ds.cosine_warm_restarts, (0.1, 0), {}, "period", "0"),
    (ds.cosine_warm_restarts, (0.1, 10), {"period_mult": 0}, "period_mult", "0"),
    (ds.cosine_warm_restarts, (0.1, 10), {"min_lr": -1.0}, "min_lr", "-1.0"),
    (ds.warmup_cosine, (0.1, 100), {"warmup_steps": 100}, "warmup_steps", "100"),
    (ds.warmup_cosine, (0.1, 100), {"warmup_steps": 200}, "warmup_steps", "200"),
    (ds.warmup_cosine, (0.1, 100), {"warmup_steps": 10, "min_lr": 1.0}, "min_lr", "1.0"),
    (ds.warmup_stable_decay, (0.1, 100), {"warmup_steps": 60, "decay_steps": 50}, "decay_steps", "50"),
    (ds.warmup_stable_decay, (0.1, 100), {"warmup_steps": -1, "decay_steps": 50}, "warmup_steps", "-1"),
    (ds.warmup_stable_decay, (0.1, 100), {"warmup_steps": 10, "decay_steps": 10, "decay_shape": "exp"},
     "decay_shape", "'exp'"),
    (ds.one_cycle, (0.1, 100), {"pct_start": 0.0}, "pct_start", "0.0"),
    (ds.one_cycle, (0.1, 100), {"pct_start": 1.0}, "pct_start", "1.0"),
    (ds.one_cycle, (0.1, 10), {"pct_start": 0.1}, "pct_start", "0.1"),
    (ds.one_cycle, (0.1, 10), {"pct_start": 0.6, "three_phase": True}, "pct_start", "0.6"),
    (ds.one_cycle, (0.1, 1), {}, "total_steps", "1"),
    (ds.one_cycle, (0.1, 100), {"anneal": "exp"}, "anneal", "'exp'"),
    (ds.one_cycle, (0.1, 100), {"div_factor": 0.5}, "div_factor", "0.5"),
    (ds.one_cycle_momentum, (100,), {"base_momentum": 0.99, "max_momentum": 0.9}, "max_momentum", "0.9"),
    (ds.cyclic, (0.1, 0.01, 10), {}, "max_lr", "0.01"),
    (ds.cyclic, (0.0, 0.0, 10), {}, "max_lr", "0.0"),
    (ds.cyclic, (0.01, 0.1, 0), {}, "step_size_up", "0"),
    (ds.cyclic, (0.01, 0.1, 10), {"step_size_down": 0}, "step_size_down", "0"),
    (ds.cyclic, (0.01, 0.1, 10), {"mode": "sine"}, "mode", "'sine'"),
    (ds.cyclic, (0.01, 0.1, 10), {"mode": "exp_range", "gamma": 1.1}, "gamma", "1.1"),
    (ds.cyclic_momentum, (0.95, 0.85, 10), {}, "max_momentum", "0.85"),
    (ds.join, ([],), {"boundaries": []}, "schedules", r"\[\]"),
    (ds.join, ([ds.constant(0.1), ds.constant(0.2)],), {"boundaries": []}, "boundaries", r"\[\]"),
    (ds.join, ([ds.constant(0.1), ds.constant(0.2), ds.constant(0.3)],), {"boundaries": [5, 5]},
     r"boundaries\[1\]", "5"),
    (ds.join, ([ds.constant(0.1), 0.2],), {"boundaries": [5]}, r"schedules\[1\]", "0.2"),
    (ds.warmup, (ds.constant(0.1), -5), {}, "steps", "-5"),
    (ds.warmup, (0.1, 5), {}, "schedule", "0.1"),
    (ds.ReduceOnPlateau, (0.1,), {"factor": 1.0}, "factor", "1.0"),
    (ds.ReduceOnPlateau, (0.1,), {"mode": "minimum"}, "mode", "'minimum'"),
    (ds.ReduceOnPlateau, (0.1,), {"threshold_mode": "relative"}, "threshold_mode", "'relative'"),
    (ds.ReduceOnPlateau, (0.1,), {"patience": -1}, "patience", "-1"),
    (ds.ReduceOnPlateau, (0.1,), {"cooldown": 1.5}, "cooldown", "1.5"),
    (ds.ReduceOnPlateau, (0.1,), {"min_lr": 0.5}, "min_lr", "0.5"),
    (ds.ReduceOnPlateau, (0.1,), {"threshold": -1e-4}, "threshold", "-0.0001"),
    (ds.ReduceOnPlateau, (0.1,), {"eps": -1.0}, "eps", "-1.0"),
    (ds.sample, (ds.constant(0.1), -1), {}, "steps", "-1"),
]


@pytest.mark.parametrize(("factory", "args", "kwargs", "arg", "value"), BAD,
                         ids=[f"{b[0].__name__}-{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_name_the_argument_and_value(factory, args, kwargs, arg: str, value: str) -> None:
    name = factory.__name__
    with pytest.raises(ValueError, match=rf"^{name}: invalid {arg}={value}; expected ") as info:
        factory(*args, **kwargs)
    assert isinstance(info.value, ConfigError)


def test_bad_step_is_rejected_at_call_time() -> None:
    s = ds.cosine_annealing(0.1, 10)
    for step in (-1, 1.5, True):
        with pytest.raises(ValueError, match=rf"^cosine_annealing: invalid step={step}; expected an int >= 0"):
            s(step)
    with pytest.raises(ValueError, match=r"^ReduceOnPlateau: invalid step=-1; expected an int >= 0"):
        ds.ReduceOnPlateau(0.1)(-1)


def test_messages_state_the_valid_range() -> None:
    with pytest.raises(ValueError) as info:
        ds.cosine_annealing(0.1, -3)
    assert str(info.value) == "cosine_annealing: invalid total_steps=-3; expected an int >= 1"
    with pytest.raises(ValueError) as info:
        ds.step_decay(0.1, 10, gamma=0.0)
    assert str(info.value) == "step_decay: invalid gamma=0.0; expected a finite number in (0.0, 1.0]"
    with pytest.raises(ValueError) as info:
        ds.warmup_cosine(0.1, 100, warmup_steps=200)
    assert "expected an int < total_steps=100" in str(info.value)
