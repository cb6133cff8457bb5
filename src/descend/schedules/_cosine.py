"""Cosine schedules: annealing with a floor, warm restarts (SGDR), warm-up + cosine, warm-up-stable-decay."""

from __future__ import annotations

import math

from descend.schedules._base import Schedule, check_choice, check_float, check_int, fail
from descend.schedules._compose import warmup

__all__ = ["cosine_annealing", "cosine_warm_restarts", "warmup_cosine", "warmup_stable_decay"]


def _cosine(lr: float, min_lr: float, t: int, n: int) -> float:
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * t / n)) / 2


def cosine_annealing(lr: float, total_steps: int, *, min_lr: float = 0.0) -> Schedule:
    """Half a cosine from ``lr`` down to the floor ``min_lr`` over ``total_steps`` updates, then ``min_lr``.

    :math:`\\eta_t = \\eta_{min} + \\tfrac12 (\\mathrm{lr} - \\eta_{min})(1 + \\cos(\\pi \\min(t, T) / T))`, with
    :math:`T` = ``total_steps`` and :math:`\\eta_{min}` = ``min_lr``. For :math:`t \\le T` this is the closed form
    of torch's ``CosineAnnealingLR(T_max=T, eta_min=min_lr)``; past ``T`` torch climbs back up, this stays at
    the floor.

    ``lr`` > 0, ``total_steps`` an int >= 1, ``min_lr`` in [0, lr].

    >>> s = cosine_annealing(1.0, total_steps=10, min_lr=0.1)
    >>> s(0), s(5), s(10), s(99)
    (1.0, 0.55, 0.1, 0.1)
    """
    name = "cosine_annealing"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    n = check_int(name, "total_steps", total_steps, minimum=1)
    floor = check_float(name, "min_lr", min_lr, low=0.0, high=lr)
    return Schedule(
        name, lambda t: _cosine(lr, floor, min(t, n), n), {"lr": lr, "total_steps": n, "min_lr": floor}
    )


def cosine_warm_restarts(lr: float, period: int, *, period_mult: int = 1, min_lr: float = 0.0) -> Schedule:
    """Cosine annealing restarted every period, each period ``period_mult`` times the last (SGDR).

    :math:`\\eta_t = \\eta_{min} + \\tfrac12 (\\mathrm{lr} - \\eta_{min})(1 + \\cos(\\pi\\, t_{cur} / T_i))`, where
    :math:`T_0` = ``period``, :math:`T_{i+1} = T_i \\cdot` ``period_mult``, and :math:`t_{cur}` is the number of
    updates since the start of the current period :math:`i`. This is torch's
    ``CosineAnnealingWarmRestarts(T_0=period, T_mult=period_mult, eta_min=min_lr)``.

    ``lr`` > 0, ``period`` an int >= 1, ``period_mult`` an int >= 1, ``min_lr`` in [0, lr].

    >>> s = cosine_warm_restarts(1.0, period=2, period_mult=2)
    >>> [round(s(t), 3) for t in range(7)]
    [1.0, 0.5, 1.0, 0.854, 0.5, 0.146, 1.0]
    """
    name = "cosine_warm_restarts"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    t0 = check_int(name, "period", period, minimum=1)
    mult = check_int(name, "period_mult", period_mult, minimum=1)
    floor = check_float(name, "min_lr", min_lr, low=0.0, high=lr)

    def rate(t: int) -> float:
        if mult == 1:
            return _cosine(lr, floor, t % t0, t0)
        # Integer arithmetic throughout: the loop runs once per restart, O(log t) times.
        ti = t0
        while t >= ti:
            t -= ti
            ti *= mult
        return _cosine(lr, floor, t, ti)

    return Schedule(name, rate, {"lr": lr, "period": t0, "period_mult": mult, "min_lr": floor})


