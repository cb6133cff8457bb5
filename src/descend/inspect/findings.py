"""Findings: rules that turn a run's measurements into a diagnosis in plain words, with evidence and a fix.

Each rule reads the epoch rows (``FitResult.history``: ``loss``, ``val_loss``, ``grad_norm``, ...), the
records of :class:`~descend.inspect.monitor.HealthMonitor` and :class:`~descend.inspect.monitor.SharpnessMonitor`,
and the stop reason, and returns at most one :class:`Finding`. "Recent" means the last ``RECENT`` (3) records;
a rule on records fires only if its condition holds on every recent record, so one noisy batch does not
raise it. Layers are compared in parameter order (input side first).

======================= ==================================================================================
rule                    fires when
======================= ==================================================================================
vanishing_gradients     first layer's gradient norm < 1e-4 x the last layer's, on every recent record
exploding_gradients     a non-finite gradient norm; or first layer's > 1e4 x the last's, or the global gradient
                        norm > 1e3 x the parameters' norm, on every recent record; or the global gradient norm
                        grew to > 1e3 x its first measured value
dead_relus              a ReLU layer has >= 50% units that are never positive on the batch, every recent record
lr_too_high             an epoch's loss is non-finite, or the run stopped as diverged (with finite losses: the
                        divergence guard ran out of rollbacks); or the last epoch's training loss is
                        > 1.1 x the first's; or sharpness > 2 x its threshold on every recent record (for Adam
                        the preconditioned sharpness and its threshold); or the median update ratio > 0.1 on
                        every recent record while the loss rose by > 5% in at least 3 of the last 10 epochs
                        (oscillation)
lr_too_low              the largest layer update ratio < 1e-5 on every recent record; or, over >= 10 epochs,
                        the training loss fell in >= 90% of epochs yet by < 10% in total
over_fitting            >= 5 epochs after the best validation loss, the last is >= 1.2 x the best while the
                        training loss kept falling (the epoch it began is the best epoch)
under_fitting           >= 10 epochs; the last 5 epochs changed the training loss by < 2%; it is still >= 0.5
                        x the first epoch's; validation loss <= 1.25 x training loss; gradients not vanished
plateau                 >= 10 consecutive epochs with < 0.5% total change at >= 0.5 x the first epoch's loss,
                        with the gradient norm < 1e-3 x the first epoch's, or followed by a drop of > 10%
======================= ==================================================================================

Example:
    >>> rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.0 / e if e < 10 else e / 50} for e in range(1, 31)]
    >>> [f.rule for f in diagnose(rows)]
    ['over_fitting']
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from descend.train.state import Callback, TrainState

__all__ = ["RULES", "Finding", "Findings", "diagnose"]

RECENT = 3
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


def _recent(records: Records) -> Records:
    return records[-RECENT:]


def _ends(record: dict[str, Any]) -> tuple[str, float, str, float] | None:
    norms = record.get("grad_norm", {})
    if len(norms) < 2:
        return None
    (first, g0), (last, g1) = next(iter(norms.items())), list(norms.items())[-1]
    return first, float(g0), last, float(g1)


def vanishing_gradients(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    ends = [_ends(r) for r in _recent(health)]
    if not ends or any(e is None or not e[3] > 0 or not e[1] < 1e-4 * e[3] for e in ends):
        return None
    first, g0, last, g1 = ends[-1]  # type: ignore[misc]
    return Finding(
        "vanishing_gradients",
        f"The gradient reaching the first layer ({first}) is {g0 / g1:.1e} times the last layer's ({last}): "
        "early layers barely learn.",
        "use ReLU-family activations instead of sigmoid/tanh, He/Xavier initialisation, fewer layers, "
        "normalisation layers or residual connections.",
        {"first_layer_grad_norm": g0, "last_layer_grad_norm": g1, "ratio": g0 / g1},
        step=health[-1]["step"], layer=first,
    )


def exploding_gradients(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    fix = "lower the learning rate, clip gradients (clip_norm=1.0), use a smaller initialisation scale."
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
    recent = _recent(health)
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


def dead_relus(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    recent = _recent(health)
    if not recent:
        return None
    for name, act in recent[-1]["activations"].items():
        if act.get("module") not in ("ReLU", "ReLU6"):
            continue
        fractions = [r["activations"].get(name, {}).get("dead_fraction", 0.0) for r in recent]
        if all(f >= 0.5 for f in fractions):
            return Finding(
                "dead_relus",
                f"{fractions[-1]:.0%} of the units after layer {name} never fire (output 0 on every row): they get "
                "no gradient and cannot recover.",
                "lower the learning rate, initialise biases at 0 or slightly positive, use He initialisation, "
                "or use LeakyReLU/GELU.",
                {"dead_fraction": fractions[-1], "units": act.get("units")}, step=recent[-1]["step"], layer=name,
            )
    return None


def _stability(record: dict[str, Any]) -> tuple[float, float, float]:
    """(sharpness, threshold, ratio) of a curvature record: the preconditioned ones when the optimizer is Adam-like
    (its edge is not 2/lr), else the plain ones."""
    if "preconditioned_ratio" in record:
        return (float(record["preconditioned_sharpness"]), float(record["preconditioned_threshold"]),
                float(record["preconditioned_ratio"]))
    return float(record["sharpness"]), float(record["threshold"]), float(record["ratio"])


def _stopped_as_diverged(rows: Rows, fix: str) -> Finding:
    """The run stopped as diverged with every epoch's loss finite: the divergence guard ran out of rollbacks
    (``fit``'s loop stops as diverged only on a non-finite epoch loss; the guard reports an epoch's loss over the
    steps it kept)."""
    if not rows:
        return Finding("lr_too_high", "The run stopped as diverged before its first epoch ended.", fix,
                       {"stop_reason": "diverged"})
    losses = [float(r["loss"]) for r in rows]
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


def lr_too_high(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    fix = "divide the learning rate by 10 (or run the learning-rate range test), or add gradient clipping."
    bad = next((r for r in rows if not math.isfinite(float(r["loss"]))), None)
    if bad is not None:
        return Finding("lr_too_high",
                       f"The training loss became non-finite ({float(bad['loss'])}) at epoch {int(bad['epoch'])}"
                       f"{': the descent diverged' if stop == 'diverged' else ''}.", fix,
                       {"loss": float(bad["loss"]), "stop_reason": stop}, epoch=int(bad["epoch"]))
    if stop == "diverged":
        return _stopped_as_diverged(rows, fix)
    if len(rows) >= 2 and rows[-1]["loss"] > 1.1 * rows[0]["loss"]:
        return Finding("lr_too_high",
                       f"The training loss rose from {rows[0]['loss']:.4g} (epoch 1) to {rows[-1]['loss']:.4g}.",
                       fix, {"first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"]}, epoch=int(rows[-1]["epoch"]))
    recent = _recent(curvature)
    if recent and all(_stability(r)[2] > 2 for r in recent):
        r = recent[-1]
        value, threshold, ratio = _stability(r)
        what = "preconditioned sharpness" if "preconditioned_ratio" in r else "sharpness"
        edge = "(2 + 2 beta1)/((1 - beta1) lr), Adam's" if "preconditioned_ratio" in r else "2/lr"
        return Finding("lr_too_high",
                       f"The {what} {value:.4g} is {ratio:.2g}x the stability edge {threshold:.4g} ({edge}): "
                       "steps overshoot along the sharpest direction.", fix,
                       {what.replace(" ", "_"): value, "threshold": threshold}, step=r["step"])
    recent = _recent(health)
    medians = [statistics.median(r["update_ratio"].values()) for r in recent if r["update_ratio"]]
    losses = [float(r["loss"]) for r in rows[-10:]]
    rises = sum(b > 1.05 * a for a, b in itertools.pairwise(losses))
    if recent and len(medians) == len(recent) and all(m > 0.1 for m in medians) and rises >= 3:
        return Finding("lr_too_high",
                       f"Each step changes the weights by {medians[-1]:.2g} of their size (median over layers; "
                       f"around 1e-3 is typical) and the loss rose by over 5% in {rises} of the last "
                       f"{len(losses) - 1} epochs.", fix, {"median_update_ratio": medians[-1], "rises": rises},
                       step=recent[-1]["step"])
    return None


def lr_too_low(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    fix = "multiply the learning rate by 10 (or run the learning-rate range test)."
    recent = _recent(health)
    largest = [max(r["update_ratio"].values()) for r in recent if r["update_ratio"]]
    if recent and len(largest) == len(recent) and all(m < 1e-5 for m in largest):
        return Finding("lr_too_low",
                       f"Each step changes the weights by at most {largest[-1]:.1e} of their size: the model is "
                       "barely moving.", fix, {"max_update_ratio": largest[-1]}, step=recent[-1]["step"])
    losses = [float(r["loss"]) for r in rows]
    if len(losses) >= 10 and losses[0] > 0:
        falls = sum(b < a for a, b in itertools.pairwise(losses)) / (len(losses) - 1)
        drop = 1 - losses[-1] / losses[0]
        if falls >= 0.9 and 0 <= drop < 0.1:
            return Finding("lr_too_low",
                           f"The training loss fell in {falls:.0%} of epochs but only by {drop:.1%} over "
                           f"{len(losses)} epochs: steady but slow.", fix,
                           {"first_loss": losses[0], "last_loss": losses[-1]}, epoch=len(losses))
    return None


def over_fitting(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    if not rows or any(not math.isfinite(float(r.get("val_loss", math.nan))) for r in rows):
        return None
    val = [float(r["val_loss"]) for r in rows]
    best = min(range(len(val)), key=val.__getitem__)
    if len(val) - 1 - best < 5 or not val[-1] >= 1.2 * val[best] or not rows[-1]["loss"] < rows[best]["loss"]:
        return None
    epoch = int(rows[best]["epoch"])
    return Finding(
        "over_fitting",
        f"Validation loss was lowest at epoch {epoch} ({val[best]:.4g}) and rose to {val[-1]:.4g} while the "
        f"training loss kept falling ({rows[best]['loss']:.4g} -> {rows[-1]['loss']:.4g}): the model is "
        "memorising the training rows.",
        "use early stopping (keeps the best epoch), more data, a smaller model, weight decay (l2=1e-4) or dropout.",
        {"best_epoch": epoch, "best_val_loss": val[best], "last_val_loss": val[-1]}, epoch=epoch,
    )


def _flat(losses: Sequence[float], tol: float) -> bool:
    return max(losses) - min(losses) < tol * max(abs(min(losses)), 1e-300)


def under_fitting(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    losses = [float(r["loss"]) for r in rows]
    if len(losses) < 10 or not _flat(losses[-5:], 0.02) or not losses[-1] >= 0.5 * losses[0]:
        return None
    val = rows[-1].get("val_loss")
    if val is not None and not val <= 1.25 * losses[-1]:
        return None
    grads = [float(r.get("grad_norm", math.nan)) for r in rows]
    if math.isfinite(grads[0]) and grads[-1] < 1e-3 * grads[0]:
        return None  # stuck at a flat point, not at the limit of the model: that is a plateau
    return Finding(
        "under_fitting",
        f"The training loss settled at {losses[-1]:.4g}, still {losses[-1] / losses[0]:.0%} of the first epoch's, "
        "and validation is no worse: the model cannot fit even the training rows.",
        "use a larger or more flexible model (more units, layers, features), train longer, or reduce "
        "regularisation.",
        {"first_loss": losses[0], "last_loss": losses[-1], "last_val_loss": val}, epoch=len(losses),
    )


def plateau(rows: Rows, health: Records, curvature: Records, stop: str | None) -> Finding | None:
    losses = [float(r["loss"]) for r in rows]
    grads = [float(r.get("grad_norm", math.nan)) for r in rows]
    for start in range(len(losses) - 9):
        window = losses[start : start + 10]
        if not _flat(window, 0.005) or not window[-1] >= 0.5 * losses[0]:
            continue
        tiny = math.isfinite(grads[0]) and max(grads[start : start + 10]) < 1e-3 * grads[0]
        escaped = min(losses[start + 10 :], default=math.inf) < 0.9 * window[-1]
        if tiny or escaped:
            first, last = int(rows[start]["epoch"]), int(rows[start + 9]["epoch"])
            return Finding(
                "plateau",
                f"The training loss stayed at {window[-1]:.4g} from epoch {first} to {last} with "
                f"{'vanishing gradients (a flat region or saddle)' if tiny else 'little progress'}"
                f"{', then fell again' if escaped else ''}.",
                "use momentum or Adam, a learning-rate warm restart, a different (non-symmetric) initialisation.",
                {"loss": window[-1], "from_epoch": first, "to_epoch": last, "grad_norm": grads[start + 9]},
                epoch=first,
            )
    return None


Rule = Callable[[Rows, Records, Records, "str | None"], "Finding | None"]
RULES: dict[str, Rule] = {
    rule.__name__: rule
    for rule in (vanishing_gradients, exploding_gradients, dead_relus, lr_too_high, lr_too_low, over_fitting,
                 under_fitting, plateau)
}


def diagnose(rows: Rows, health: Records = (), curvature: Records = (), stop_reason: str | None = None) -> list[Finding]:
    """Run every rule in :data:`RULES` and return the findings, in the table's order."""
    found = (rule(rows, health, curvature, stop_reason) for rule in RULES.values())
    return [f for f in found if f is not None]


class Findings(Callback):
    """At the end of ``fit``, run :func:`diagnose` on the run's rows and the given monitors' records.

    Each finding is logged as a ``"finding"`` event (in ``events.jsonl`` of a run folder) and kept in
    ``findings``; printing them is left to the caller (the command line prints them at the end of a run).

    Example:
        >>> from descend.inspect.monitor import HealthMonitor
        >>> health = HealthMonitor(every=10)
        >>> callbacks = [health, Findings(health=health)]      # fit(..., callbacks=callbacks)
    """

    def __init__(self, *, health: Any = None, sharpness: Any = None) -> None:
        self.health = health
        self.sharpness = sharpness
        self.findings: list[Finding] = []

    def on_fit_end(self, state: TrainState) -> None:
        self.findings = diagnose(
            state.history,
            self.health.records if self.health is not None else (),
            self.sharpness.records if self.sharpness is not None else (),
            state.stop,
        )
        for f in self.findings:
            state.log_event("finding", rule=f.rule, message=f.message, suggestion=f.suggestion,
                            evidence=f.evidence, step=f.step, epoch=f.epoch, layer=f.layer)
