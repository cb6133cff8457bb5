"""What the descent did: curvature, gradient health, the callbacks that record them during ``fit``, and findings.

- :mod:`~descend.inspect.curvature`: Hessian-vector products, top eigenvalues (Lanczos), Hutchinson trace,
  sharpness against 2/lr and Adam's preconditioned sharpness.
- :mod:`~descend.inspect.spectral`: the Lanczos and Hutchinson engines for any symmetric operator.
- :mod:`~descend.inspect.health`: per-layer gradient norms, update ratios, dead units, activation statistics.
- :mod:`~descend.inspect.monitor`: :class:`HealthMonitor` and :class:`SharpnessMonitor` callbacks for ``fit``.
- :mod:`~descend.inspect.findings`: rules that turn those records into findings with evidence and a fix.
- :mod:`~descend.inspect.trajectory`: :class:`TrajectoryRecorder`, a bounded sample of the weights along a run,
  and the path's principal plane with the loss surface over it (:func:`principal_plane`,
  :func:`trajectory_surface`).
- :mod:`~descend.inspect.diagnostics`: what ``descend.fit`` adds by default (``diagnostics=True``): the two
  monitors, with sharpness on a fixed batch of the training loss (:func:`training_loss`), and the findings.
"""

from descend.inspect.curvature import (
    HessianOperator,
    Sharpness,
    adam_preconditioner,
    hessian_trace,
    hessian_vector_product,
    preconditioned_sharpness,
    sharpness,
    top_eigenvalue,
    top_eigenvalues,
)
from descend.inspect.diagnostics import training_loss
from descend.inspect.findings import RULES, Finding, Findings, diagnose
from descend.inspect.health import (
    ActivationMonitor,
    ActivationStats,
    UpdateRatio,
    global_grad_norm,
    grad_norms,
    param_norms,
)
from descend.inspect.monitor import HealthMonitor, SharpnessMonitor
from descend.inspect.spectral import Spectrum, TraceEstimate, hutchinson_trace, lanczos
from descend.inspect.trajectory import (
    Snapshots,
    TrajectoryPlane,
    TrajectoryRecorder,
    TrajectorySurface,
    principal_plane,
    trajectory_surface,
)

__all__ = [
    "RULES",
    "ActivationMonitor",
    "ActivationStats",
    "Finding",
    "Findings",
    "HealthMonitor",
    "HessianOperator",
    "Sharpness",
    "SharpnessMonitor",
    "Snapshots",
    "Spectrum",
    "TraceEstimate",
    "TrajectoryPlane",
    "TrajectoryRecorder",
    "TrajectorySurface",
    "UpdateRatio",
    "adam_preconditioner",
    "diagnose",
    "global_grad_norm",
    "grad_norms",
    "hessian_trace",
    "hessian_vector_product",
    "hutchinson_trace",
    "lanczos",
    "param_norms",
    "preconditioned_sharpness",
    "principal_plane",
    "sharpness",
    "top_eigenvalue",
    "top_eigenvalues",
    "training_loss",
    "trajectory_surface",
]
