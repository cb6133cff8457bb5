"""Learning-rate schedules as pure functions of the step.

A schedule is a callable ``schedule(t) -> float``: the learning rate of the update with 0-based index ``t`` (the
number of updates already applied). It holds no mutable state, so a resumed run needs only ``t``. Factories
check their arguments and raise ``ValueError`` (:class:`descend.ConfigError`) naming the argument and value.
Every schedule yields an absolute learning rate; a multiplier is a schedule built with ``lr=1.0``.

:class:`ReduceOnPlateau` is the one schedule driven by a metric; its small state is saved in checkpoints.
:class:`ScheduleLR` puts any schedule on any torch optimizer as a ``torch.optim.lr_scheduler.LRScheduler``.

>>> from descend.schedules import warmup_cosine, sample
>>> s = warmup_cosine(0.1, total_steps=100, warmup_steps=10)
>>> round(s(5), 3), round(s(10), 3), round(s(100), 3)
(0.05, 0.1, 0.0)
>>> len(sample(s, 100))
100
"""

from descend.schedules._base import Schedule, sample
from descend.schedules._compose import join, warmup
from descend.schedules._cosine import (
    cosine_annealing,
    cosine_warm_restarts,
    warmup_cosine,
    warmup_stable_decay,
)
from descend.schedules._cyclical import cyclic, cyclic_momentum, one_cycle, one_cycle_momentum
from descend.schedules._decay import (
    constant,
    exponential_decay,
    inverse_time,
    invscaling,
    linear,
    linear_warmup,
    multistep_decay,
    polynomial,
    step_decay,
)
from descend.schedules._named import NAMES, annealing_start, named
from descend.schedules._plateau import ReduceOnPlateau
from descend.schedules._torch import ScheduleLR

__all__ = [
    "NAMES",
    "ReduceOnPlateau",
    "Schedule",
    "ScheduleLR",
    "annealing_start",
    "constant",
    "cosine_annealing",
    "cosine_warm_restarts",
    "cyclic",
    "cyclic_momentum",
    "exponential_decay",
    "inverse_time",
    "invscaling",
    "join",
    "linear",
    "linear_warmup",
    "multistep_decay",
    "named",
    "one_cycle",
    "one_cycle_momentum",
    "polynomial",
    "sample",
    "step_decay",
    "warmup",
    "warmup_cosine",
    "warmup_stable_decay",
]
