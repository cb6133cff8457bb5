"""Schedules that go up and come down: one-cycle (Smith & Topin) and cyclical learning rates (Smith).

Both come with a momentum companion that moves opposite to the learning rate, for optimizers with a momentum
(or Adam's :math:`\\beta_1`): pass it as ``momentum=`` to :class:`~descend.schedules.ScheduleLR`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from descend.schedules._base import Schedule, check_choice, check_float, check_int, fail

__all__ = ["cyclic", "cyclic_momentum", "one_cycle", "one_cycle_momentum"]

_ANNEAL = ("cos", "linear")


def _anneal(kind: str, start: float, end: float, pct: float) -> float:
    if kind == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def _one_cycle_phases(name: str, total_steps: object, pct_start: object, three_phase: bool) -> tuple[int, float, list[float]]:
    """Check the shared arguments and return ``(total_steps, pct_start, phase end steps)``."""
    n = check_int(name, "total_steps", total_steps, minimum=2)
    p = check_float(name, "pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True)
    peak = p * n - 1
    if peak <= 0:
        fail(name, "pct_start", p, f"pct_start * total_steps > 1 (total_steps={n}), so the rise has a step")
    if not three_phase:
        return n, p, [peak, n - 1.0]
    if 2 * p * n - 2 >= n - 1:
        fail(name, "pct_start", p, f"2 * pct_start * total_steps < total_steps + 1 (total_steps={n})")
    return n, p, [peak, 2 * p * n - 2, n - 1.0]


def _one_cycle(kind: str, ends: list[float], values: list[float], t: int) -> float:
    # values[i] -> values[i + 1] over phase i; past the last update the final value holds.
    t_ = min(float(t), ends[-1])
    start = 0.0
    for i, end in enumerate(ends):
        if t_ <= end or i == len(ends) - 1:
            return _anneal(kind, values[i], values[i + 1], (t_ - start) / (end - start))
        start = end
    raise AssertionError("unreachable")


def one_cycle(
    max_lr: float,
    total_steps: int,
    *,
    pct_start: float = 0.3,
    anneal: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle policy: rise from ``max_lr / div_factor`` to ``max_lr``, then anneal far below the start.

    With :math:`T` = ``total_steps``, :math:`p` = ``pct_start``, :math:`\\eta_0 = \\mathrm{max\\_lr} /
    \\mathrm{div\\_factor}` and :math:`\\eta_{min} = \\eta_0 / \\mathrm{final\\_div\\_factor}`, the rate moves
    :math:`\\eta_0 \\to \\mathrm{max\\_lr}` over :math:`0 \\le t \\le pT - 1`, then :math:`\\mathrm{max\\_lr} \\to
    \\eta_{min}` until :math:`t = T - 1`. With ``three_phase`` it goes :math:`\\eta_0 \\to \\mathrm{max\\_lr}
    \\to \\eta_0` (ends :math:`pT - 1` and :math:`2pT - 2`) and then :math:`\\eta_0 \\to \\eta_{min}`. Within a phase
    from :math:`a` to :math:`b` at fraction :math:`q \\in [0, 1]` the rate is :math:`b + (a - b)(1 + \\cos \\pi q)/2`
    (``anneal="cos"``) or :math:`a + (b - a) q` (``"linear"``). After update :math:`T - 1` it stays at
    :math:`\\eta_{min}`. This is torch's ``OneCycleLR`` with the same argument names (``anneal_strategy`` is
    ``anneal``); the momentum half is :func:`one_cycle_momentum`.

    ``max_lr`` > 0, ``total_steps`` an int >= 2, ``pct_start`` in (0, 1) with ``pct_start * total_steps > 1``
    (and ``2 * pct_start * total_steps < total_steps + 1`` for three phases), ``div_factor`` and
    ``final_div_factor`` >= 1.

    >>> s = one_cycle(25.0, total_steps=10, final_div_factor=2.0, anneal="linear")
    >>> [round(s(t), 6) for t in range(10)]
    [1.0, 13.0, 25.0, 21.5, 18.0, 14.5, 11.0, 7.5, 4.0, 0.5]
    """
    name = "one_cycle"
    top = check_float(name, "max_lr", max_lr, low=0.0, low_open=True)
    three = bool(three_phase)
    n, p, ends = _one_cycle_phases(name, total_steps, pct_start, three)
    kind = check_choice(name, "anneal", anneal, _ANNEAL)
    div = check_float(name, "div_factor", div_factor, low=1.0)
    final_div = check_float(name, "final_div_factor", final_div_factor, low=1.0)
    lo = top / div
    bottom = lo / final_div
    values = [lo, top, lo, bottom] if three else [lo, top, bottom]
    params = {"max_lr": top, "total_steps": n, "pct_start": p, "anneal": kind, "div_factor": div}
    params |= {"final_div_factor": final_div, "three_phase": three}
    return Schedule(name, lambda t: _one_cycle(kind, ends, values, t), params)


