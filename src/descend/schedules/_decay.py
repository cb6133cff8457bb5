"""Monotone schedules: constant, step-wise, exponential, inverse-time, polynomial and linear.

Throughout, ``t`` is the 0-based index of the update and :math:`\\eta_t` its learning rate.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from descend.schedules._base import Schedule, check_float, check_int, fail

__all__ = [
    "constant",
    "exponential_decay",
    "inverse_time",
    "invscaling",
    "linear",
    "linear_warmup",
    "multistep_decay",
    "polynomial",
    "step_decay",
]


def constant(lr: float) -> Schedule:
    """:math:`\\eta_t = \\mathrm{lr}` for every ``t``.

    ``lr`` > 0.

    >>> constant(0.01)(1000)
    0.01
    """
    lr = check_float("constant", "lr", lr, low=0.0, low_open=True)
    return Schedule("constant", lambda t: lr, {"lr": lr})


def step_decay(lr: float, step_size: int, *, gamma: float = 0.1) -> Schedule:
    """Multiply by ``gamma`` every ``step_size`` updates (torch's ``StepLR``).

    :math:`\\eta_t = \\mathrm{lr} \\cdot \\gamma^{\\lfloor t / \\mathrm{step\\_size} \\rfloor}`

    ``lr`` > 0, ``step_size`` an int >= 1, ``gamma`` in (0, 1].

    >>> s = step_decay(1.0, step_size=10, gamma=0.5)
    >>> s(9), s(10), s(25)
    (1.0, 0.5, 0.25)
    """
    name = "step_decay"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    size = check_int(name, "step_size", step_size, minimum=1)
    g = check_float(name, "gamma", gamma, low=0.0, high=1.0, low_open=True)
    return Schedule(name, lambda t: lr * g ** (t // size), {"lr": lr, "step_size": size, "gamma": g})


def multistep_decay(lr: float, milestones: Sequence[int], *, gamma: float = 0.1) -> Schedule:
    """Multiply by ``gamma`` at each milestone (torch's ``MultiStepLR``).

    :math:`\\eta_t = \\mathrm{lr} \\cdot \\gamma^{k(t)}`, where :math:`k(t)` is the number of ``milestones``
    :math:`m` with :math:`m \\le t`.

    ``lr`` > 0, ``milestones`` strictly increasing ints >= 1, ``gamma`` in (0, 1].

    >>> s = multistep_decay(1.0, [3, 5], gamma=0.1)
    >>> [round(s(t), 4) for t in range(7)]
    [1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """
    name = "multistep_decay"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        fail(name, "milestones", milestones, "a sequence of strictly increasing ints >= 1")
    ms = [check_int(name, f"milestones[{i}]", m, minimum=1) for i, m in enumerate(milestones)]
    for i in range(1, len(ms)):
        if ms[i] <= ms[i - 1]:
            fail(name, f"milestones[{i}]", ms[i], f"an int > milestones[{i - 1}]={ms[i - 1]}")
    g = check_float(name, "gamma", gamma, low=0.0, high=1.0, low_open=True)
    return Schedule(
        name, lambda t: lr * g ** bisect.bisect_right(ms, t), {"lr": lr, "milestones": ms, "gamma": g}
    )


def exponential_decay(lr: float, gamma: float) -> Schedule:
    """Multiply by ``gamma`` after every update (torch's ``ExponentialLR``).

    :math:`\\eta_t = \\mathrm{lr} \\cdot \\gamma^{t}`

    ``lr`` > 0, ``gamma`` in (0, 1].

    >>> exponential_decay(1.0, gamma=0.5)(3)
    0.125
    """
    name = "exponential_decay"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    g = check_float(name, "gamma", gamma, low=0.0, high=1.0, low_open=True)
    return Schedule(name, lambda t: lr * g**t, {"lr": lr, "gamma": g})


def inverse_time(lr: float, decay_rate: float, *, decay_steps: int = 1) -> Schedule:
    """Hyperbolic decay (Keras' ``InverseTimeDecay``).

    :math:`\\eta_t = \\mathrm{lr} / (1 + \\mathrm{decay\\_rate} \\cdot t / \\mathrm{decay\\_steps})`

    ``lr`` > 0, ``decay_rate`` >= 0, ``decay_steps`` an int >= 1.

    >>> inverse_time(1.0, decay_rate=0.5, decay_steps=10)(20)
    0.5
    """
    name = "inverse_time"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    rate = check_float(name, "decay_rate", decay_rate, low=0.0)
    k = check_int(name, "decay_steps", decay_steps, minimum=1)
    return Schedule(
        name, lambda t: lr / (1.0 + rate * t / k), {"lr": lr, "decay_rate": rate, "decay_steps": k}
    )


def invscaling(lr: float, *, power: float = 0.5) -> Schedule:
    """scikit-learn's ``learning_rate='invscaling'``: :math:`\\eta_t = \\mathrm{lr} / (t + 1)^{\\mathrm{power}}`.

    scikit-learn counts updates from 1 (``eta0 / pow(t, power_t)`` with ``t = 1`` at the first update); here
    ``t`` counts from 0, hence ``t + 1``. ``lr`` > 0, ``power`` >= 0.

    >>> invscaling(1.0, power=0.5)(3)
    0.5
    """
    name = "invscaling"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    p = check_float(name, "power", power, low=0.0)
    return Schedule(name, lambda t: lr / (t + 1) ** p, {"lr": lr, "power": p})


def polynomial(lr: float, total_steps: int, *, power: float = 1.0, end_lr: float = 0.0) -> Schedule:
    """Polynomial decay from ``lr`` to ``end_lr`` over ``total_steps`` updates, then ``end_lr``.

    :math:`\\eta_t = (\\mathrm{lr} - \\mathrm{end\\_lr}) (1 - \\min(t, T)/T)^{\\mathrm{power}} + \\mathrm{end\\_lr}`,
    :math:`T` = ``total_steps``. With ``end_lr=0`` this is torch's ``PolynomialLR(total_iters=T, power=power)``.

    ``lr`` > 0, ``total_steps`` an int >= 1, ``power`` > 0, ``end_lr`` in [0, lr].

    >>> polynomial(1.0, total_steps=4, power=2.0)(2)
    0.25
    """
    name = "polynomial"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    n = check_int(name, "total_steps", total_steps, minimum=1)
    p = check_float(name, "power", power, low=0.0, low_open=True)
    end = check_float(name, "end_lr", end_lr, low=0.0, high=lr)
    return Schedule(
        name,
        lambda t: (lr - end) * (1.0 - min(n, t) / n) ** p + end,
        {"lr": lr, "total_steps": n, "power": p, "end_lr": end},
    )


def _linear(name: str, start: float, end: float, n: int, params: dict[str, object]) -> Schedule:
    return Schedule(name, lambda t: start + (end - start) * min(n, t) / n, params)


def linear(start_lr: float, end_lr: float, total_steps: int) -> Schedule:
    """Straight line from ``start_lr`` at ``t = 0`` to ``end_lr`` at ``t = total_steps``, then ``end_lr``.

    :math:`\\eta_t = \\mathrm{start\\_lr} + (\\mathrm{end\\_lr} - \\mathrm{start\\_lr}) \\min(t, T) / T`,
    :math:`T` = ``total_steps``. torch's ``LinearLR(start_factor=a, end_factor=b, total_iters=T)`` on base rate
    :math:`r` is ``linear(a * r, b * r, T)``.

    ``start_lr``, ``end_lr`` >= 0, ``total_steps`` an int >= 1.

    >>> [linear(0.0, 1.0, total_steps=4)(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    name = "linear"
    a = check_float(name, "start_lr", start_lr, low=0.0)
    b = check_float(name, "end_lr", end_lr, low=0.0)
    n = check_int(name, "total_steps", total_steps, minimum=1)
    return _linear(name, a, b, n, {"start_lr": a, "end_lr": b, "total_steps": n})


def linear_warmup(lr: float, warmup_steps: int, *, start_lr: float = 0.0) -> Schedule:
    """Rise linearly from ``start_lr`` to ``lr`` over ``warmup_steps`` updates, then stay at ``lr``.

    :math:`\\eta_t = \\mathrm{start\\_lr} + (\\mathrm{lr} - \\mathrm{start\\_lr}) \\min(t, W) / W`,
    :math:`W` = ``warmup_steps``. With the default ``start_lr=0`` the first update (``t = 0``) has rate 0, as in
    most warm-up implementations; pass ``start_lr > 0`` to avoid that.

    ``lr`` > 0, ``warmup_steps`` an int >= 1, ``start_lr`` in [0, lr].

    >>> [linear_warmup(1.0, warmup_steps=4)(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    name = "linear_warmup"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    n = check_int(name, "warmup_steps", warmup_steps, minimum=1)
    a = check_float(name, "start_lr", start_lr, low=0.0, high=lr)
    return _linear(name, a, lr, n, {"lr": lr, "warmup_steps": n, "start_lr": a})
