"""Linear models: one affine map :math:`f(x) = W x + b`, told apart by the loss they are trained with.

===================  ======================  =====================================  ==========
model                task                    output                                 loss
===================  ======================  =====================================  ==========
LinearRegression     regression              :math:`\\hat y = Wx + b` (k targets)    mse
LogisticRegression   binary                  logit :math:`z`, :math:`P(y=1)=\\sigma(z)`  bce
SoftmaxRegression    multiclass              logits :math:`z \\in \\mathbb R^C`       cross_entropy
LinearSVM            binary or multiclass    margins :math:`w^\\top x + b`            hinge
===================  ======================  =====================================  ==========

Weights start at zero by default (the problems are convex, so the start only changes the path, not the end).

Example:
    >>> import torch
    >>> from descend.models import LogisticRegression
    >>> model = LogisticRegression(3)
    >>> model(torch.zeros(2, 3)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from descend.models.base import Model, register
from descend.models.init import check_scheme, initialize

__all__ = ["LinearRegression", "LinearSVM", "LogisticRegression", "SoftmaxRegression"]


class _Linear(Model):
    default_loss: ClassVar[str] = "mse"

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | None = None,
        *,
        init: str = "zeros",
        bias: bool = True,
    ) -> None:
        super().__init__(in_features, out_features)
        self.init = check_scheme(init, f"{type(self).__name__}: init")
        self.bias = bool(bias)
        self._maybe_build()

    def _build(self, in_features: int, out_features: int) -> nn.Module:
        return initialize(nn.Linear(in_features, out_features, bias=self.bias), self.init)

    def hyperparameters(self) -> dict[str, Any]:
        return {"init": self.init, "bias": self.bias}


@register
class LinearRegression(_Linear):
    """Least squares: :math:`\\hat y = W x + b`, trained on mean squared error by default.

    ``out_features`` is the number of targets (1 for a single column), filled in by ``fit`` when left out.
    """

    tasks = ("regression",)
    default_loss = "mse"


@register
class LogisticRegression(_Linear):
    """Binary logistic regression: one logit :math:`z = w^\\top x + b`, :math:`P(y=1 \\mid x) = \\sigma(z)`.

    Trained on binary cross-entropy from logits, :math:`-y\\log\\sigma(z) - (1-y)\\log(1-\\sigma(z))`.
    """

    tasks = ("binary",)
    fixed_outputs = 1
    default_loss = "bce"

    def __init__(self, in_features: int | None = None, *, init: str = "zeros", bias: bool = True) -> None:
        super().__init__(in_features, None, init=init, bias=bias)

    def config(self) -> dict[str, Any]:
        config = super().config()
        config.pop("out_features")
        return config


@register
class SoftmaxRegression(_Linear):
    """Multinomial logistic regression: logits :math:`z = Wx + b`, :math:`P(y=c \\mid x) = e^{z_c}/\\sum_j e^{z_j}`.

    ``out_features`` is the number of classes; trained on categorical cross-entropy.
    """

    tasks = ("multiclass",)
    default_loss = "cross_entropy"


@register
class LinearSVM(_Linear):
    """A linear support vector machine: margins :math:`w^\\top x + b`, trained on the hinge loss.

    For a binary target (``out_features=1``) the loss is :math:`\\max(0, 1 - t\\,f(x))` with :math:`t = 2y-1`;
    for ``C`` classes it is the multiclass hinge of Weston and Watkins. Add an L2 penalty (``fit(..., l2=...)``)
    for the usual soft-margin objective.
    """

    tasks = ("binary", "multiclass")
    default_loss = "hinge"