def one_cycle_momentum(
    total_steps: int,
    *,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    pct_start: float = 0.3,
    anneal: str = "cos",
    three_phase: bool = False,
) -> Schedule:
    """The momentum half of the 1cycle policy: the mirror image of :func:`one_cycle`'s learning rate.

    Same phases as :func:`one_cycle`; the momentum moves ``max_momentum`` :math:`\\to` ``base_momentum``
    :math:`\\to` ``max_momentum`` (two phases), or ``max_momentum`` :math:`\\to` ``base_momentum`` :math:`\\to`
    ``max_momentum`` :math:`\\to` ``max_momentum`` (three phases). Pass the same ``total_steps``, ``pct_start``,
    ``anneal`` and ``three_phase`` as to :func:`one_cycle`.

    ``base_momentum`` in [0, 1], ``max_momentum`` in [base_momentum, 1].

    >>> m = one_cycle_momentum(10, anneal="linear")
    >>> round(m(0), 6), round(m(2), 6), round(m(9), 6)
    (0.95, 0.85, 0.95)
    """
    name = "one_cycle_momentum"
    three = bool(three_phase)
    n, p, ends = _one_cycle_phases(name, total_steps, pct_start, three)
    kind = check_choice(name, "anneal", anneal, _ANNEAL)
    lo = check_float(name, "base_momentum", base_momentum, low=0.0, high=1.0)
    hi = check_float(name, "max_momentum", max_momentum, low=lo, high=1.0)
    values = [hi, lo, hi, hi] if three else [hi, lo, hi]
    params = {"total_steps": n, "base_momentum": lo, "max_momentum": hi, "pct_start": p, "anneal": kind}
    return Schedule(name, lambda t: _one_cycle(kind, ends, values, t), {**params, "three_phase": three})


_MODES = ("triangular", "triangular2", "exp_range")


def _cycle_shape(
    name: str, step_size_up: object, step_size_down: object, mode: object, gamma: object
) -> tuple[dict[str, object], Callable[[int], float]]:
    """Check the shared arguments of the cyclical pair; return them and ``h(t)`` in [0, 1] (height x scale)."""
    up = check_int(name, "step_size_up", step_size_up, minimum=1)
    down = up if step_size_down is None else check_int(name, "step_size_down", step_size_down, minimum=1)
    m = check_choice(name, "mode", mode, _MODES)
    g = check_float(name, "gamma", gamma, low=0.0, high=1.0, low_open=True)
    period = up + down

    def height(t: int) -> float:
        pos = t % period
        rise = pos / up if pos <= up else (period - pos) / down
        if m == "triangular":
            return rise
        if m == "triangular2":
            return rise * (1 / 2.0 ** (t // period))
        return rise * g**t

    return {"step_size_up": up, "step_size_down": down, "mode": m, "gamma": g}, height


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: int,
    *,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
    """Cyclical learning rate: up from ``base_lr`` to ``max_lr`` and back down, over and over.

    :math:`\\eta_t = \\mathrm{base\\_lr} + (\\mathrm{max\\_lr} - \\mathrm{base\\_lr})\\, r(t)\\, s(t)`. The rise
    :math:`r(t)` goes linearly 0 :math:`\\to` 1 over ``step_size_up`` updates (:math:`U`) and back to 0 over
    ``step_size_down`` (:math:`D`, default :math:`U`): with :math:`x = t \\bmod (U + D)`, :math:`r = x / U` if
    :math:`x \\le U` else :math:`(U + D - x) / D`. The scale :math:`s(t)` is 1 (``"triangular"``),
    :math:`2^{-\\lfloor t / (U + D) \\rfloor}` (``"triangular2"``, halving each cycle) or :math:`\\gamma^t`
    (``"exp_range"``, ``gamma``). This is torch's ``CyclicLR``; the momentum half is :func:`cyclic_momentum`.

    ``base_lr`` >= 0, ``max_lr`` >= base_lr (and > 0), ``step_size_up`` and ``step_size_down`` ints >= 1,
    ``gamma`` in (0, 1].

    >>> s = cyclic(0.1, 1.0, step_size_up=2)
    >>> [round(s(t), 3) for t in range(6)]
    [0.1, 0.55, 1.0, 0.55, 0.1, 0.55]
    """
    name = "cyclic"
    lo = check_float(name, "base_lr", base_lr, low=0.0)
    hi = check_float(name, "max_lr", max_lr, low=max(lo, 0.0), low_open=lo == 0.0)
    params, h = _cycle_shape(name, step_size_up, step_size_down, mode, gamma)
    return Schedule(name, lambda t: lo + (hi - lo) * h(t), {"base_lr": lo, "max_lr": hi, **params})


def cyclic_momentum(
    base_momentum: float,
    max_momentum: float,
    step_size_up: int,
    *,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
    """The momentum half of :func:`cyclic`: high when the learning rate is low, and the other way round.

    :math:`\\mu_t = \\mathrm{max\\_momentum} - (\\mathrm{max\\_momentum} - \\mathrm{base\\_momentum})\\, r(t)\\, s(t)`,
    with :math:`r` and :math:`s` as in :func:`cyclic` (pass the same ``step_size_up``, ``step_size_down``,
    ``mode`` and ``gamma``).

    ``base_momentum`` in [0, 1], ``max_momentum`` in [base_momentum, 1].

    >>> m = cyclic_momentum(0.8, 0.9, step_size_up=2)
    >>> [round(m(t), 3) for t in range(5)]
    [0.9, 0.85, 0.8, 0.85, 0.9]
    """
    name = "cyclic_momentum"
    lo = check_float(name, "base_momentum", base_momentum, low=0.0, high=1.0)
    hi = check_float(name, "max_momentum", max_momentum, low=lo, high=1.0)
    params, h = _cycle_shape(name, step_size_up, step_size_down, mode, gamma)
    return Schedule(name, lambda t: hi - (hi - lo) * h(t), {"base_momentum": lo, "max_momentum": hi, **params})
