"""Findings: rules that turn a run's measurements into a diagnosis in plain words, with evidence and a fix.

Each rule reads the :class:`Evidence` of a run: the epoch rows (``FitResult.history``: ``loss``, ``val_loss``,
``grad_norm``, ...), the records of :class:`~descend.inspect.monitor.HealthMonitor` and
:class:`~descend.inspect.monitor.SharpnessMonitor`, the stop reason, what early stopping and the divergence guard
did, what the run already uses (initialisation, dropout, weight decay, clipping) and, when a rule needs to tell a
slow learning rate from an incapable model, a *probe*: :data:`PROBE_STEPS` steps of the run's own optimizer at
10 times its learning rate on a fixed batch of training rows (then 100, 1000 and 10000 times, while the loss neither
falls by 10% nor blows up: a rate far too low is a rate too low too), after which the model and optimizer are put
back bit for bit. Losses are in the training objective's units (``fit`` standardises regression targets, and its
``loss`` and ``val_loss`` with them).

"Recent" means the last ``RECENT`` (3) records; a rule on records fires only if its condition holds on every
recent record, so one noisy batch does not raise it. Layers are compared in parameter order (input side first).
Trends are least-squares lines through the log of the loss over the *tail*, the last ``max(5, min(20, n // 3))``
of ``n`` epochs: a slope counts only when it is at least 3 times its standard error (the spread of the epochs
around the line), so the noise of mini-batch and stochastic descent does not read as progress or as a stall. The
loss is *still falling* when the tail's slope is significant, the rate per epoch is at least 0.3 x the run's
average rate (it has not slowed down as a converging descent does) and as many epochs again would lower it by
>= 5% at that rate. A loss is *converged* at <= 1e-3 x the first epoch's, <= 0.05 x the *reference* or <= 1e-8,
or when the loop stopped on its tolerance or loss threshold. The reference is the loss of the best constant
prediction (the mean, or the class frequencies) on the probe's batch where known, else the first epoch's loss.

======================= ==================================================================================
rule                    fires when
======================= ==================================================================================
bad_batches             the divergence guard skipped batches whose loss or gradient was not finite while the
                        other batches trained on; or every epoch's validation loss is non-finite while the
                        training loss is finite (rows of the data hold NaN or inf)
lr_too_high             an epoch's loss is non-finite; or the run stopped as diverged; or the divergence guard
                        rolled back; or the last epoch's training loss is > 1.1 x the first's; or it jumped
                        up by > 50% (and by > 0.1 x the first epoch's) in >= 3 of the last 10 epochs; or sharpness
                        > 2 x its threshold on every recent record (for Adam the preconditioned sharpness and
                        its threshold); or the median update ratio > 0.1 on every recent record while the loss
                        rose by > 5% in at least 3 of the last 10 epochs (oscillation)
exploding_gradients     a non-finite gradient norm; or first layer's > 1e4 x the last's, or the global gradient
                        norm > 1e3 x the parameters' norm, on every recent record; or the global gradient
                        norm grew to > 1e3 x its first measured value
dead_relus              a ReLU layer has >= 50% units that are never positive on the batch, every recent record
vanishing_gradients     first layer's gradient norm < 1e-4 x the last layer's, on every recent record
plateau                 >= 10 consecutive epochs whose loss changes by < 0.5% (line through the window, or its
                        range) at >= 0.5 x the first epoch's loss, with the gradient norm < 1e-3 x the first
                        epoch's (or, when the descent never got under 0.9 x the first loss, the gradient norm
                        times the parameters' norm < 1e-3 x the loss), or followed by a drop of > 10%
over_fitting            validation loss lowest at epoch k, then >= 5 epochs later >= 1.2 x that while the training
                        loss kept falling; or early stopping kept epoch k's weights, >= 3 epochs followed, the
                        validation loss rose over them (slope >= 3 standard errors, mean >= 1.1 x the best) and
                        the training loss fell by >= 10%; or, over >= 10 epochs, the training loss fell to
                        <= 0.1 x the reference while the best validation loss stayed >= 0.5 x it
lr_too_low              not converged, and: the largest layer update ratio < 1e-5 on every recent record while
                        the gradient is >= 0.1 x its first epoch's; or the training loss (and the validation
                        loss, if any) is still falling at the end, at a rate that would lower it by >= 25% in
                        as many epochs again or at >= 0.5 x the reference, early stopping did not stop the run
                        and the (validation) accuracy is below 100%; or the loss has *settled high* and the
                        probe lowers it by >= 10%
under_fitting           >= 10 epochs; the training loss has settled high: it is not still falling and is >= 0.7
                        x the reference (>= 0.5 x the first epoch's without one); the validation loss (median
                        of the last 5) <= 1.25 x the training loss; the probe (when there is one) lowers it by
                        < 10%
======================= ==================================================================================

Findings that contradict each other are never both raised: :data:`EXCLUDES` lists, for each rule, the rules it
overrides, and :func:`diagnose` keeps the findings in the table's order, dropping any overridden by one kept
before it (a divergence explains a rising validation loss; a too-low rate explains a loss that never got low).

Example:
    >>> rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.0 / e if e < 10 else e / 50} for e in range(1, 31)]
    >>> [f.rule for f in diagnose(rows)]
    ['over_fitting']
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from descend.train.state import Callback, TrainState, clone_state

__all__ = ["EXCLUDES", "RULES", "Evidence", "Finding", "Findings", "diagnose", "probe_higher_lr"]

RECENT = 3
PROBE_STEPS = 20
PROBE_FACTOR = 10.0
PROBE_FACTORS = (10.0, 100.0, 1000.0, 10000.0)  # tried in turn until one lowers the loss by 10%
Rows = Sequence[dict[str, Any]]
Records = Sequence[dict[str, Any]]


@dataclass(frozen=True)
class Finding:
    """One diagnosis: ``rule`` (its name), ``message`` (what happened, in plain words), ``evidence`` (the numbers
    behind it), ``suggestion`` (what to try), and where: ``step``, ``epoch``, ``layer`` when they apply."""

    rule: str
    message: str
    suggestion: str
    evidence: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    epoch: int | None = None
    layer: str | None = None

    def __str__(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in (("epoch", self.epoch), ("step", self.step), ("layer", self.layer))
                          if v is not None)
        return f"{self.rule}{f' ({where})' if where else ''}: {self.message} Try: {self.suggestion}"


@dataclass
class Evidence:
    """What the rules read. ``early_stopping``: ``best_epoch``, ``restored`` (its weights were put back) and
    ``patience``; ``guard``: the divergence guard's events (dicts with ``event``: ``guard_skip``,
    ``guard_rollback``, ``guard_stop``); ``setup``: what the run already uses, as far as known (``init``,
    ``activation``, ``dropout``, ``l2``, ``weight_decay``, ``clip_norm``, ``lr``, ``optimizer``, ``epochs``,
    ``early_stopping``); ``probe``: a function returning the loss before and after :data:`PROBE_STEPS` steps at a
    multiple of the learning rate, and that multiple (:data:`PROBE_FACTORS`, the first that lowers the loss by
    10%), or None where it cannot be run. It is called at most once, and only by a rule that needs it."""

    rows: Rows
    health: Records = ()
    curvature: Records = ()
    stop: str | None = None
    early_stopping: Mapping[str, Any] | None = None
    guard: Sequence[Mapping[str, Any]] = ()
    setup: Mapping[str, Any] = field(default_factory=dict)
    probe: Callable[[], tuple[float, float, float] | None] | None = None
    baseline: Callable[[], float | None] | None = None
    _base: float | None = field(default=None, init=False, repr=False)
    _based: bool = field(default=False, init=False, repr=False)
    _probed: tuple[float, float, float] | None = field(default=None, init=False, repr=False)
    _done: bool = field(default=False, init=False, repr=False)

    @property
    def losses(self) -> list[float]:
        return [float(r["loss"]) for r in self.rows]

    def probe_result(self) -> tuple[float, float, float] | None:
        if not self._done:
            self._done = True
            self._probed = self.probe() if self.probe is not None else None
        return self._probed

    def reference(self) -> float:
        """The loss a model must beat to have learned anything: the best constant prediction's when known, else
        the first epoch's."""
        if not self._based:
            self._based = True
            try:
                self._base = self.baseline() if self.baseline is not None else None
            except (RuntimeError, ValueError):  # a loss that does not take a constant prediction
                self._base = None
        if self._base is not None and math.isfinite(self._base) and self._base > 0:
            return self._base
        return self.losses[0]

    def converged(self) -> bool:
        losses = self.losses
        if self.stop in ("tolerance", "loss_threshold"):
            return True
        return bool(losses) and (losses[-1] <= 1e-8 or losses[-1] <= 1e-3 * losses[0]
                                 or losses[-1] <= 0.05 * self.reference())