def warmup_cosine(
    lr: float, total_steps: int, *, warmup_steps: int, start_lr: float = 0.0, min_lr: float = 0.0
) -> Schedule:
    """Linear warm-up from ``start_lr`` to ``lr``, then cosine annealing to ``min_lr`` by ``total_steps``.

    :math:`\\eta_t = a + (\\mathrm{lr} - a)\\, t / W` for :math:`t < W`; then
    :math:`\\eta_t = \\eta_{min} + \\tfrac12 (\\mathrm{lr} - \\eta_{min})(1 + \\cos(\\pi \\min(t - W, T - W)/(T - W)))`,
    with :math:`W` = ``warmup_steps``, :math:`T` = ``total_steps``, :math:`a` = ``start_lr``,
    :math:`\\eta_{min}` = ``min_lr``.

    ``lr`` > 0, ``total_steps`` an int >= 1, ``warmup_steps`` an int in [0, total_steps), ``start_lr`` and
    ``min_lr`` in [0, lr].

    >>> s = warmup_cosine(1.0, total_steps=12, warmup_steps=2)
    >>> s(0), s(1), s(2), s(7), s(12)
    (0.0, 0.5, 1.0, 0.5, 0.0)
    """
    name = "warmup_cosine"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    n = check_int(name, "total_steps", total_steps, minimum=1)
    w = check_int(name, "warmup_steps", warmup_steps, minimum=0)
    if w >= n:
        fail(name, "warmup_steps", w, f"an int < total_steps={n} (the warm-up must end before the horizon)")
    a = check_float(name, "start_lr", start_lr, low=0.0, high=lr)
    floor = check_float(name, "min_lr", min_lr, low=0.0, high=lr)
    inner = warmup(cosine_annealing(lr, n - w, min_lr=floor), w, start_lr=a)
    params = {"lr": lr, "total_steps": n, "warmup_steps": w, "start_lr": a, "min_lr": floor}
    return Schedule(name, inner, params)


_DECAY_SHAPES = ("linear", "cosine", "sqrt")


def warmup_stable_decay(
    lr: float,
    total_steps: int,
    *,
    warmup_steps: int,
    decay_steps: int,
    start_lr: float = 0.0,
    min_lr: float = 0.0,
    decay_shape: str = "linear",
) -> Schedule:
    """Warm up, hold ``lr`` flat, and decay to ``min_lr`` over the last ``decay_steps`` updates (WSD).

    With :math:`W` = ``warmup_steps``, :math:`D` = ``decay_steps``, :math:`T` = ``total_steps``, :math:`a` =
    ``start_lr`` and :math:`\\eta_{min}` = ``min_lr``:

    - :math:`t < W`: :math:`\\eta_t = a + (\\mathrm{lr} - a)\\, t / W`;
    - :math:`W \\le t < T - D`: :math:`\\eta_t = \\mathrm{lr}`;
    - :math:`t \\ge T - D`: :math:`\\eta_t = \\eta_{min} + (\\mathrm{lr} - \\eta_{min})\\, f(p)`, with
      :math:`p = \\min(t - T + D, D) / D` and :math:`f(p) = 1 - p` (``"linear"``),
      :math:`\\tfrac12(1 + \\cos \\pi p)` (``"cosine"``) or :math:`1 - \\sqrt p` (``"sqrt"``).

    ``lr`` > 0, ``total_steps`` an int >= 1, ``warmup_steps`` an int >= 0 and ``decay_steps`` an int >= 1 with
    ``warmup_steps + decay_steps <= total_steps``, ``start_lr`` and ``min_lr`` in [0, lr].

    >>> s = warmup_stable_decay(1.0, total_steps=10, warmup_steps=2, decay_steps=4)
    >>> [s(t) for t in range(11)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    name = "warmup_stable_decay"
    lr = check_float(name, "lr", lr, low=0.0, low_open=True)
    n = check_int(name, "total_steps", total_steps, minimum=1)
    w = check_int(name, "warmup_steps", warmup_steps, minimum=0)
    d = check_int(name, "decay_steps", decay_steps, minimum=1)
    if w + d > n:
        fail(name, "decay_steps", d, f"an int <= total_steps - warmup_steps = {n} - {w} = {n - w}")
    a = check_float(name, "start_lr", start_lr, low=0.0, high=lr)
    floor = check_float(name, "min_lr", min_lr, low=0.0, high=lr)
    shape = check_choice(name, "decay_shape", decay_shape, _DECAY_SHAPES)
    decay_start = n - d

    def rate(t: int) -> float:
        if t < w:
            return a + (lr - a) * t / w
        if t < decay_start:
            return lr
        p = min(t - decay_start, d) / d
        if shape == "linear":
            f = 1.0 - p
        elif shape == "cosine":
            f = (1 + math.cos(math.pi * p)) / 2
        else:
            f = 1.0 - math.sqrt(p)
        return floor + (lr - floor) * f

    params = {"lr": lr, "total_steps": n, "warmup_steps": w, "decay_steps": d, "start_lr": a, "min_lr": floor}
    return Schedule(name, rate, {**params, "decay_shape": shape})
