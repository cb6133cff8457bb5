"""The learning-rate range test (Smith, 2017) and a suggestion rule that says how sure it is.

One *sweep* takes ``steps`` optimizer steps from the current state, the learning rate growing geometrically,

.. math:: \\alpha_i = \\alpha_{\\min} \\left(\\alpha_{\\max} / \\alpha_{\\min}\\right)^{i / (n - 1)},\\quad i = 0..n-1,

on mini-batches drawn from its own seeded generator. After each step it records the loss on a fixed *probe* of
``probe`` training rows (drawn once per sweep, evaluated without gradients in eval mode): the batch-to-batch
variance of the training loss would otherwise swamp the curve, and a probe forward costs a fraction of a step.
It stops early when the loss is not finite, or when its running average (an exponential moving average, factor
0.5) exceeds ``diverge`` times its lowest value three steps in a row (a single transient does not end the sweep). Several sweeps (``sweeps``, each on other batches, all from the same starting state) are run;
afterwards the model, the optimizer, the torch RNG and the gradients are exactly as before (bit for bit).

The rule, per sweep, on :math:`u = \\log_{10}\\alpha`:

1. smooth the loss by local linear regression in :math:`u` (a window of ±``0.3`` decades), which also gives the
   slope :math:`dL/du`, so the slope is taken against the log learning rate (not the learning rate, which would
   make the last noisy points dominate);
2. find the lowest smoothed loss :math:`L^*` at :math:`u^*`; the curve has a *usable descent* when the smoothed loss
   fell from its start :math:`L_0` by at least 5% of :math:`|L_0|` and by 3 noise standard deviations;
3. suggest :math:`\\min(10^{u^*}, \\alpha_{\\text{edge}}) / d`: the lowest loss of a short sweep sits near the
   largest rate the problem tolerates, and a run of thousands of steps does best some way inside it. How far
   inside depends on the optimizer, the model and the schedule, so the divisor :math:`d` = ``divisor`` defaults
   to one of :data:`DIVISORS`, or of :data:`WARMUP_ANNEAL_DIVISORS` when the rate is the peak of a schedule that
   warms up to it and anneals from it (``warmup_anneal``: warm-up-cosine, one-cycle):

   - 20 for adaptive optimizers (Adam, AdamW, RMSprop, Adagrad and the like): near a minimum the gradient shrinks
     and so does a plain step, while an adaptive step keeps its size, so its noise floor grows with the rate;
   - 5 for SGD, momentum and Nesterov on a network: a network's curvature grows as it trains (progressive
     sharpening, Cohen et al., 2021), so the largest stable rate of the first hundred steps is too large later;
   - 1.5 for SGD, momentum and Nesterov on a model linear in its parameters (linear, logistic and softmax
     regression, a linear SVM): its loss is convex and its curvature does not grow (constant under squared
     error, shrinking as a logistic fit improves), so the rate that was stable at the start stays stable.
     There the lowest point of a fast sweep can lie past the edge (the blow-up takes steps to show), so it is
     first capped at :math:`\\alpha_{\\text{edge}}` = :func:`stability_edge`, measured on the probe at the start.

   With a warm-up and an annealing schedule the peak can sit closer to the lowest-loss rate, as both of the
   constant rate's hazards are then brief: the rate is low while the optimizer's statistics are young, and low
   again where the noise floor would set the final loss. Measured with warm-up-cosine (``benchmarks/lr_auto.py
   --schedule warmup-cosine`` and the character LM of ``benchmarks/char_lm.py``, docs/benchmarks.md):

   - 10 for adaptive optimizers: on the six tables the best peaks lie at the lowest-loss rate over 3 to 10
     (where the grid's best is not flat), and over 3 Adam over-fits the digits MLP (validation loss 0.082
     against 0.022);
   - 2 for adaptive optimizers on a model with self-attention (a transformer): a 30-step sweep meets the
     transformer's early instability, which a warm-up removes, so its lowest-loss rate lies close to the peak it
     trains best at, not 10 times above it as on the tables. On the character LM (lowest-loss rate 2.7e-3, 2,000
     steps) peaks at that rate over 1.5, 3, 6 and 10 reach validation losses 1.84, 1.94, 2.05 and 2.14 (seed
     1337); with the sweeps started at 1e-4 (:data:`descend.tune.auto.LR_MIN_ATTENTION`) lr="auto" reaches 1.83
     to 1.88 over four seeds;
   - 5 and 1.5 for SGD and its momentum forms, as without a schedule (the tables' best peaks are scattered
     either side of those, with no better single number).

   The point of steepest descent (most negative slope before :math:`u^*`) is reported with each sweep; on its
   own it is too noisy to pick from.

The suggestion is the median of the sweeps' suggestions, and ``spread`` the ratio of the largest to the
smallest. When no sweep has a usable descent, ``fallback`` is True, the learning rate is ``fallback_lr`` (the
optimizer's own), and ``reason`` says so.

Example:
    >>> import torch
    >>> from descend.tune import lr_find
    >>> X = torch.randn(512, 4); y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(512)
    >>> model = torch.nn.Linear(4, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    >>> found = lr_find(model, opt, torch.nn.functional.mse_loss, X, y.unsqueeze(1), seed=0)
    >>> 1e-3 < found.lr < 1.0, found.fallback
    (True, False)
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from descend.errors import ConfigError

__all__ = ["LRFindResult", "Sweep", "adaptive", "lr_find", "suggest"]

_EMA = 0.5
_WINDOW_DECADES = 0.3
_MIN_DROP = 0.05


@dataclass
class Sweep:
    """One sweep: the learning rates tried, the losses seen, and this sweep's suggestion (None: no descent)."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float] = field(default_factory=list)
    slope: list[float] = field(default_factory=list)
    suggestion: float | None = None
    lowest: float | None = None
    steepest: float | None = None


