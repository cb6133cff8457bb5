"""Reduce-on-plateau: the one schedule driven by a metric rather than by the step number."""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

from descend.schedules._base import check_choice, check_float, check_int, check_step, fail

__all__ = ["ReduceOnPlateau"]

_STATE_KEYS = ("lr", "best", "num_bad", "cooldown_left", "num_metrics")


class ReduceOnPlateau:
    """Multiply the learning rate by ``factor`` when a metric has stopped improving.

    Call :meth:`step` with the metric (say, the validation loss once per epoch). A metric :math:`m` *improves* on
    the best so far :math:`b` when :math:`m < b(1 - \\epsilon)` (``mode="min"``, ``threshold_mode="rel"``),
    :math:`m < b - \\epsilon` (``"min"``, ``"abs"``), :math:`m > b(1 + \\epsilon)` (``"max"``, ``"rel"``) or
    :math:`m > b + \\epsilon` (``"max"``, ``"abs"``), :math:`\\epsilon` = ``threshold``; before the first
    improvement :math:`b = +\\infty` (``"min"``) or :math:`-\\infty` (``"max"``), so a NaN metric never
    improves. After more than ``patience`` metrics in a row without improvement the rate becomes
    :math:`\\eta \\leftarrow \\max(\\eta \\cdot \\mathrm{factor}, \\mathrm{min\\_lr})`, unless that changes it by
    ``eps`` or less; then for ``cooldown`` metrics nothing counts as bad. This is torch's
    ``ReduceLROnPlateau`` for one parameter group (use one instance per group).

    The object is also a schedule: ``plateau(t)`` is the current rate whatever ``t``, so it can be given as the
    ``lr`` of an optimizer or to :class:`~descend.schedules.ScheduleLR`. Unlike the pure schedules it has state;
    :meth:`state_dict` holds all of it in plain Python types (JSON- and ``weights_only``-safe), and a run resumed
    with :meth:`load_state_dict` continues exactly.

    ``lr`` > 0, ``mode`` ``"min"`` or ``"max"``, ``factor`` in (0, 1), ``patience`` and ``cooldown`` ints >= 0,
    ``threshold`` >= 0, ``threshold_mode`` ``"rel"`` or ``"abs"``, ``min_lr`` in [0, lr], ``eps`` >= 0.

    >>> p = ReduceOnPlateau(1.0, factor=0.5, patience=1)
    >>> [p.step(m) for m in (3.0, 2.0, 2.5, 2.5, 2.5, 1.0)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    """

    name = "ReduceOnPlateau"

    def __init__(
        self,
        lr: float,
        *,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        name = self.name
        self.initial_lr = check_float(name, "lr", lr, low=0.0, low_open=True)
        self.mode = check_choice(name, "mode", mode, ("min", "max"))
        self.factor = check_float(name, "factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int(name, "patience", patience, minimum=0)
        self.threshold = check_float(name, "threshold", threshold, low=0.0)
        self.threshold_mode = check_choice(name, "threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = check_int(name, "cooldown", cooldown, minimum=0)
        self.min_lr = check_float(name, "min_lr", min_lr, low=0.0, high=self.initial_lr)
        self.eps = check_float(name, "eps", eps, low=0.0)
        self._lr = self.initial_lr
        self._worst = math.inf if self.mode == "min" else -math.inf
        self._best = self._worst
        self._num_bad = 0
        self._cooldown_left = 0
        self._num_metrics = 0

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self._lr

    def __call__(self, step: int) -> float:
        check_step(self.name, step)
        return self._lr

    def _improves(self, m: float, best: float) -> bool:
        if self.mode == "min":
            return m < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return m > (best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metric: SupportsFloat) -> float:
        """Record one value of the metric; return the learning rate from now on."""
        m = float(metric)
        self._num_metrics += 1
        if self._improves(m, self._best):
            self._best = m
            self._num_bad = 0
        else:
            self._num_bad += 1
        if self._cooldown_left > 0:
            self._cooldown_left -= 1
            self._num_bad = 0
        if self._num_bad > self.patience:
            reduced = max(self._lr * self.factor, self.min_lr)
            if self._lr - reduced > self.eps:
                self._lr = reduced
            self._cooldown_left = self.cooldown
            self._num_bad = 0
        return self._lr

    def state_dict(self) -> dict[str, Any]:
        """The state, in plain Python types: ``lr``, ``best`` (None until a metric improves), ``num_bad``,
        ``cooldown_left``, ``num_metrics``. The arguments are config, re-given at construction."""
        return {
            "lr": self._lr,
            "best": None if self._best == self._worst else self._best,
            "num_bad": self._num_bad,
            "cooldown_left": self._cooldown_left,
            "num_metrics": self._num_metrics,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if not isinstance(state, dict) or set(state) != set(_STATE_KEYS):
            keys = sorted(state) if isinstance(state, dict) else state
            fail(self.name, "state", keys, "a dict with keys " + ", ".join(_STATE_KEYS))
        self._lr = check_float(self.name, "state['lr']", state["lr"], low=0.0)
        best = state["best"]
        self._best = self._worst if best is None else float(best)
        self._num_bad = check_int(self.name, "state['num_bad']", state["num_bad"], minimum=0)
        self._cooldown_left = check_int(self.name, "state['cooldown_left']", state["cooldown_left"], minimum=0)
        self._num_metrics = check_int(self.name, "state['num_metrics']", state["num_metrics"], minimum=0)

    def __repr__(self) -> str:
        return (
            f"ReduceOnPlateau(lr={self.initial_lr!r}, mode={self.mode!r}, factor={self.factor!r}, "
            f"patience={self.patience!r}, threshold={self.threshold!r}, threshold_mode={self.threshold_mode!r}, "
            f"cooldown={self.cooldown!r}, min_lr={self.min_lr!r}, eps={self.eps!r}) at lr={self._lr!r}"
        )
