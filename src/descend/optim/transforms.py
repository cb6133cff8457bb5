"""Gradient transformations: each a small rule ``g -> u`` over one parameter's gradient and its own named state.

Symbols used in the docstrings: ``g`` the incoming gradient (or the update so far in a chain), ``p`` the
parameter, ``t`` the number of updates applied to ``p`` counting this one (1, 2, ...), ``u`` the outgoing update.
State keys follow torch.optim's names (``momentum_buffer``, ``exp_avg``, ...) so that states can be compared
with, and loaded from, torch.optim optimizers.

A rule is written in two parts so the same code serves the readable path and the compiled one:
``scalars(group, t)`` turns hyperparameters and the step count into every number the rule needs (``1 − β``,
bias corrections), in double precision; and ``apply(g, p, state, s)`` does the tensor work with those numbers and
no arithmetic on them, so the compiled path, which receives them as tensors, rounds them the same way. ``update`` is the two run one after the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from descend.optim.base import GlobalTransform, Group, Transform, check, check_bool

__all__ = [
    "Accumulate",
    "AddDecayedWeights",
    "ClipByGlobalNorm",
    "ClipByValue",
    "Maximize",
    "Momentum",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByLearningRate",
    "ScaleByRms",
    "SkipNonFinite",
    "accumulate",
    "add_decayed_weights",
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

Scalars = dict[str, Any]


class PerParam(Transform):
    """A :class:`Transform` split into ``scalars`` (numbers) and ``apply`` (tensor work).

    ``apply`` never changes its input ``g`` in place (it may return a tensor of its own state), so a chain
    can hand one rule's output to the next without copies.
    """

    def scalars(self, group: Group, t: int) -> Scalars:
        return {}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        raise NotImplementedError

    def active(self, group: Group, p: Tensor) -> bool:
        """False when, for this parameter and group, the rule is the identity (it is then skipped)."""
        return True

    def update(self, g: Tensor, p: Tensor, state: dict[str, Any], group: Group) -> Tensor:
        if not self.active(group, p):
            return g
        return self.apply(g, p, state, self.scalars(group, int(state["step"])))


class Maximize(PerParam):
    """Ascend instead of descend: ``u = -g`` when ``maximize`` is True, else ``u = g``.

    >>> import torch; Maximize(maximize=True).update(torch.ones(2), torch.zeros(2), {"step": 1}, {"maximize": True})
    tensor([-1., -1.])
    """

    name = "maximize"

    def __init__(self, maximize: bool = True) -> None:
        super().__init__(maximize=maximize)

    def validate(self, group: Group) -> None:
        check_bool(self.name, "maximize", group["maximize"])

    def active(self, group: Group, p: Tensor) -> bool:
        return bool(group["maximize"])

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        return -g


class AddDecayedWeights(PerParam):
    """Weight decay: ``u = g + λ p`` with ``λ = weight_decay`` (valid range [0, inf)).

    Placed before a preconditioner (Adam, RMSprop) this is L2 regularisation added to the gradient; placed
    after it, just before the learning rate, it is decoupled weight decay (AdamW): ``p ← p − α (u_adam + λ p)``.
    ``mask(p) -> bool`` chooses the parameters that decay; ``mask="matrices"`` decays only parameters with two
    or more dimensions (weights), sparing biases and normalisation scales.

    >>> import torch; add_decayed_weights(0.1).update(torch.zeros(1), torch.ones(1), {"step": 1}, {"weight_decay": 0.1})
    tensor([0.1000])
    """

    name = "add_decayed_weights"

    def __init__(
        self, weight_decay: float = 0.0, mask: Callable[[Tensor], bool] | str | None = None
    ) -> None:
        super().__init__(weight_decay=weight_decay)
        if mask == "matrices":
            self.mask: Callable[[Tensor], bool] | None = _is_matrix
        elif mask is None or callable(mask):
            self.mask = mask
        else:
            raise ValueError(
                f"{self.name}: invalid mask={mask!r}; expected None, 'matrices' or a callable param -> bool"
            )

    def validate(self, group: Group) -> None:
        check(self.name, "weight_decay", group["weight_decay"], 0.0)

    def active(self, group: Group, p: Tensor) -> bool:
        return group["weight_decay"] != 0 and (self.mask is None or self.mask(p))

    def scalars(self, group: Group, t: int) -> Scalars:
        return {"wd": group["weight_decay"]}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        return g.add(p, alpha=s["wd"])


def _is_matrix(p: Tensor) -> bool:
    return p.dim() >= 2


class Momentum(PerParam):
    """Heavy-ball or Nesterov momentum, with dampening.

    ``b_1 = g``; ``b_t = μ b_{t−1} + (1 − τ) g`` for t > 1; ``u = g + μ b_t`` if ``nesterov`` else ``u = b_t``,
    with ``μ = momentum`` in [0, 1) and ``τ = dampening`` in [0, 1]. Nesterov needs μ > 0 and τ = 0.
    State: ``momentum_buffer``. With μ = 0 the rule is the identity and keeps no state.

    >>> import torch; m = momentum(0.9); st = {"step": 1, **m.init(torch.zeros(1), m.defaults)}
    >>> m.update(torch.ones(1), torch.zeros(1), st, m.defaults)
    tensor([1.])
    """

    name = "momentum"
    state_names = ("momentum_buffer",)

    def __init__(self, momentum: float = 0.9, dampening: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(momentum=momentum, dampening=dampening, nesterov=nesterov)

    def validate(self, group: Group) -> None:
        check(self.name, "momentum", group["momentum"], 0.0, 1.0, hi_open=True)
        check(self.name, "dampening", group["dampening"], 0.0, 1.0)
        check_bool(self.name, "nesterov", group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"{self.name}: invalid nesterov=True with momentum={group['momentum']!r} and "
                f"dampening={group['dampening']!r}; Nesterov momentum requires momentum > 0 and dampening = 0"
            )

    def active(self, group: Group, p: Tensor) -> bool:
        return group["momentum"] != 0

    def init(self, p: Tensor, group: Group) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def scalars(self, group: Group, t: int) -> Scalars:
        # b starts at zero, so weighting the first gradient by 1 gives b_1 = g exactly.
        return {"mu": group["momentum"], "w": 1.0 if t == 1 else 1.0 - group["dampening"],
                "nesterov": group["nesterov"]}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        if "momentum_buffer" not in state:  # momentum switched on after the first step
            state["momentum_buffer"] = torch.zeros_like(p)
        b = state["momentum_buffer"]
        b.mul_(s["mu"]).add_(g, alpha=s["w"])
        return g.add(b, alpha=s["mu"]) if s["nesterov"] else b


class ScaleByAdagrad(PerParam):
    """AdaGrad: ``G_t = G_{t−1} + g²``, ``u = g / (√G_t + ε) / (1 + (t − 1) η)``.

    ``G_0 = initial_accumulator_value`` (>= 0), ``ε = eps`` (>= 0), ``η = lr_decay`` (>= 0). State: ``sum``.

    >>> import torch; a = scale_by_adagrad(); st = {"step": 1, **a.init(torch.zeros(1), a.defaults)}
    >>> a.update(torch.tensor([2.0]), torch.zeros(1), st, a.defaults)
    tensor([1.])
    """

    name = "scale_by_adagrad"
    state_names = ("sum",)

    def __init__(self, lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(lr_decay=lr_decay, initial_accumulator_value=initial_accumulator_value, eps=eps)

    def validate(self, group: Group) -> None:
        check(self.name, "lr_decay", group["lr_decay"], 0.0)
        check(self.name, "initial_accumulator_value", group["initial_accumulator_value"], 0.0)
        check(self.name, "eps", group["eps"], 0.0)

    def init(self, p: Tensor, group: Group) -> dict[str, Tensor]:
        return {"sum": torch.full_like(p, group["initial_accumulator_value"], memory_format=torch.preserve_format)}

    def scalars(self, group: Group, t: int) -> Scalars:
        return {"eps": group["eps"], "decay": 1.0 / (1.0 + (t - 1) * group["lr_decay"])}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        G = state["sum"]
        G.addcmul_(g, g, value=1)
        return g.div(G.sqrt().add_(s["eps"])).mul_(s["decay"])


class ScaleByRms(PerParam):
    """RMSprop scaling: ``v_t = α v_{t−1} + (1 − α) g²``, ``u = g / (√v_t + ε)``.

    Centered: also ``m_t = α m_{t−1} + (1 − α) g`` and ``u = g / (√(v_t − m_t²) + ε)``.
    ``α = alpha`` in [0, 1], ``ε = eps`` (>= 0). State: ``square_avg`` (and ``grad_avg`` when centered).

    >>> import torch; r = scale_by_rms(alpha=0.0, eps=0.0); st = {"step": 1, **r.init(torch.zeros(1), r.defaults)}
    >>> r.update(torch.tensor([-3.0]), torch.zeros(1), st, r.defaults)
    tensor([-1.])
    """

    name = "scale_by_rms"
    state_names = ("square_avg", "grad_avg")

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, centered: bool = False) -> None:
        super().__init__(alpha=alpha, eps=eps, centered=centered)

    def validate(self, group: Group) -> None:
        check(self.name, "alpha", group["alpha"], 0.0, 1.0)
        check(self.name, "eps", group["eps"], 0.0)
        check_bool(self.name, "centered", group["centered"])

    def init(self, p: Tensor, group: Group) -> dict[str, Tensor]:
        state = {"square_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def scalars(self, group: Group, t: int) -> Scalars:
        return {"alpha": group["alpha"], "w": 1 - group["alpha"], "eps": group["eps"], "centered": group["centered"]}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        v = state["square_avg"]
        v.mul_(s["alpha"]).addcmul_(g, g, value=s["w"])
        if s["centered"]:
            m = state["grad_avg"]
            m.lerp_(g, s["w"])
            rms = v.addcmul(m, m, value=-1).sqrt_()
        else:
            rms = v.sqrt()
        return g.div(rms.add_(s["eps"]))


class ScaleByAdam(PerParam):
    """Adam's moments with bias correction, optionally AMSGrad.

    ``m_t = β1 m_{t−1} + (1 − β1) g``, ``v_t = β2 v_{t−1} + (1 − β2) g²``;
    ``u = (m_t / (1 − β1^t)) / (√(v̂_t / (1 − β2^t)) + ε)`` with ``v̂_t = v_t``, or with AMSGrad
    ``v̂_t = max(v̂_{t−1}, v_t)``. ``(β1, β2) = betas``, each in [0, 1); ``ε = eps`` (>= 0).
    State: ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` with AMSGrad).

    >>> import torch; a = scale_by_adam(); st = {"step": 1, **a.init(torch.zeros(1), a.defaults)}
    >>> a.update(torch.tensor([0.5]), torch.zeros(1), st, a.defaults)
    tensor([1.])
    """

    name = "scale_by_adam"
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, amsgrad: bool = False) -> None:
        super().__init__(betas=betas, eps=eps, amsgrad=amsgrad)

    def validate(self, group: Group) -> None:
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{self.name}: invalid betas={betas!r}; expected a pair (beta1, beta2)")
        for i, b in enumerate(betas):
            check(self.name, f"betas[{i}]", b, 0.0, 1.0, hi_open=True)
        check(self.name, "eps", group["eps"], 0.0)
        check_bool(self.name, "amsgrad", group["amsgrad"])

    def init(self, p: Tensor, group: Group) -> dict[str, Tensor]:
        state = {
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def scalars(self, group: Group, t: int) -> Scalars:
        b1, b2 = group["betas"]
        return {"b1": b1, "w1": 1 - b1, "b2": b2, "w2": 1 - b2, "eps": group["eps"], "amsgrad": group["amsgrad"],
                "inv_bc1": 1 / (1 - b1**t), "inv_bc2_sqrt": 1 / math.sqrt(1 - b2**t)}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # A step bound by arithmetic once its tensors fit in cache: the first moment as a multiply and an add
        # (torch's exact lerp costs a comparison and a blend per entry), and both bias corrections as
        # multiplications by their inverses (one division per entry left, the one Adam is made of).
        m.mul_(s["b1"]).add_(g, alpha=s["w1"])
        v.mul_(s["b2"]).addcmul_(g, g, value=s["w2"])
        if s["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt().mul_(s["inv_bc2_sqrt"]).add_(s["eps"])
        return m.div(denom).mul_(s["inv_bc1"])


def is_schedule(lr: Any) -> bool:
    """True for a learning-rate schedule: a callable ``step -> lr`` (numbers and tensors are not)."""
    return callable(lr) and not isinstance(lr, Tensor)


class ScaleByLearningRate(PerParam):
    """The descent step: ``u = −α g`` with ``α = lr`` (>= 0): a float, a 0-d tensor, or a schedule.

    A schedule is any callable ``step -> lr``; the optimizer evaluates it before each update with the number
    of updates already applied (0, 1, ...), and writes the value to ``group["lr"]``.

    >>> import torch; scale_by_learning_rate(0.1).update(torch.ones(1), torch.zeros(1), {"step": 1}, {"lr": 0.1})
    tensor([-0.1000])
    """

    name = "scale_by_learning_rate"

    def __init__(self, lr: float | Tensor | Callable[[int], float] = 1e-3) -> None:
        super().__init__(lr=lr)

    def validate(self, group: Group) -> None:
        check(self.name, "lr", group["lr"], 0.0, accept=is_schedule,
              expected="a number >= 0, a 0-d tensor or a schedule (callable step -> lr)")

    def scalars(self, group: Group, t: int) -> Scalars:
        return {"neg_lr": -group["lr"]}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        return g.mul(s["neg_lr"])


class ClipByValue(PerParam):
    """Clip each gradient entry to ``[−c, c]`` with ``c = clip_value`` (> 0): ``u = clamp(g, −c, c)``.

    >>> import torch; clip_by_value(1.0).update(torch.tensor([3.0, -0.5]), torch.zeros(2), {"step": 1}, {"clip_value": 1.0})
    tensor([ 1.0000, -0.5000])
    """

    name = "clip_by_value"

    def __init__(self, clip_value: float = 1.0) -> None:
        super().__init__(clip_value=clip_value)

    def validate(self, group: Group) -> None:
        check(self.name, "clip_value", group["clip_value"], 0.0, lo_open=True)

    def scalars(self, group: Group, t: int) -> Scalars:
        return {"c": group["clip_value"]}

    def apply(self, g: Tensor, p: Tensor, state: dict[str, Any], s: Scalars) -> Tensor:
        return g.clamp(-s["c"], s["c"])


class ClipByGlobalNorm(GlobalTransform):
    """Rescale all gradients together when their global norm exceeds ``max_norm`` (> 0).

    ``N = √(Σ_i ‖g_i‖²)`` over every parameter of the step; ``u_i = g_i · min(1, max_norm / (N + 1e−6))``
    (the rule of ``torch.nn.utils.clip_grad_norm_``). The norm before clipping is kept in the optimizer's
    state as ``grad_norm`` (a float), so a training loop can record it without computing it again.

    >>> import torch; c = clip_by_global_norm(1.0); c.update_all([torch.tensor([3.0, 4.0])], [torch.zeros(2)], [{}], {})
    [tensor([0.6000, 0.8000])]
    """

    name = "clip_by_global_norm"
    may_skip = False

    def __init__(self, max_norm: float = 1.0) -> None:
        check(self.name, "max_norm", max_norm, 0.0, lo_open=True)
        self.max_norm = float(max_norm)
        self.defaults = {}

    def update_all(self, grads: list[Tensor], params: list[Tensor], states: list[dict[str, Any]],
                   gstate: dict[str, Any]) -> list[Tensor] | None:
        if not grads:
            return grads
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        gstate["grad_norm"] = float(norm)
        coef = torch.clamp(self.max_norm / (norm + 1e-6), max=1.0)
        return [g * coef.to(g.dtype) for g in grads]


class SkipNonFinite(GlobalTransform):
    """Skip the whole step (no update, no state change) when any gradient holds a NaN or an infinity.

    The count of skipped steps is kept in the optimizer's state as ``skipped_steps``.

    >>> import torch; print(skip_non_finite().update_all([torch.tensor([float("nan")])], [torch.zeros(1)], [{}], {}))
    None
    """

    name = "skip_non_finite"
    may_skip = True

    def __init__(self) -> None:
        self.defaults = {}

    def update_all(self, grads: list[Tensor], params: list[Tensor], states: list[dict[str, Any]],
                   gstate: dict[str, Any]) -> list[Tensor] | None:
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            gstate["skipped_steps"] = gstate.get("skipped_steps", 0) + 1
            return None
        return grads


class Accumulate(GlobalTransform):
    """Gradient accumulation: apply one update every ``k`` calls (int >= 1), with the mean of their gradients.

    Calls 1 .. k−1 of each cycle add ``g`` to the state ``accum`` and apply nothing; call k applies
    ``u = (accum + g) / k`` and resets ``accum``. Use it to train with an effective batch k times larger than
    what fits at once: call ``zero_grad()`` and ``step()`` after every small batch as usual.

    >>> import torch; a = accumulate(2); gs = {}; st = [{}]
    >>> print(a.update_all([torch.ones(1)], [torch.zeros(1)], st, gs)); a.update_all([torch.zeros(1)], [torch.zeros(1)], st, gs)
    None
    [tensor([0.5000])]
    """

    name = "accumulate"
    may_skip = True

    def __init__(self, k: int = 2) -> None:
        check(self.name, "k", k, 1, kind=int)
        self.k = k
        self.defaults = {}

    def update_all(self, grads: list[Tensor], params: list[Tensor], states: list[dict[str, Any]],
                   gstate: dict[str, Any]) -> list[Tensor] | None:
        calls = gstate.get("accumulate_calls", 0) + 1
        gstate["accumulate_calls"] = calls % self.k
        if calls < self.k:
            for g, st in zip(grads, states):
                if "accum" in st:
                    st["accum"].add_(g)
                else:
                    st["accum"] = g.clone()
            return None
        out = []
        for g, st in zip(grads, states):
            acc = st.pop("accum", None)
            out.append((g if acc is None else acc.add_(g)) / self.k)
        return out


# Lower-case factories, the way the rules are written in a chain: chain(clip_by_global_norm(1.0), scale_by_adam()).
maximize = Maximize
add_decayed_weights = AddDecayedWeights
momentum = Momentum
scale_by_adagrad = ScaleByAdagrad
scale_by_rms = ScaleByRms
scale_by_adam = ScaleByAdam
scale_by_learning_rate = ScaleByLearningRate
clip_by_value = ClipByValue
clip_by_global_norm = ClipByGlobalNorm
skip_non_finite = SkipNonFinite
accumulate = Accumulate
