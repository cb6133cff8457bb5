"""Callbacks for :func:`descend.fit` that measure gradient health and curvature on a cadence.

- :class:`HealthMonitor`: every ``every`` steps, per-layer gradient norms, parameter norms, update-to-parameter
  ratios (across that step) and activation statistics (forward hooks attached for that one step only), and the
  global gradient norm.
- :class:`SharpnessMonitor`: every ``every`` steps, the top Hessian eigenvalue of a loss closure you give
  (Lanczos, tolerance ``tol``), against ``2/lr`` (``(2 + 2 momentum)/lr`` with heavy-ball momentum) and, for
  Adam-like optimizers, the preconditioned sharpness against ``(2 + 2 beta1)/((1 - beta1) lr)``.

Each keeps its measurements in ``records`` (a list of dicts) and, in a run folder, appends them to
``health.jsonl`` / ``curvature.jsonl`` (one JSON object per line). On resume, lines past the checkpoint's step
are dropped so the files hold exactly one record per measured step.

Example:
    >>> import torch
    >>> from descend.train import fit
    >>> x = torch.randn(64, 3); y = x.sum(1, keepdim=True)
    >>> health = HealthMonitor(every=4)
    >>> result = fit("mlp", (x, y), epochs=2, callbacks=[health], progress=False)
    >>> sorted(health.records[0])[:4]
    ['activations', 'epoch', 'global_grad_norm', 'grad_norm']
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from descend.inspect._checks import check_int, check_number
from descend.inspect.curvature import preconditioned_sharpness, sharpness
from descend.inspect.health import ActivationMonitor, UpdateRatio, by_layers
from descend.train.state import Callback, TrainState

__all__ = ["HealthMonitor", "SharpnessMonitor"]


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


class _Records(Callback):
    filename = ""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._path: Path | None = None

    def on_fit_start(self, state: TrainState) -> None:
        self.records = [r for r in self.records if r["step"] <= state.step]
        run = state.run_dir
        self._path = None if run is None else Path(run.path) / self.filename
        if self._path is not None and self._path.exists():  # a resume: forget what came after the checkpoint
            kept = [line for line in self._path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= state.step]
            self._path.write_text("".join(line + "\n" for line in kept))

    def _write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._path is not None:
            with open(self._path, "a") as f:
                f.write(json.dumps(record, default=_finite) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"records": json.dumps(self.records, default=_finite)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = json.loads(state["records"])


class HealthMonitor(_Records):
    """Per-layer gradient health every ``every`` optimizer steps (>= 1; default 100).

    A record: ``step``, ``epoch``, ``grad_norm`` / ``param_norm`` / ``update_ratio`` (dicts layer -> value,
    layers in parameter order), ``global_grad_norm`` and ``activations`` (module name -> mean, std,
    nonpositive_fraction, dead_fraction, saturated_fraction, module type). Activation statistics come from the
    single batch of the measured step, so "dead" means "not positive on any row of that batch".
    """

    filename = "health.jsonl"

    def __init__(self, *, every: int = 100) -> None:
        super().__init__()
        self.every = check_int("HealthMonitor", "every", every)
        self._ratio: UpdateRatio | None = None
        self._hooks: ActivationMonitor | None = None
        self._kinds: dict[str, str] = {}

    def on_fit_start(self, state: TrainState) -> None:
        super().on_fit_start(state)
        self._kinds = {name: type(m).__name__ for name, m in state.model.named_modules()}
        if (state.step + 1) % self.every == 0 or state.step == 0:
            self._arm(state)

    def _arm(self, state: TrainState) -> None:
        """Before a measured step: remember the parameters and hook the activations for one forward."""
        self._ratio = UpdateRatio(state.model)
        self._ratio.snapshot()
        self._hooks = ActivationMonitor(state.model)

    def on_step_end(self, state: TrainState) -> None:
        if self._ratio is not None and self._hooks is not None:
            self._hooks.remove()
            acts = {name: {**vars(s), "module": self._kinds.get(name, "")} for name, s in self._hooks.stats().items()}
            named = list(state.model.named_parameters())
            norms, params, before, moved = by_layers(((n, p.grad) for n, p in named), named, *self._ratio.moves())
            self._write({
                "step": state.step,
                "epoch": state.epoch + 1,
                "grad_norm": norms,
                "param_norm": params,
                "update_ratio": self._ratio.divide(before, moved),
                "global_grad_norm": math.sqrt(sum(v * v for v in norms.values())),
                "activations": acts,
            })
            self._ratio = self._hooks = None
        if (state.step + 1) % self.every == 0:
            self._arm(state)

    def on_fit_end(self, state: TrainState) -> None:
        if self._hooks is not None:
            self._hooks.remove()
        self._ratio = self._hooks = None


class SharpnessMonitor(_Records):
    """The top Hessian eigenvalue of ``loss_fn()`` every ``every`` optimizer steps, against the stability edge.

    Args:
        loss_fn: a closure returning the loss whose curvature to track, usually on a fixed batch (for
            full-batch training, the training loss). It is evaluated in the model's current mode. None (only
            inside ``descend.fit``'s callbacks): fit's own training objective on its fixed batch
            (:func:`~descend.inspect.diagnostics.training_loss`), in the units the run trains in (a standardised
            target for a target-scaled regression), so the sharpness is comparable with ``2/lr``.
        every: cadence in steps, >= 1 (default 1000: one measurement, a Lanczos run of up to 20 products,
            costs about 15 mini-batch steps of a small MLP and 50 of a compute-bound one at batch size 32, so
            2-5% of the training time at this cadence; see ``benchmarks/inspect_overhead.py``).
        tol: Lanczos relative residual tolerance, > 0. Default 1e-2: the eigenvalue's error is at most the
            residual and usually near its square over the spectral gap (on a small MLP, 1.2e-4 relative, in 5
            products against 7 at 1e-3), ample for a comparison with the stability edge; pass 1e-6 for an
            exact value.
        max_iter: Hessian-vector products per measurement at most, >= 1 (default 20).
        plain: whether to measure the plain sharpness against ``2/lr`` for an optimizer with Adam state too.
            None (default): only for optimizers without it. Adam's steps are not bounded by ``2/lr`` (its edge is
            the preconditioned sharpness's, Cohen et al. 2022), so for Adam the plain eigenvalue is a second
            Lanczos run that compares with no edge; pass True to track it anyway.

    A record: ``step``, ``epoch``, ``lr``, ``converged``, ``matvecs`` and, for the plain sharpness,
    ``sharpness``, ``threshold``, ``ratio`` (sharpness/threshold); for optimizers with Adam state,
    ``preconditioned_sharpness``, ``preconditioned_threshold`` and ``preconditioned_ratio`` (``converged`` and
    ``matvecs`` then of that run). A step whose learning rate is 0 (the end of a schedule that decays to 0) has
    no stability edge and is not measured.
    """

    filename = "curvature.jsonl"

    def __init__(self, loss_fn: Callable[[], Tensor] | None = None, *, every: int = 1000, tol: float = 1e-2,
                 max_iter: int = 20, plain: bool | None = None) -> None:
        super().__init__()
        if plain not in (None, True, False):
            raise TypeError(f"SharpnessMonitor: invalid plain={plain!r}; expected None, True or False")
        self.plain = plain
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"SharpnessMonitor: invalid loss_fn={loss_fn!r}; expected a callable returning the loss")
        self.loss_fn = loss_fn
        self.every = check_int("SharpnessMonitor", "every", every)
        self.tol = check_number("SharpnessMonitor", "tol", tol, lo_open=True)
        self.max_iter = check_int("SharpnessMonitor", "max_iter", max_iter)

    def on_step_end(self, state: TrainState) -> None:
        # A rate of 0 (where a decaying schedule ends) moves nothing, so there is no edge to set the sharpness
        # against (the threshold would be infinite): that step is not measured.
        if state.step % self.every or self.loss_fn is None:
            return
        if float(state.optimizer.param_groups[0]["lr"]) > 0:
            self._write(self.measure(state))

    def measure(self, state: TrainState) -> dict[str, Any]:
        if self.loss_fn is None:
            raise TypeError("SharpnessMonitor: no loss_fn to measure; pass one, or let descend.fit supply its own")
        group = state.optimizer.param_groups[0]
        lr = float(group["lr"])
        momentum = float(group.get("momentum", 0.0) or 0.0)
        record: dict[str, Any] = {"step": state.step, "epoch": state.epoch + 1, "lr": lr}
        adam = "betas" in group and "exp_avg_sq" in state.optimizer.state.get(group["params"][0], {})
        if not adam or self.plain:
            s = sharpness(state.model, self.loss_fn, lr, momentum=momentum if momentum < 1 else 0.0,
                          tol=self.tol, max_iter=self.max_iter)
            record.update(sharpness=s.value, threshold=s.threshold, ratio=s.ratio, converged=s.spectrum.converged,
                          matvecs=s.spectrum.matvecs)  # fmt: skip
        if adam:
            pre = preconditioned_sharpness(state.optimizer, self.loss_fn, tol=self.tol, max_iter=self.max_iter)
            record.update(preconditioned_sharpness=pre.value, preconditioned_threshold=pre.threshold,
                          preconditioned_ratio=pre.ratio, converged=pre.spectrum.converged,
                          matvecs=pre.spectrum.matvecs)  # fmt: skip
        return record