# -- shared measurements --------------------------------------------------------------------------------------


def _line(values: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of ``log(values)`` per epoch and its t statistic (slope over standard error)."""
    ys = [math.log(max(v, 1e-300)) for v in values]
    n = len(ys)
    xm, ym = (n - 1) / 2, sum(ys) / n
    sxx = sum((i - xm) ** 2 for i in range(n))
    slope = sum((i - xm) * (y - ym) for i, y in enumerate(ys)) / sxx
    spread = sum((y - ym - slope * (i - xm)) ** 2 for i, y in enumerate(ys)) / max(n - 2, 1)
    se = math.sqrt(spread / sxx)
    if se <= 1e-12 * max(abs(slope), 1e-300):
        return slope, math.copysign(math.inf, slope) if slope else 0.0
    return slope, slope / se


def _tail(n: int) -> int:
    return max(5, min(20, n // 3))


def _still_falling(values: Sequence[float]) -> dict[str, float] | None:
    """The trend of the tail when the loss is still falling there (see the module docstring), else None."""
    n = len(values)
    if n < 10 or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    w = _tail(n)
    slope, t = _line(values[-w:])
    average = math.log(values[0] / values[-1]) / (n - 1)
    if t <= -3 and -slope >= 0.3 * average and -slope * n >= math.log(1 / 0.95):
        return {"rate": -slope, "t": t, "window": w, "average_rate": average}
    return None


def _val(rows: Rows) -> list[float] | None:
    val = [float(r.get("val_loss", math.nan)) for r in rows]
    return val if val and all(math.isfinite(v) for v in val) else None


def _ends(record: dict[str, Any]) -> tuple[str, float, str, float] | None:
    norms = record.get("grad_norm", {})
    if len(norms) < 2:
        return None
    (first, g0), (last, g1) = next(iter(norms.items())), list(norms.items())[-1]
    return first, float(g0), last, float(g1)


def _recent(records: Records) -> Records:
    return records[-RECENT:]


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _lr_advice(ev: Evidence, factor: float) -> str:
    lr = ev.setup.get("lr")
    if isinstance(lr, (int, float)) and lr > 0:
        new = _fmt(lr * factor)
        return f"fit(..., lr={new}) or --lr {new} (now {_fmt(lr)})"
    times = f"{1 / factor:g} times smaller" if factor < 1 else f"{factor:g} times larger"
    return f"fit(..., lr=...) or --lr, {times}"


def _unset(ev: Evidence, name: str) -> bool:
    """Whether the run does not already use option ``name`` (unknown counts as not used)."""
    return not ev.setup.get(name)


# -- the rules ----------------------------------------------------------------------------------------------------


def bad_batches(ev: Evidence) -> Finding | None:
    skips = [e for e in ev.guard if e.get("event") == "guard_skip"]
    if skips and ev.rows and all(math.isfinite(v) for v in ev.losses):
        first = skips[0]
        step = int(first.get("step") or 0)
        # the epoch from the rows (each holds the step count at its end), whatever the guard's own numbering
        epochs = sorted({next((int(r["epoch"]) for r in ev.rows if int(r.get("step", 0)) >= int(e.get("step") or 0)),
                              int(ev.rows[-1]["epoch"])) for e in skips})
        return Finding(
            "bad_batches",
            f"The divergence guard skipped {len(skips)} batch{'es' if len(skips) > 1 else ''} whose loss or gradient "
            f"was not finite (first at step {step}, in {len(epochs)} of {len(ev.rows)} epochs); the "
            "other batches trained on. A loss that turns non-finite at once, and again batch after batch, comes "
            "from the data: rows holding NaN or inf values.",
            "find and fill or drop those rows before training (descend.data.prepare(..., impute='mean' or 'drop') "
            "reports and handles missing values).",
            {"skipped": len(skips), "first_step": step, "reasons": sorted({str(e.get("reason"))
                                                                                          for e in skips})},
            step=step, epoch=epochs[0],
        )
    val = [float(r.get("val_loss", math.nan)) for r in ev.rows if "val_loss" in r]
    if val and len(val) == len(ev.rows) and not any(math.isfinite(v) for v in val) \
            and all(math.isfinite(v) for v in ev.losses):
        return Finding(
            "bad_batches",
            f"The validation loss was {val[-1]} in every epoch while the training loss was finite: rows of the "
            "validation set hold NaN or inf values, so early stopping and the validation metrics measure nothing.",
            "find and fill or drop those rows (descend.data.prepare(..., impute='mean' or 'drop')).",
            {"val_loss": val[-1]}, epoch=1,
        )
    return None


def _stopped_as_diverged(ev: Evidence, fix: str) -> Finding:
    """The run stopped as diverged with every epoch's loss finite: the divergence guard ran out of rollbacks
    (``fit``'s loop stops as diverged only on a non-finite epoch loss; the guard reports an epoch's loss over the
    steps it kept)."""
    rows = ev.rows
    if not rows:
        return Finding("lr_too_high", "The run stopped as diverged before its first epoch ended.", fix,
                       {"stop_reason": "diverged"})
    losses = ev.losses
    low = min(range(len(losses)), key=losses.__getitem__)
    last = int(rows[-1]["epoch"])
    return Finding(
        "lr_too_high",
        f"The run stopped as diverged at epoch {last} though every epoch's training loss was finite: it fell to "
        f"{losses[low]:.4g} (epoch {int(rows[low]['epoch'])}) and ended at {losses[-1]:.4g}. That is how the "
        "divergence guard stops a run: it saw a loss that was non-finite, spiked or kept rising, and rolled back to "
        "its last good state with a smaller learning rate until it ran out of retries (its guard_stop event says "
        "which, its guard_rollback events when).", fix,
        {"stop_reason": "diverged", "first_loss": losses[0], "lowest_loss": losses[low],
         "lowest_epoch": int(rows[low]["epoch"]), "last_loss": losses[-1]}, epoch=last,
    )


def _stability(record: dict[str, Any]) -> tuple[float, float, float]:
    """(sharpness, threshold, ratio) of a curvature record: the preconditioned ones when the optimizer is Adam-like
    (its edge is not 2/lr), else the plain ones."""
    if "preconditioned_ratio" in record:
        return (float(record["preconditioned_sharpness"]), float(record["preconditioned_threshold"]),
                float(record["preconditioned_ratio"]))
    return float(record["sharpness"]), float(record["threshold"]), float(record["ratio"])


def lr_too_high(ev: Evidence) -> Finding | None:
    clip = ", or clip gradients: fit(..., clip_norm=1.0) (Python only)" if _unset(ev, "clip_norm") else ""
    fix = f"divide the learning rate by 10: {_lr_advice(ev, 0.1)}, or run descend lr-find{clip}."
    rows, stop = ev.rows, ev.stop
    bad = next((r for r in rows if not math.isfinite(float(r["loss"]))), None)
    if bad is not None:
        return Finding("lr_too_high",
                       f"The training loss became non-finite ({float(bad['loss'])}) at epoch {int(bad['epoch'])}"
                       f"{': the descent diverged' if stop == 'diverged' else ''}.", fix,
                       {"loss": float(bad["loss"]), "stop_reason": stop}, epoch=int(bad["epoch"]))
    if stop == "diverged":
        return _stopped_as_diverged(ev, fix)
    rollbacks = [e for e in ev.guard if e.get("event") == "guard_rollback"]
    if rollbacks:
        first = rollbacks[0]
        return Finding("lr_too_high",
                       f"The divergence guard rolled back {len(rollbacks)} time{'s' if len(rollbacks) > 1 else ''} "
                       f"(first at step {first.get('step')}: {first.get('reason')}), each time to its last good state "
                       "with a smaller learning rate: at the rate given, the loss blew up.", fix,
                       {"rollbacks": len(rollbacks), "first_step": first.get("step"),
                        "reasons": sorted({str(e.get("reason")) for e in rollbacks})},
                       step=first.get("step"), epoch=first.get("epoch"))
    if len(rows) >= 2 and rows[-1]["loss"] > 1.1 * rows[0]["loss"]:
        return Finding("lr_too_high",
                       f"The training loss rose from {rows[0]['loss']:.4g} (epoch 1) to {rows[-1]['loss']:.4g}.",
                       fix, {"first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"]}, epoch=int(rows[-1]["epoch"]))
    losses = ev.losses[-10:]
    jumps = [(a, b) for a, b in itertools.pairwise(losses) if b > 1.5 * a and b - a > 0.1 * ev.losses[0]]
    if len(jumps) >= 3:
        a, b = max(jumps, key=lambda ab: ab[1] / max(ab[0], 1e-300))
        return Finding("lr_too_high",
                       f"The training loss jumped up by more than half in {len(jumps)} of the last {len(losses) - 1} "
                       f"epochs (the largest from {a:.4g} to {b:.4g}): the steps throw the weights back and forth "
                       "instead of descending.", fix, {"jumps": len(jumps), "from": a, "to": b},
                       epoch=int(rows[-1]["epoch"]))
    recent = _recent(ev.curvature)
    if recent and all(_stability(r)[2] > 2 for r in recent):
        r = recent[-1]
        value, threshold, ratio = _stability(r)
        what = "preconditioned sharpness" if "preconditioned_ratio" in r else "sharpness"
        edge = "(2 + 2 beta1)/((1 - beta1) lr), Adam's" if "preconditioned_ratio" in r else "2/lr"
        return Finding("lr_too_high",
                       f"The {what} {value:.4g} is {ratio:.2g}x the stability edge {threshold:.4g} ({edge}): "
                       "steps overshoot along the sharpest direction.", fix,
                       {what.replace(" ", "_"): value, "threshold": threshold}, step=r["step"])
    recent = _recent(ev.health)
    medians = [statistics.median(r["update_ratio"].values()) for r in recent if r["update_ratio"]]
    losses = ev.losses[-10:]
    rises = sum(b > 1.05 * a for a, b in itertools.pairwise(losses))
    if recent and len(medians) == len(recent) and all(m > 0.1 for m in medians) and rises >= 3:
        return Finding("lr_too_high",
                       f"Each step changes the weights by {medians[-1]:.2g} of their size (median over layers; "
                       f"around 1e-3 is typical) and the loss rose by over 5% in {rises} of the last "
                       f"{len(losses) - 1} epochs.", fix, {"median_update_ratio": medians[-1], "rises": rises},
                       step=recent[-1]["step"])
    return None


def exploding_gradients(ev: Evidence) -> Finding | None:
    clip = ", clip gradients: fit(..., clip_norm=1.0) (Python only)" if _unset(ev, "clip_norm") else ""
    fix = f"lower the learning rate ({_lr_advice(ev, 0.1)}){clip}, or initialise the weights at a smaller scale."
    health = ev.health
    for r in health:
        if not math.isfinite(float(r["global_grad_norm"])):
            return Finding("exploding_gradients", "The gradient became non-finite (inf or nan).", fix,
                           {"global_grad_norm": r["global_grad_norm"]}, step=r["step"])
    ends = [_ends(r) for r in _recent(health)]
    if ends and all(e is not None and e[1] > 1e4 * e[3] for e in ends):
        first, g0, last, g1 = ends[-1]  # type: ignore[misc]
        return Finding("exploding_gradients",
                       f"The first layer's gradient ({first}) is {g0 / max(g1, 1e-300):.1e} times the last layer's "
                       f"({last}): gradients grow on their way back through the layers.", fix,
                       {"first_layer_grad_norm": g0, "last_layer_grad_norm": g1}, step=health[-1]["step"], layer=first)
    # The first step's record is left out: weights still at a zero initialisation make any gradient look huge.
    recent = _recent([r for r in health if r["step"] > 1])
    scale = [(float(r["global_grad_norm"]), math.sqrt(sum(v * v for v in r["param_norm"].values()))) for r in recent]
    if recent and all(g > 1e3 * p for g, p in scale):
        g, p = scale[-1]
        return Finding("exploding_gradients",
                       f"The gradient norm {g:.3g} is {g / max(p, 1e-300):.1e} times the parameters' norm {p:.3g}: "
                       "a single step would wipe out the weights.", fix,
                       {"global_grad_norm": g, "param_norm": p}, step=recent[-1]["step"])
    norms = [float(r["global_grad_norm"]) for r in health]
    if len(norms) >= 2 and norms[0] > 0 and max(norms) > 1e3 * norms[0]:
        at = max(range(len(norms)), key=norms.__getitem__)
        return Finding("exploding_gradients",
                       f"The gradient norm grew from {norms[0]:.3g} to {norms[at]:.3g} ({norms[at] / norms[0]:.1e}x).",
                       fix, {"first": norms[0], "max": norms[at]}, step=health[at]["step"])
    return None


def vanishing_gradients(ev: Evidence) -> Finding | None:
    ends = [_ends(r) for r in _recent(ev.health)]
    if not ends or any(e is None or not e[3] > 0 or not e[1] < 1e-4 * e[3] for e in ends):
        return None
    first, g0, last, g1 = ends[-1]  # type: ignore[misc]
    act = ev.setup.get("activation")
    kinds = {a.get("module") for a in ev.health[-1].get("activations", {}).values()}
    relu_only = act not in ("sigmoid", "tanh") and bool(kinds) and kinds <= {"ReLU", "ReLU6", "LeakyReLU", "ELU",
                                                                             "GELU", "SiLU"}
    fixes = []
    if not relu_only:
        fixes.append("a ReLU-family activation (descend.models.MLP(activation='relu'), the command line's mlp; "
                     "with Xavier or He initialisation, which MLP picks by itself)")
    fixes.append("fewer layers (--model mlp:64)")
    fixes.append("normalisation layers or residual connections (your own nn.Module)")
    return Finding(
        "vanishing_gradients",
        f"The gradient reaching the first layer ({first}) is {g0 / g1:.1e} times the last layer's ({last}): "
        "early layers barely learn.",
        ", ".join(fixes) + ".",
        {"first_layer_grad_norm": g0, "last_layer_grad_norm": g1, "ratio": g0 / g1},
        step=ev.health[-1]["step"], layer=first,
    )


def dead_relus(ev: Evidence) -> Finding | None:
    recent = _recent(ev.health)
    if not recent:
        return None
    for name, act in recent[-1]["activations"].items():
        if act.get("module") not in ("ReLU", "ReLU6"):
            continue
        fractions = [r["activations"].get(name, {}).get("dead_fraction", 0.0) for r in recent]
        if all(f >= 0.5 for f in fractions):
            fixes = [f"lower the learning rate ({_lr_advice(ev, 0.1)})"]
            if ev.setup.get("init") != "he":
                fixes.append("He initialisation with zero biases (descend.models.MLP does this for ReLU)")
            else:
                fixes.append("check the biases: He initialisation is already used, so large negative biases or "
                             "a large early step switched the units off")
            fixes.append("a leaky activation: descend.models.MLP(activation='leaky_relu') (Python only)")
            return Finding(
                "dead_relus",
                f"{fractions[-1]:.0%} of the units after layer {name} never fire (output 0 on every row): they get "
                "no gradient and cannot recover.",
                "; ".join(fixes) + ".",
                {"dead_fraction": fractions[-1], "units": act.get("units")}, step=recent[-1]["step"], layer=name,
            )
    return None


def _flat(window: Sequence[float], tol: float) -> bool:
    if max(window) - min(window) < tol * max(abs(min(window)), 1e-300):
        return True
    slope, _ = _line(window)
    return abs(slope) * len(window) < tol


def plateau(ev: Evidence) -> Finding | None:
    rows, losses = ev.rows, ev.losses
    if not losses or not all(math.isfinite(v) and v > 0 for v in losses):
        return None
    grads = [float(r.get("grad_norm", math.nan)) for r in rows]
    stalled = max(losses) < math.inf and min(losses) >= 0.9 * losses[0]
    last_health = ev.health[-1] if ev.health else None
    for start in range(len(losses) - 9):
        window = losses[start : start + 10]
        if not _flat(window, 0.005) or not window[-1] >= 0.5 * losses[0]:
            continue
        end = start + 9
        while end + 1 < len(losses) and _flat(losses[start : end + 2], 0.005):
            end += 1
        span = grads[start : end + 1]
        tiny = math.isfinite(grads[0]) and max(span) < 1e-3 * grads[0]
        if not tiny and stalled and last_health is not None and end == len(losses) - 1:
            g = float(last_health["global_grad_norm"])
            p = math.sqrt(sum(v * v for v in last_health["param_norm"].values()))
            # small weights at a small gradient: a saddle near zero. Small weights alone, under a gradient as
            # large as the loss, are a descent that has hardly started (a rate far too low), not a flat region.
            tiny = g * p < 1e-3 * losses[end] and g < 1e-2 * losses[end]
        escaped = min(losses[end + 1 :], default=math.inf) < 0.9 * losses[end]
        if tiny or escaped:
            first, last = int(rows[start]["epoch"]), int(rows[end]["epoch"])
            early = ev.stop == "early_stopping" and end == len(losses) - 1
            return Finding(
                "plateau",
                f"The training loss stayed at {losses[end]:.4g} from epoch {first} to {last} with "
                f"{'vanishing gradients (a flat region or saddle)' if tiny else 'little progress'}"
                f"{', then fell again' if escaped else ''}"
                f"{'; early stopping ended the run there, before the descent got out' if early else ''}.",
                "a different initialisation (not all weights near zero: descend.models.MLP's default init), "
                "momentum or Adam (--optimizer adam), a larger learning rate for a while (--schedule one-cycle)"
                f"{', and more patience (--patience 30, or early_stopping=EarlyStopping(patience=30))' if early else ''}.",
                {"loss": losses[end], "from_epoch": first, "to_epoch": last, "grad_norm": grads[end]},
                epoch=first,
            )
    return None


def over_fitting(ev: Evidence) -> Finding | None:
    rows = ev.rows
    val = _val(rows)
    if val is None or len(val) < 4:
        return None
    train = ev.losses
    best = min(range(len(val)), key=val.__getitem__)
    after = len(val) - 1 - best
    classic = after >= 5 and val[-1] >= 1.2 * val[best] and train[-1] < train[best]
    es = ev.early_stopping or {}
    kept = es.get("best_epoch") if es.get("restored") else None
    watched = False
    if not classic and kept is not None and int(kept) == int(rows[best]["epoch"]) and after >= 3:
        _, t = _line(val[best:])
        watched = t >= 3 and statistics.fmean(val[best + 1 :]) >= 1.1 * val[best] and train[-1] <= 0.9 * train[best]
    # memorised without generalising: the training loss fell to a tenth of its start or less, the validation
    # loss not even to half of its own
    gap = len(val) >= 10 and train[-1] <= 0.1 * ev.reference() and val[best] >= 0.5 * ev.reference()
    if not (classic or watched or gap):
        return None
    epoch = int(rows[best]["epoch"])
    did = (f" Early stopping kept epoch {kept}'s weights (validation loss {val[best]:.4g}), so the model you have "
           "is the best one seen." if kept is not None else "")
    fixes = []
    if kept is None:
        fixes.append("early stopping (on by default with a validation set: fit(..., early_stopping=True) or "
                     "--early-stopping) to keep the best epoch")
    fixes.append("more training rows")
    fixes.append("a smaller model (--model mlp:16)")
    l2 = ev.setup.get("l2") or 0.0
    wd = ev.setup.get("weight_decay") or 0.0
    if l2 or wd:
        fixes.append(f"stronger weight decay (now l2={l2:g}, weight_decay={wd:g}; Python only)")
    else:
        fixes.append("weight decay: fit(..., l2=1e-4) (Python only)")
    if not ev.setup.get("dropout"):
        fixes.append("dropout: descend.models.MLP(dropout=0.2) as fit's model (Python only)")
    ref = ev.reference()
    gap_note = (f" (the training loss fell to {train[-1] / ref:.1%} of a constant prediction's, the validation loss "
                f"only to {val[best] / ref:.0%})" if gap else "")
    return Finding(
        "over_fitting",
        f"Validation loss was lowest at epoch {epoch} ({val[best]:.4g}) and rose to {val[-1]:.4g} by epoch "
        f"{int(rows[-1]['epoch'])} while the training loss kept falling ({train[best]:.4g} -> {train[-1]:.4g}): "
        f"the model is memorising the training rows{gap_note}.{did}",
        ", ".join(fixes) + ".",
        {"best_epoch": epoch, "best_val_loss": val[best], "last_val_loss": val[-1],
         **({"early_stopping_kept": kept} if kept is not None else {})}, epoch=epoch,
    )


def _settled_high(ev: Evidence) -> bool:
    losses = ev.losses
    return (len(losses) >= 10 and all(math.isfinite(v) for v in losses) and _still_falling(losses) is None
            and losses[-1] >= (0.7 * ev.reference() if ev.baseline is not None else 0.5 * losses[0]))


def _probe_gain(ev: Evidence) -> tuple[float, float, float, float] | None:
    """(loss before, after, relative gain, the factor of the rate) of the probe, or None."""
    probed = ev.probe_result()
    if probed is None or not all(math.isfinite(v) for v in probed) or probed[0] <= 0:
        return None
    before, after, factor = probed
    return before, after, 1 - after / before, factor


def lr_too_low(ev: Evidence) -> Finding | None:
    if ev.converged() or not ev.rows:
        return None
    losses, rows = ev.losses, ev.rows
    more = ("raise the learning rate: " + _lr_advice(ev, 10.0)
            + (f", or train longer: fit(..., epochs={2 * ev.setup['epochs']}) or --epochs {2 * ev.setup['epochs']}"
               if isinstance(ev.setup.get("epochs"), int) else ", or train longer (epochs=, --epochs)") + ".")
    recent = _recent(ev.health)
    largest = [max(r["update_ratio"].values()) for r in recent if r["update_ratio"]]
    grads = [float(r.get("grad_norm", math.nan)) for r in rows]
    strong = not (math.isfinite(grads[0]) and math.isfinite(grads[-1])) or grads[-1] >= 0.1 * grads[0]
    if recent and len(largest) == len(recent) and all(m < 1e-5 for m in largest) and strong:
        return Finding("lr_too_low",
                       f"Each step changes the weights by at most {largest[-1]:.1e} of their size (around 1e-3 is "
                       "typical) while the gradient is as strong as at the start: the model is barely moving.", more,
                       {"max_update_ratio": largest[-1]}, step=recent[-1]["step"])
    falling = _still_falling(losses)
    val = _val(rows)
    accuracy = rows[-1].get("val_accuracy", rows[-1].get("accuracy"))
    # every row classified right: on separable data the loss falls for ever as the margins grow; nothing is slow
    separated = isinstance(accuracy, (int, float)) and accuracy >= 0.999
    if falling is not None and not separated \
            and (falling["rate"] * len(losses) >= math.log(1 / 0.75) or losses[-1] >= 0.5 * ev.reference()) \
            and ev.stop != "early_stopping" and (val is None or _still_falling(val) is not None):
        w = int(falling["window"])
        return Finding(
            "lr_too_low",
            f"The training loss was still falling steadily when the run ended: by {falling['rate']:.1%} an epoch "
            f"over the last {w} epochs ({losses[-w]:.4g} -> {losses[-1]:.4g}), no slower than its average "
            f"{falling['average_rate']:.1%} an epoch since epoch 1"
            f"{', and the validation loss with it' if val is not None else ''}. The descent had not finished: "
            "the steps are too small for the epochs given.", more,
            {"first_loss": losses[0], "last_loss": losses[-1], "rate_per_epoch": falling["rate"],
             "average_rate_per_epoch": falling["average_rate"], "t": falling["t"]}, epoch=int(rows[-1]["epoch"]),
        )
    if _settled_high(ev):
        gain = _probe_gain(ev)
        if gain is not None and gain[2] >= 0.1:
            more = "raise the learning rate: " + _lr_advice(ev, gain[3]) + " (what the probe used), or try a few " \
                   "rates with descend lr-find / lr='auto'."  # fmt: skip
            return Finding(
                "lr_too_low",
                f"The training loss settled at {losses[-1]:.4g} ({losses[-1] / losses[0]:.0%} of the first "
                f"epoch's), but {PROBE_STEPS} steps at {gain[3]:g}x the learning rate (a probe on a fixed batch "
                f"of training rows, undone afterwards) lowered it from "
                f"{gain[0]:.4g} to {gain[1]:.4g}: the rate, not the model, held the descent back.", more,
                {"last_loss": losses[-1], "probe_before": gain[0], "probe_after": gain[1]},
                epoch=int(rows[-1]["epoch"]),
            )
    return None


def under_fitting(ev: Evidence) -> Finding | None:
    if not _settled_high(ev):
        return None
    losses = ev.losses
    val = _val(ev.rows)
    val_end = statistics.median(val[-5:]) if val is not None else None
    if val_end is not None and not val_end <= 1.25 * statistics.median(losses[-5:]):
        return None
    gain = _probe_gain(ev)
    if gain is not None and gain[2] >= 0.1:
        return None
    probe = (f" {PROBE_STEPS} steps at up to {gain[3]:g}x the learning rate changed it only from {gain[0]:.4g} to "
             f"{gain[1]:.4g}: the rate is not what holds it back." if gain is not None else "")
    of = ("the loss of a constant prediction (the mean, or the class frequencies)" if ev.baseline is not None
          else "the first epoch's")
    fixes = ["a more flexible model: more units or layers (--model mlp:128,64, or descend.models.MLP(hidden=...)), "
             "or features that carry the signal"]
    if ev.setup.get("l2") or ev.setup.get("weight_decay") or ev.setup.get("dropout"):
        fixes.append("less regularisation (l2, weight_decay, dropout)")
    return Finding(
        "under_fitting",
        f"The training loss settled at {losses[-1]:.4g}, still {losses[-1] / ev.reference():.0%} of {of}, and "
        f"validation is no worse: the model cannot fit even the training rows.{probe}",
        ", ".join(fixes) + ".",
        {"first_loss": losses[0], "last_loss": losses[-1], "last_val_loss": val_end,
         **({"probe_before": gain[0], "probe_after": gain[1]} if gain is not None else {})},
        epoch=len(losses),
    )


Rule = Callable[[Evidence], "Finding | None"]
RULES: dict[str, Rule] = {
    rule.__name__: rule
    for rule in (bad_batches, lr_too_high, exploding_gradients, dead_relus, vanishing_gradients, plateau,
                 over_fitting, lr_too_low, under_fitting)
}

#: For each rule, the rules whose findings it overrides (they would name the same run's trouble wrongly).
EXCLUDES: dict[str, frozenset[str]] = {
    # a data problem first: a batch of NaN rows is no learning rate or gradient problem
    "bad_batches": frozenset({"lr_too_high", "exploding_gradients"}),
    # a divergence explains a rising validation loss, and a loss that never got low
    "lr_too_high": frozenset({"lr_too_low", "over_fitting", "under_fitting", "plateau"}),
    "exploding_gradients": frozenset({"lr_too_low", "vanishing_gradients", "under_fitting"}),
    # layers that get no gradient look like a slow rate or an incapable model; the cause is the gradient
    "vanishing_gradients": frozenset({"lr_too_low", "under_fitting"}),
    # units that never fire pass no gradient back: the vanishing gradient is their doing
    "dead_relus": frozenset({"vanishing_gradients", "lr_too_low", "under_fitting"}),
    "plateau": frozenset({"lr_too_low", "under_fitting"}),
    # a model that memorises is not too small
    "over_fitting": frozenset({"under_fitting"}),
    # a rate too small for the epochs is not an incapable model
    "lr_too_low": frozenset({"under_fitting"}),
    "under_fitting": frozenset(),
}


def diagnose(
    rows: Rows,
    health: Records = (),
    curvature: Records = (),
    stop_reason: str | None = None,
    **evidence: Any,
) -> list[Finding]:
    """Run every rule in :data:`RULES` on the :class:`Evidence` (``evidence``: its other fields) and return the
    findings in the table's order, without those an earlier finding overrides (:data:`EXCLUDES`)."""
    ev = Evidence(rows, health, curvature, stop_reason, **evidence)
    kept: list[Finding] = []
    for rule in RULES.values():
        if any(rule.__name__ in EXCLUDES[f.rule] for f in kept):
            continue
        found = rule(ev)
        if found is not None:
            kept.append(found)
    return kept


# -- the probe ----------------------------------------------------------------------------------------------


def _put_back(target: Any, saved: Any) -> Any:
    """``saved`` written into ``target`` in place where both are tensors of one shape (views of it stay valid)."""
    if isinstance(saved, torch.Tensor):
        if isinstance(target, torch.Tensor) and target.shape == saved.shape and target.dtype == saved.dtype:
            target.copy_(saved)
            return target
        return saved
    if isinstance(saved, dict) and isinstance(target, dict):
        for k in [k for k in target if k not in saved]:
            del target[k]
        for k, v in saved.items():
            target[k] = _put_back(target.get(k), v)
        return target
    return saved


@torch.no_grad()
def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
             grads: list[torch.Tensor | None], state: dict[Any, Any], groups: list[dict[str, Any]]) -> None:
    for name, tensor in model.state_dict(keep_vars=True).items():
        tensor.copy_(weights[name])
    for p, g in zip((p for grp in optimizer.param_groups for p in grp["params"]), grads, strict=True):
        p.grad = g
    for key in [k for k in optimizer.state if k not in state]:
        del optimizer.state[key]
    for key, value in state.items():
        optimizer.state[key] = _put_back(optimizer.state.get(key), value)
    for group, saved in zip(optimizer.param_groups, groups, strict=True):
        params = group["params"]
        group.clear()
        group.update(saved, params=params)


