"""The optimizer family: gradient transformations that chain into real ``torch.optim.Optimizer`` objects.

Named optimizers (drop-in for torch.optim, same argument names, defaults and numbers): :class:`SGD`
(:class:`GradientDescent`), :class:`Momentum`, :class:`Nesterov`, :class:`Adagrad`, :class:`RMSprop`, :class:`Adam`,
:class:`AdamW`; second-order steps for full-batch problems: :class:`Newton` (exact Hessian, damped) and
:class:`LBFGS`. Build your own with :func:`chain` and the transformations below.
"""

from descend.optim.alias import SGD, Adagrad, Adam, AdamW, GradientDescent, Momentum, Nesterov, RMSprop
from descend.optim.base import GlobalTransform, Transform
from descend.optim.chain import ChainOptimizer, chain
from descend.optim.lbfgs import LBFGS
from descend.optim.newton import Newton
from descend.optim.transforms import (
    Accumulate,
    AddDecayedWeights,
    ClipByGlobalNorm,
    ClipByValue,
    Maximize,
    PerParam,
    ScaleByAdagrad,
    ScaleByAdam,
    ScaleByLearningRate,
    ScaleByRms,
    SkipNonFinite,
    accumulate,
    add_decayed_weights,
    clip_by_global_norm,
    clip_by_value,
    is_schedule,
    maximize,
    momentum,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    skip_non_finite,
)
from descend.optim.transforms import (
    Momentum as MomentumTransform,
)

__all__ = [
    "LBFGS",
    "SGD",
    "Accumulate",
    "Adagrad",
    "Adam",
    "AdamW",
    "AddDecayedWeights",
    "ChainOptimizer",
    "ClipByGlobalNorm",
    "ClipByValue",
    "GlobalTransform",
    "GradientDescent",
    "Maximize",
    "Momentum",
    "MomentumTransform",
    "Nesterov",
    "Newton",
    "PerParam",
    "RMSprop",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByLearningRate",
    "ScaleByRms",
    "SkipNonFinite",
    "Transform",
    "accumulate",
    "add_decayed_weights",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "is_schedule",
    "maximize",
    "momentum",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "skip_non_finite",
]