@dataclass
class LRFindResult:
    """What :func:`lr_find` returns. ``lr`` is the learning rate to use; ``reason`` says how it was chosen."""

    lr: float
    low: float
    high: float
    fallback: bool
    reason: str
    sweeps: list[Sweep]
    steps: int
    seconds: float

    @property
    def spread(self) -> float:
        """``high / low``: how far apart the sweeps' suggestions are (1 when they agree)."""
        return self.high / self.low

    def rows(self) -> list[dict[str, Any]]:
        """One row per step of every sweep: sweep, step, lr, loss, smoothed loss, slope."""
        out = []
        for k, s in enumerate(self.sweeps):
            for i, (lr, loss) in enumerate(zip(s.lrs, s.losses)):
                sm = s.smoothed[i] if i < len(s.smoothed) else math.nan
                sl = s.slope[i] if i < len(s.slope) else math.nan
                out.append({"sweep": k, "step": i, "lr": lr, "loss": loss, "smoothed": sm, "slope": sl})
        return out

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`rows` to a CSV file (``lr_find.csv`` in a run folder)."""
        with open(Path(path), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["sweep", "step", "lr", "loss", "smoothed", "slope"])
            writer.writeheader()
            writer.writerows(self.rows())

    def summary(self) -> dict[str, Any]:
        """The numbers of the choice, for an event or a log line."""
        return {"lr": self.lr, "low": self.low, "high": self.high, "spread": self.spread, "fallback": self.fallback,
                "reason": self.reason, "sweeps": len(self.sweeps), "steps": self.steps, "seconds": self.seconds}  # fmt: skip


def _local_linear(u: np.ndarray, y: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Value and slope of a least-squares line through the points within ``half`` of each ``u``.

    The normal equations of every window at once: with :math:`d_{ij} = u_j - u_i` over the window of :math:`i`,
    slope :math:`= (S_0 T_1 - S_1 T_0) / (S_0 S_2 - S_1^2)` and value :math:`= (T_0 - \\text{slope}\\, S_1) / S_0`,
    :math:`S_k = \\sum d^k`, :math:`T_k = \\sum d^k y`. A window with one point keeps that point, slope 0.
    """
    d = u[None, :] - u[:, None]
    w = (np.abs(d) <= half).astype(float)
    S0, S1, S2 = w.sum(1), (w * d).sum(1), (w * d * d).sum(1)
    T0, T1 = w @ y, (w * d) @ y
    det = S0 * S2 - S1 * S1
    ok = (S0 >= 2) & (det > 1e-12 * np.maximum(S0 * S2, 1e-300))
    slope = np.where(ok, (S0 * T1 - S1 * T0) / np.where(ok, det, 1.0), 0.0)
    value = np.where(ok, (T0 - slope * S1) / S0, y)
    return value, slope