def probe_higher_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: Callable[[], torch.Tensor],
    *,
    steps: int = PROBE_STEPS,
    factor: float = PROBE_FACTOR,
) -> tuple[float, float]:
    """``loss()`` before and after ``steps`` steps of ``optimizer`` at ``factor`` times its learning rate, each on
    ``loss()`` (a fixed batch: :func:`descend.inspect.training_loss`); then the model's parameters and buffers,
    their gradients, the optimizer's state and settings and torch's random state are put back bit for bit.

    Example:
        >>> lin = torch.nn.Linear(2, 1); opt = torch.optim.SGD(lin.parameters(), lr=1e-3)
        >>> X, y = torch.randn(32, 2), torch.randn(32, 1)
        >>> w = lin.weight.clone()
        >>> before, after = probe_higher_lr(lin, opt, lambda: (lin(X) - y).pow(2).mean())
        >>> after < before, torch.equal(w, lin.weight)
        (True, True)
    """
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = [p for grp in optimizer.param_groups for p in grp["params"]]
    grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
    state = {k: clone_state(v) for k, v in optimizer.state.items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    rng = torch.get_rng_state()
    try:
        with torch.no_grad():
            before = float(loss())
        for group in optimizer.param_groups:
            group.pop("lr_schedule", None)  # a schedule would overwrite the rate at each step
            group["lr"] = float(group["lr"]) * factor
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            value = loss()
            value.backward()
            optimizer.step()
        with torch.no_grad():
            after = float(loss())
    finally:
        _restore(model, optimizer, weights, grads, state, groups)
        torch.set_rng_state(rng)
    return before, after


# -- the callback ---------------------------------------------------------------------------------------------


def _setup(state: TrainState, options: Mapping[str, Any] | None, early_stopping: Any, guard: Any) -> dict[str, Any]:
    model, optimizer = state.model, state.optimizer
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    lr = group.get("lr")
    scale = getattr(guard, "scale", 1.0)  # the guard's reductions: advice is about the rate the user gave
    setup: dict[str, Any] = {
        "optimizer": type(optimizer).__name__,
        "lr": float(lr) / (scale if isinstance(scale, float) and scale > 0 else 1.0)
        if isinstance(lr, (int, float)) else None,
        "weight_decay": float(group.get("weight_decay") or 0.0),
        "epochs": state.epochs,
        "early_stopping": early_stopping is not None,
    }
    for name in ("init", "activation", "dropout"):
        value = getattr(model, name, None)
        if isinstance(value, (str, int, float)):
            setup[name] = value
    for name in ("l2", "clip_norm", "lr", "weight_decay"):
        if options is not None and isinstance(options.get(name), (int, float)):
            setup[name] = options[name]
    return setup


class Findings(Callback):
    """At the end of ``fit``, run :func:`diagnose` on the run's rows and the given monitors' records.

    ``early_stopping`` and ``guard`` are the run's :class:`~descend.train.EarlyStopping` and
    :class:`~descend.train.DivergenceGuard` (what they did is evidence); ``loss`` a closure on a fixed batch of
    training rows (:func:`descend.inspect.training_loss`; default: the sharpness monitor's), which the rules may
    use for a probe (:func:`probe_higher_lr`); ``options`` fit's options (``l2``, ``clip_norm``, ...), so that
    the advice does not suggest what the run already does.

    Each finding is logged as a ``"finding"`` event (in ``events.jsonl`` of a run folder) and kept in
    ``findings``; printing them is left to the caller (the command line prints them at the end of a run).

    Example:
        >>> from descend.inspect.monitor import HealthMonitor
        >>> health = HealthMonitor(every=10)
        >>> callbacks = [health, Findings(health=health)]      # fit(..., callbacks=callbacks)
    """

    def __init__(self, *, health: Any = None, sharpness: Any = None, early_stopping: Any = None, guard: Any = None,
                 loss: Callable[[], torch.Tensor] | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.health = health
        self.sharpness = sharpness
        self.early_stopping = early_stopping
        self.guard = guard
        self.loss = loss
        self.options = options
        self.findings: list[Finding] = []

    def on_fit_end(self, state: TrainState) -> None:
        es = self.early_stopping
        stopping = None if es is None else {
            "best_epoch": es.best_epoch, "patience": es.patience,
            "restored": bool(es.restore_best and es.best_epoch is not None),
        }
        loss = self.loss if self.loss is not None else getattr(self.sharpness, "loss_fn", None)
        baseline = getattr(loss, "baseline", None)
        probe = None
        if loss is not None and state.history:
            def probe() -> tuple[float, float, float] | None:
                best: tuple[float, float, float] | None = None
                for factor in PROBE_FACTORS:
                    try:
                        before, after = probe_higher_lr(state.model, state.optimizer, loss, factor=factor)
                    except (RuntimeError, ValueError, TypeError):  # an optimizer that cannot step this way
                        return best
                    if best is None or (math.isfinite(after) and after < best[1]):
                        best = (before, after, factor)
                    if not math.isfinite(after) or after > before or after <= 0.9 * before:
                        break  # past the stable rates, or the answer
                return best
        self.findings = diagnose(
            state.history,
            self.health.records if self.health is not None else (),
            self.sharpness.records if self.sharpness is not None else (),
            state.stop,
            early_stopping=stopping,
            guard=list(getattr(self.guard, "events", ())),
            setup=_setup(state, self.options, es, self.guard),
            probe=probe,
            baseline=baseline,
        )
        scale = getattr(state.model, "output_scale", None)
        if isinstance(scale, torch.Tensor) and scale.numel() and self.findings:  # a target-scaled regression
            sigma = ", ".join(f"{v:.4g}" for v in scale.flatten().tolist()[:4])
            note = (f" (Losses are in standardised target units: the target minus its mean, over its standard "
                    f"deviation {sigma}; the validation metrics are in the target's own units.)")  # fmt: skip
            self.findings = [replace(f, message=f.message + note, evidence={**f.evidence, "target_std": sigma})
                             for f in self.findings]  # fmt: skip
        for f in self.findings:
            state.log_event("finding", rule=f.rule, message=f.message, suggestion=f.suggestion,
                            evidence=f.evidence, step=f.step, epoch=f.epoch, layer=f.layer)