def adaptive(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer scales its steps per coordinate by gradient statistics (Adam, RMSprop, Adagrad...)."""
    from descend.optim import ChainOptimizer, ScaleByAdagrad, ScaleByAdam, ScaleByRms

    if isinstance(optimizer, ChainOptimizer):
        return any(isinstance(t, (ScaleByAdam, ScaleByRms, ScaleByAdagrad)) for t in optimizer.transforms)
    names = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta", "Adafactor", "SparseAdam")
    return type(optimizer).__name__ in names


def linear_in_parameters(model: nn.Module) -> bool:
    """Whether ``model`` is one affine map (linear, logistic, softmax regression, a linear SVM)."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    owners = [m for m in leaves if next(m.parameters(recurse=False), None) is not None]
    passive = (nn.Identity, nn.Flatten, nn.Dropout)
    return (len(owners) == 1 and isinstance(owners[0], nn.Linear)
            and all(m is owners[0] or isinstance(m, passive) for m in leaves))  # fmt: skip


def has_attention(model: nn.Module) -> bool:
    """Whether ``model`` has a self-attention layer (descend's transformers, or torch's ``nn.MultiheadAttention``)."""
    from descend.models.transformer import SelfAttention

    return any(isinstance(m, (SelfAttention, nn.MultiheadAttention)) for m in model.modules())


DIVISORS = {"adaptive": 20.0, "transformer": 20.0, "network": 5.0, "linear": 1.5}
#: the divisors for the peak of a schedule that warms up and anneals (see the module docstring)
WARMUP_ANNEAL_DIVISORS = {"adaptive": 10.0, "transformer": 2.0, "network": 5.0, "linear": 1.5}


def kind(model: nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """Which divisor of :data:`DIVISORS` applies: ``"adaptive"``, ``"transformer"`` (an adaptive optimizer on a
    model with self-attention), ``"linear"`` or ``"network"``."""
    if adaptive(optimizer):
        return "transformer" if has_attention(model) else "adaptive"
    return "linear" if linear_in_parameters(model) else "network"


def stability_edge(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[], Tensor]) -> float:
    """The largest stable rate of (momentum) gradient descent on the local quadratic of ``loss``.

    :math:`(2 + 2\\mu) / \\lambda_{\\max}` with heavy-ball momentum :math:`\\mu` (``2/λ`` without),
    :math:`(2 + 2\\mu) / ((1 + 2\\mu) \\lambda_{\\max})` with Nesterov's; :math:`\\lambda_{\\max}` the top Hessian
    eigenvalue (Lanczos, 1e-3 relative). Param groups that differ take the smallest. Dampening, which only
    shortens the step, is left out, so the edge errs low. ``inf`` when the loss has no positive curvature.
    """
    from descend.inspect.curvature import top_eigenvalue

    params = [p for p in model.parameters() if p.requires_grad]
    lam = top_eigenvalue(params, loss, tol=1e-3, max_iter=40).top
    if not lam > 0:
        return math.inf
    factors = []
    for group in optimizer.param_groups:
        mu = float(group.get("momentum", 0.0) or 0.0)
        factors.append((2 + 2 * mu) / (1 + 2 * mu) if group.get("nesterov") else 2 + 2 * mu)
    return min(factors) / lam


def suggest(lrs: list[float], losses: list[float], *, divisor: float = 5.0, edge: float = math.inf) -> Sweep:
    """Apply the rule (see the module docstring) to one sweep; ``suggestion`` is None without a usable descent.

    ``edge``: a learning rate known to be unstable (see :func:`stability_edge`); the lowest-loss rate is
    taken no higher than it before dividing.
    """
    sweep = Sweep(list(lrs), list(losses))
    n = len(losses)
    if n < 5:
        return sweep
    u, y = np.log10(np.asarray(lrs, dtype=float)), np.asarray(losses, dtype=float)
    value, slope = _local_linear(u, y, _WINDOW_DECADES)
    sweep.smoothed, sweep.slope = value.tolist(), slope.tolist()
    best = int(np.argmin(value))
    start = float(value[0])
    head = max(3, n // 10)
    noise = float(np.std(y[:head] - value[:head])) / math.sqrt(head)
    drop = start - float(value[best])
    if best == 0 or drop < max(_MIN_DROP * abs(start), 3 * noise):
        return sweep
    steep = int(np.argmin(slope[: best + 1]))
    sweep.lowest, sweep.steepest = float(lrs[best]), float(lrs[steep])
    sweep.suggestion = min(sweep.lowest, edge) / divisor
    return sweep


def _check(name: str, value: Any, ok: bool, accepted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        raise ConfigError(f"lr_find: invalid {name}={value!r}; expected {accepted}")


def lr_find(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    X: Tensor,
    y: Tensor,
    *,
    batch_size: int = 32,
    lr_min: float = 1e-6,
    lr_max: float = 10.0,
    steps: int = 80,
    sweeps: int = 3,
    diverge: float = 4.0,
    seed: int = 0,
    penalty: Callable[[], Tensor] | None = None,
    fallback_lr: float | None = None,
    probe: int = 256,
    divisor: float | None = None,
    warmup_anneal: bool = False,
) -> LRFindResult:
    """Run the range test on ``model`` with ``optimizer`` and suggest a learning rate (see the module docstring).

    Args:
        model, optimizer: any ``nn.Module`` and ``torch.optim.Optimizer``; both are left exactly as they were.
        loss_fn: ``(output, target) -> scalar``; ``penalty``: an extra term ``() -> scalar`` added to it.
        X, y: training rows and targets (targets shaped as ``loss_fn`` expects).
        batch_size: rows per step (int >= 1, or larger than the row count for full batches).
        lr_min, lr_max: the sweep's range, 0 < lr_min < lr_max. Default 1e-6 to 10.
        steps: steps per sweep, int >= 5. ``sweeps``: how many sweeps, int >= 1, each on other batches.
        diverge: stop a sweep when its running loss exceeds this many times its lowest, > 1.
        seed: seeds the sweeps' batches and probes (sweep k uses ``seed + k``).
        probe: rows in each sweep's probe (int >= 1; all rows when there are fewer).
        divisor: the suggestion is the lowest-loss rate over this (> 1); None: from :data:`DIVISORS`, or from
            :data:`WARMUP_ANNEAL_DIVISORS` with ``warmup_anneal``.
        warmup_anneal: whether the rate will be the peak of a schedule that warms up to it and anneals from it
            (:func:`descend.tune.auto.warms_up_and_anneals`).
        fallback_lr: the learning rate when no sweep shows a usable descent (default: the optimizer's).
    """
    _check("lr_min", lr_min, lr_min > 0, "a number > 0")
    _check("lr_max", lr_max, lr_max > lr_min, f"a number > lr_min={lr_min!r}")
    _check("diverge", diverge, diverge > 1, "a number > 1")
    if divisor is not None:
        _check("divisor", divisor, divisor > 1, "a number > 1 or None")
    if not isinstance(warmup_anneal, bool):
        raise ConfigError(f"lr_find: invalid warmup_anneal={warmup_anneal!r}; expected True or False")
    family = kind(model, optimizer)
    d = float(divisor) if divisor is not None else (WARMUP_ANNEAL_DIVISORS if warmup_anneal else DIVISORS)[family]
    for name, value, low in (("steps", steps, 5), ("sweeps", sweeps, 1), ("batch_size", batch_size, 1),
                             ("probe", probe, 1)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"lr_find: invalid {name}={value!r}; expected an int >= {low}")
    if fallback_lr is None:
        fallback_lr = float(optimizer.param_groups[0]["lr"])
    started = time.perf_counter()
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(optimizer.state_dict())
    saved_groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    saved_grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    was_training = model.training
    done: list[Sweep] = []
    taken = 0
    edge = math.inf
    try:
        with torch.random.fork_rng(devices=[]):
            if family == "linear":
                rows = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:probe].to(X.device)
                X_edge, y_edge = X.index_select(0, rows), y.index_select(0, rows)

                def edge_loss() -> Tensor:
                    value = loss_fn(model(X_edge), y_edge)
                    return value if penalty is None else value + penalty()

                edge = stability_edge(model, optimizer, edge_loss)
            for k in range(sweeps):
                lrs, losses = _sweep(model, optimizer, loss_fn, X, y, penalty, batch_size, lr_min, lr_max, steps,
                                     diverge, seed + k, probe)  # fmt: skip
                taken += len(losses)
                done.append(suggest(lrs, losses, divisor=d, edge=edge))
                _restore(model, optimizer, saved_model, saved_opt, saved_groups)
    finally:
        _restore(model, optimizer, saved_model, saved_opt, saved_groups)
        for p, g in zip(model.parameters(), saved_grads):
            p.grad = g
        model.train(was_training)
    picks = sorted(s.suggestion for s in done if s.suggestion is not None)
    seconds = time.perf_counter() - started
    if not picks:
        reason = (f"no usable descent in {sweeps} sweep(s) from {lr_min:g} to {lr_max:g} (the smoothed loss never fell "
                  f"by {_MIN_DROP:.0%} and 3 noise deviations); kept the fallback lr {fallback_lr:g}")  # fmt: skip
        return LRFindResult(fallback_lr, fallback_lr, fallback_lr, True, reason, done, taken, seconds)
    m = len(picks) // 2
    lr = picks[m] if len(picks) % 2 else math.sqrt(picks[m - 1] * picks[m])  # the median, geometric when even
    lowest = [s.lowest for s in done if s.lowest is not None]
    notes = {"adaptive": ["adaptive optimizer"], "transformer": ["adaptive optimizer", "a model with self-attention"],
             "linear": ["a model linear in its parameters"], "network": []}[family]
    if warmup_anneal:
        notes.append("the peak of a warm-up and annealing schedule")
    why = f" ({', '.join(notes)})" if notes and divisor is None else ""
    capped = sum(1 for s in done if s.lowest is not None and s.lowest > edge)
    reason = (f"{lr:.3g}: median of {len(picks)}/{sweeps} sweeps (range {picks[0]:.3g} to {picks[-1]:.3g}); the lr "
              f"at the lowest smoothed loss (median {float(np.median(lowest)):.3g})"
              f"{f', capped in {capped} sweep(s) at the stability edge {edge:.3g},' if capped else ''}"
              f" divided by {d:g}{why}")  # fmt: skip
    return LRFindResult(lr, picks[0], picks[-1], False, reason, done, taken, seconds)


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, saved_model: dict[str, Tensor],
             saved_opt: dict[str, Any], saved_groups: list[dict[str, Any]]) -> None:  # fmt: skip
    model.load_state_dict(saved_model)
    for group, saved in zip(optimizer.param_groups, saved_groups):
        group.update(saved)  # a schedule must be in place before loading a state saved with one
    optimizer.load_state_dict(copy.deepcopy(saved_opt))
    for group, saved in zip(optimizer.param_groups, saved_groups):
        group.update(saved)  # the exact objects: a schedule, a tensor lr


def _sweep(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[Tensor, Tensor], Tensor],
           X: Tensor, y: Tensor, penalty: Callable[[], Tensor] | None, batch_size: int, lr_min: float,
           lr_max: float, steps: int, diverge: float, seed: int, probe: int) -> tuple[list[float], list[float]]:  # fmt: skip
    from descend.train.loop import plain_step, plain_zero_grad

    torch.manual_seed(seed)  # dropout, inside fork_rng
    for group in optimizer.param_groups:
        group.pop("lr_schedule", None)
    gen = torch.Generator().manual_seed(seed)
    n = len(X)
    size = min(batch_size, n)
    order, at = torch.randperm(n, generator=gen).to(X.device), 0  # drawn on the CPU: the same rows on any device
    rows = order[: min(probe, n)]
    X_probe, y_probe = X.index_select(0, rows), y.index_select(0, rows)
    ratio = lr_max / lr_min
    lrs: list[float] = []
    losses: list[float] = []
    step, zero_grad = plain_step(optimizer), plain_zero_grad(optimizer)  # as the training loop steps
    ema, low, above = 0.0, math.inf, 0
    model.train()
    for i in range(steps):
        if at + size > n:
            order, at = torch.randperm(n, generator=gen).to(X.device), 0
        idx = order[at : at + size]
        at += size
        lr = lr_min * ratio ** (i / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_fn(model(X.index_select(0, idx)), y.index_select(0, idx))
        if penalty is not None:
            loss = loss + penalty()
        zero_grad()
        loss.backward()
        step()
        model.eval()
        with torch.no_grad():
            measured = loss_fn(model(X_probe), y_probe)
            if penalty is not None:
                measured = measured + penalty()
        model.train()
        value = float(measured)
        if not math.isfinite(value):
            break
        lrs.append(lr)
        losses.append(value)
        ema = _EMA * ema + (1 - _EMA) * value
        smooth = ema / (1 - _EMA ** (i + 1))
        low = min(low, smooth)
        above = above + 1 if i >= 5 and smooth > diverge * low else 0
        if above == 3:
            break
    return lrs, losses
