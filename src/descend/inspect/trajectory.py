"""The run's own path on its loss surface (Li et al., 2018, "Visualizing the Loss Landscape of Neural Nets", §7).

:class:`TrajectoryRecorder` keeps a bounded, evenly spaced sample of the weights along a run: at most
``snapshots`` of them, each stored as its offset from the initial weights, :math:`\\theta_t - \\theta_0`, in
``dtype`` (float16 by default: 2 bytes per parameter per snapshot). It starts with one snapshot every
:math:`\\lceil T / n \\rceil` steps (:math:`T` the planned steps, :math:`n` = ``snapshots``); when the sample is
full it drops every other snapshot and doubles the spacing, so memory never exceeds ``n`` snapshots, whatever the
run's length. The weights at the end of each epoch are kept as one more snapshot (the last one is the path's end).

:func:`principal_plane` takes the snapshots :math:`\\theta_1 \\dots \\theta_m` and the final weights
:math:`\\theta^*`, forms the differences :math:`D_i = \\theta_i - \\theta^*`, centres them
(:math:`\\bar D_i = D_i - \\frac1m \\sum_j D_j`, as PCA does) and takes the two leading right singular vectors
:math:`d_1, d_2` of :math:`\\bar D` (unit vectors in weight space). The share of the path's variance they explain is
:math:`s_k^2 / \\sum_j s_j^2` (:math:`s` the singular values of :math:`\\bar D`). Each snapshot is drawn at
:math:`(\\alpha_i, \\beta_i) = (D_i \\cdot d_1, D_i \\cdot d_2)`, so :math:`\\theta^*` is the origin; ``residual``
is the distance :math:`\\lVert D_i - \\alpha_i d_1 - \\beta_i d_2\\rVert` of each snapshot from the plane. Signs:
each direction points towards the start (:math:`\\alpha_1, \\beta_1 \\ge 0`). The singular vectors come from the
:math:`m \\times m` Gram matrix :math:`\\bar D \\bar D^\\top`, computed in float64 a slice of parameters at a time,
so the analysis costs :math:`O(m^2 P)` time and :math:`O(mP)` memory at the snapshots' own precision.

:func:`trajectory_surface` evaluates :math:`L(\\theta^* + \\alpha d_1 + \\beta d_2)` on a grid covering the path
(with a margin), the loss at each path point in the plane, and the loss of each snapshot's own weights: the two
agree where the path lies in the plane (``residual`` 0).

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 1, bias=False).double()
    >>> X = torch.eye(2, dtype=torch.float64); y = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    >>> rec = TrajectoryRecorder(snapshots=50, dtype=torch.float64)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.5)
    >>> rec.start(model)
    >>> for step in range(1, 21):
    ...     opt.zero_grad(); ((model(X) - y) ** 2).mean().backward(); opt.step(); rec.take(model, step)
    >>> plane = principal_plane(rec.snapshots(), model)
    >>> round(float(plane.explained.sum()), 6)
    1.0
    >>> surface = trajectory_surface(model, lambda: ((model(X) - y) ** 2).mean(), plane, points=5)
    >>> bool(abs(surface.path_loss - surface.snapshot_loss).max() < 1e-12)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from descend.errors import ConfigError
from descend.inspect.landscape import _check_grid, _evaluate
from descend.train.state import Callback, TrainState

__all__ = [
    "Snapshots",
    "TrajectoryPlane",
    "TrajectoryRecorder",
    "TrajectorySurface",
    "principal_plane",
    "trajectory_surface",
]

FILE = "trajectory.pt"  # in a run folder: the recorder's snapshots, written when the run ends
MIN_SNAPSHOTS = 10  # below this the picture says nothing: a model too large for the budget is not recorded
LR_CHANGE = 2.0  # a learning rate this many times higher or lower than at the last mark is marked again
_CHUNK = 1 << 20  # parameters per slice of the Gram matrix's float64 pass


def _flat(model: nn.Module) -> Tensor:
    # on the CPU: the path is analysed there, and snapshots of a model on an accelerator do not take its memory
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu()


def _unflat(vector: Tensor, model: nn.Module) -> list[Tensor]:
    out, start = [], 0
    for p in model.parameters():
        out.append(vector[start:start + p.numel()].reshape(p.shape).to(p.device, p.dtype))
        start += p.numel()
    return out


@dataclass
class Snapshots:
    """A recorded sample of weights: ``steps`` (optimizer steps taken; 0 is the initial weights), ``epochs``
    (1-based epoch of each step, 0 for the start), ``lrs`` (the first group's learning rate after that step),
    ``origin`` (the initial weights, flat) and ``offsets`` (one row per snapshot: weights minus ``origin``, at the
    recorder's precision). ``marks``: rollbacks and learning-rate changes, dicts with ``kind``, ``step``."""

    steps: list[int]
    epochs: list[int]
    lrs: list[float]
    origin: Tensor
    offsets: Tensor
    marks: list[dict[str, Any]] = field(default_factory=list)
    every: int = 1

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def nbytes(self) -> int:
        """Memory of the stored snapshots (offsets and origin), in bytes."""
        return self.offsets.numel() * self.offsets.element_size() + self.origin.numel() * self.origin.element_size()

    def weights(self, i: int) -> Tensor:
        """The flat weights of snapshot ``i``, in float64."""
        return self.origin.double() + self.offsets[i].double()

    def save(self, path: str | Path) -> None:
        """Write to ``path`` atomically (open with :meth:`load`)."""
        import io

        from descend.train.run import atomic_write

        buffer = io.BytesIO()
        torch.save({"steps": self.steps, "epochs": self.epochs, "lrs": self.lrs, "origin": self.origin,
                    "offsets": self.offsets, "marks": self.marks, "every": self.every}, buffer)
        atomic_write(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Snapshots:
        d = torch.load(path, weights_only=True)
        return cls(list(d["steps"]), list(d["epochs"]), list(d["lrs"]), d["origin"], d["offsets"], list(d["marks"]),
                   int(d["every"]))


class TrajectoryRecorder(Callback):
    """A ``fit`` callback that samples the weights along the run (see the module's docstring for the spacing).

    Args:
        snapshots: the most snapshots held, int >= 10. Default 100.
        dtype: the precision the offsets :math:`\\theta_t - \\theta_0` are kept in (torch.float16, bfloat16,
            float32 or float64). Default float16.
        budget_mb: the most memory the snapshots may take, in MiB; fewer snapshots are kept when
            ``snapshots`` of them would not fit, none when fewer than 10 would (``enabled`` is then False and
            ``reason`` says why). Default 64.

    Its state (snapshots included) is saved in every checkpoint, so a resumed run records the same path. When the
    run has a folder, the sample is written to ``trajectory.pt`` there at the end (:meth:`Snapshots.load`).
    Divergence-guard rollbacks and learning-rate changes by a factor of 2 or more since the last mark are marked.

    Example:
        >>> TrajectoryRecorder(snapshots=50).snapshots_max
        50
    """

    def __init__(self, *, snapshots: int = 100, dtype: torch.dtype = torch.float16, budget_mb: float = 64.0) -> None:
        if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < MIN_SNAPSHOTS:
            raise ConfigError(f"TrajectoryRecorder: invalid snapshots={snapshots!r}; expected an int >= "
                              f"{MIN_SNAPSHOTS}")  # fmt: skip
        if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ConfigError(f"TrajectoryRecorder: invalid dtype={dtype!r}; expected torch.float16, torch.bfloat16, "
                              "torch.float32 or torch.float64")  # fmt: skip
        if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or not budget_mb > 0:
            raise ConfigError(f"TrajectoryRecorder: invalid budget_mb={budget_mb!r}; expected a number > 0")
        self.snapshots_max = snapshots
        self.dtype = dtype
        self.budget_mb = float(budget_mb)
        self.enabled = True
        self.reason = ""
        self._capacity = snapshots
        self._every = 1
        self._origin: Tensor | None = None
        self._rows: list[Tensor] = []
        self._steps: list[int] = []
        self._epochs: list[int] = []
        self._lrs: list[float] = []
        self._tail: tuple[int, int, float, Tensor] | None = None  # the end of the latest epoch
        self._marks: list[dict[str, Any]] = []
        self._marked_lr: float | None = None
        self._log: Any = None
        self._wrapper: Any = None

    # Recording, usable outside fit: start(model), then take(model, step) after each step.

    def start(self, model: nn.Module, *, planned: int = 0, lr: float = math.nan) -> None:
        """Begin at ``model``'s current weights (step 0); ``planned`` steps set the first spacing."""
        n = sum(p.numel() for p in model.parameters())
        per = max(n, 1) * torch.empty((), dtype=self.dtype).element_size()
        self._capacity = min(self.snapshots_max, int(self.budget_mb * 2**20 // per))
        if self._capacity < MIN_SNAPSHOTS:
            self.enabled = False
            self.reason = (f"{MIN_SNAPSHOTS} snapshots of {n:,} parameters would take "
                           f"{MIN_SNAPSHOTS * per / 2**20:.0f} MiB, over budget_mb={self.budget_mb:g}")
            return
        self._every = max(1, math.ceil(planned / self._capacity))
        self._origin = _flat(model).clone()
        self._rows, self._steps, self._epochs, self._lrs = [], [], [], []
        self._marked_lr = lr if math.isfinite(lr) else None
        self._add(model, 0, 0, lr)

    def take(self, model: nn.Module, step: int, *, epoch: int = 0, lr: float = math.nan) -> None:
        """Record the weights after ``step`` if it falls on the current spacing."""
        if not self.enabled or step % self._every:
            return
        self._add(model, step, epoch, lr)
        if len(self._rows) > self._capacity:  # full: keep every other one, twice as far apart
            self._every *= 2
            keep = [i for i, s in enumerate(self._steps) if s % self._every == 0]
            self._rows = [self._rows[i] for i in keep]
            self._steps = [self._steps[i] for i in keep]
            self._epochs = [self._epochs[i] for i in keep]
            self._lrs = [self._lrs[i] for i in keep]

    def _offset(self, model: nn.Module) -> Tensor:
        assert self._origin is not None
        return (_flat(model) - self._origin).to(self.dtype)

    def _add(self, model: nn.Module, step: int, epoch: int, lr: float) -> None:
        self._rows.append(self._offset(model))
        self._steps.append(step)
        self._epochs.append(epoch)
        self._lrs.append(lr)

    def snapshots(self) -> Snapshots:
        """The sample so far, with the end of the latest epoch appended when it was not sampled."""
        if self._origin is None:
            raise ConfigError(f"TrajectoryRecorder: nothing recorded{': ' + self.reason if self.reason else ''}")
        rows, steps, epochs, lrs = list(self._rows), list(self._steps), list(self._epochs), list(self._lrs)
        if self._tail is not None and self._tail[0] > steps[-1]:
            steps.append(self._tail[0])
            epochs.append(self._tail[1])
            lrs.append(self._tail[2])
            rows.append(self._tail[3])
        return Snapshots(steps, epochs, lrs, self._origin.clone(), torch.stack(rows), list(self._marks), self._every)

    @property
    def nbytes(self) -> int:
        """Memory the snapshots take now, in bytes."""
        rows = [*self._rows, *([self._tail[3]] if self._tail is not None else [])]
        origin = self._origin.numel() * self._origin.element_size() if self._origin is not None else 0
        return origin + sum(r.numel() * r.element_size() for r in rows)

    # The fit callback

    def on_fit_start(self, state: TrainState) -> None:
        lr = float(state.optimizer.param_groups[0]["lr"])
        if self._origin is None and self.enabled:  # not resumed from a checkpoint
            self.start(state.model, planned=state.epochs * state.n_batches, lr=lr)
            if not self.enabled and state.run_dir is not None:
                state.log_event("trajectory_off", reason=self.reason)
        self._log = state.log_event

        def log_event(kind: str, **data: Any) -> None:
            self._log(kind, **data)
            if kind == "guard_rollback":
                self._marks.append({"kind": "rollback", "step": int(data.get("step") or 0),
                                    "to": data.get("rolled_back_to"), "reason": data.get("reason")})  # fmt: skip

        self._wrapper = log_event
        state.log_event = log_event

    def on_step_end(self, state: TrainState) -> None:
        step = state.step
        if not self.enabled or step % self._every:
            return  # the common case, kept to one comparison
        lr = float(state.optimizer.param_groups[0]["lr"])
        self._mark_lr(step, lr)
        self.take(state.model, step, epoch=state.epoch + 1, lr=lr)

    def _mark_lr(self, step: int, lr: float) -> None:
        ref = self._marked_lr
        if ref is not None and ref > 0 and lr > 0 and max(lr / ref, ref / lr) >= LR_CHANGE:
            self._marks.append({"kind": "lr", "step": step, "from": ref, "to": lr})
        if ref is None or (ref > 0 and lr > 0 and max(lr / ref, ref / lr) >= LR_CHANGE):
            self._marked_lr = lr

    def on_epoch_end(self, state: TrainState) -> None:
        if self.enabled and self._origin is not None:
            lr = float(state.optimizer.param_groups[0]["lr"])
            self._mark_lr(state.step, lr)
            self._tail = (state.step, state.epoch + 1, lr, self._offset(state.model))

    def on_fit_end(self, state: TrainState) -> None:
        if self._wrapper is not None and state.log_event is self._wrapper:
            state.log_event = self._log
        self._wrapper = None
        if state.run_dir is not None and self.enabled and self._origin is not None:
            self.snapshots().save(Path(state.run_dir.path) / FILE)

    def state_dict(self) -> dict[str, Any]:
        tail = self._tail
        return {"enabled": self.enabled, "reason": self.reason, "capacity": self._capacity, "every": self._every,
                "origin": self._origin, "rows": torch.stack(self._rows) if self._rows else None,
                "steps": list(self._steps), "epochs": list(self._epochs), "lrs": list(self._lrs),
                "tail": None if tail is None else {"step": tail[0], "epoch": tail[1], "lr": tail[2], "row": tail[3]},
                "marks": [dict(m) for m in self._marks], "marked_lr": self._marked_lr}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.enabled, self.reason = bool(state["enabled"]), str(state["reason"])
        self._capacity, self._every = int(state["capacity"]), int(state["every"])
        self._origin = state["origin"]
        rows = state["rows"]
        self._rows = list(rows.unbind(0)) if rows is not None else []
        self._steps, self._epochs = [int(s) for s in state["steps"]], [int(e) for e in state["epochs"]]
        self._lrs = [float(v) for v in state["lrs"]]
        tail = state["tail"]
        self._tail = None if tail is None else (int(tail["step"]), int(tail["epoch"]), float(tail["lr"]), tail["row"])
        self._marks = [dict(m) for m in state["marks"]]
        self._marked_lr = state["marked_lr"]


@dataclass
class TrajectoryPlane:
    """The two principal directions of a path (see the module's docstring). ``coords`` (m, 2): each snapshot's
    :math:`(\\alpha, \\beta)`; ``explained`` (2,): the share of the centred path's variance along each direction;
    ``residual`` (m,): each snapshot's distance from the plane; ``directions``: :math:`d_1, d_2` as flat float64
    unit vectors; ``final``: :math:`\\theta^*`, flat, float64."""

    snapshots: Snapshots
    coords: np.ndarray
    explained: np.ndarray
    residual: np.ndarray
    directions: tuple[Tensor, Tensor]
    final: Tensor


def principal_plane(snapshots: Snapshots, final: nn.Module | Tensor) -> TrajectoryPlane:
    """PCA of ``snapshots``' differences from ``final`` (a model or its flat weights); see the module docstring.
    Snapshots with non-finite weights (a diverged step) are left out."""
    theta = (_flat(final) if isinstance(final, nn.Module) else final.reshape(-1)).double()
    if theta.numel() != snapshots.origin.numel():
        raise ConfigError(f"final: the model has {theta.numel():,} parameters and the snapshots "
                          f"{snapshots.origin.numel():,}; expected the model the run trained")  # fmt: skip
    finite = torch.isfinite(snapshots.offsets).all(1)
    keep = [i for i in range(len(snapshots)) if bool(finite[i])]
    if len(keep) < 3 or theta.numel() < 2:
        raise ConfigError(f"snapshots: {len(keep)} finite snapshots of {theta.numel()} parameters; expected at least "
                          "3 snapshots of 2 or more parameters to find a plane")  # fmt: skip
    if len(keep) < len(snapshots):
        s = snapshots
        snapshots = Snapshots([s.steps[i] for i in keep], [s.epochs[i] for i in keep], [s.lrs[i] for i in keep],
                              s.origin, s.offsets[keep], s.marks, s.every)  # fmt: skip
    m, P = len(snapshots), theta.numel()

    def rows(a: int, b: int) -> Tensor:  # D[:, a:b] in float64
        return snapshots.origin[a:b].double() + snapshots.offsets[:, a:b].double() - theta[a:b]

    gram = torch.zeros(m, m, dtype=torch.float64)
    sq = torch.zeros(m, dtype=torch.float64)
    for a in range(0, P, _CHUNK):
        D = rows(a, a + _CHUNK)
        sq += (D * D).sum(1)
        C = D - D.mean(0)
        gram += C @ C.T
    values, vectors = torch.linalg.eigh(gram)  # ascending
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    total = float(values.sum())
    s = values[:2].sqrt()
    directions = torch.zeros(2, P, dtype=torch.float64)
    for a in range(0, P, _CHUNK):
        C = rows(a, a + _CHUNK)
        C = C - C.mean(0)
        for k in range(2):
            if s[k] > 0:
                directions[k, a:a + _CHUNK] = vectors[:, k] @ C / s[k]
    if not s[0] > 0:  # the path never moved: the first axis is arbitrary
        directions[0] = torch.nn.functional.one_hot(torch.tensor(0), P).double()
    # A straight path (the second variance at rounding level, 1e-12 of the first): the second axis is arbitrary,
    # any unit vector orthogonal to the first; else the computed one, re-orthogonalised against rounding.
    if not values[1] > 1e-12 * values[0]:
        directions[1] = torch.randn(P, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    directions[0] /= directions[0].norm()
    directions[1] -= (directions[1] @ directions[0]) * directions[0]
    directions[1] /= directions[1].norm()
    coords = torch.zeros(m, 2, dtype=torch.float64)
    for a in range(0, P, _CHUNK):
        coords += rows(a, a + _CHUNK) @ directions[:, a:a + _CHUNK].T
    flip = torch.where(coords[0] < 0, -1.0, 1.0).double()  # each axis points towards the start
    coords, directions = coords * flip, directions * flip[:, None]
    residual = (sq - (coords**2).sum(1)).clamp_min(0.0).sqrt()
    explained = (values[:2] / total).numpy() if total > 0 else np.zeros(2)
    return TrajectoryPlane(snapshots, coords.numpy(), explained, residual.numpy(),
                           (directions[0], directions[1]), theta)  # fmt: skip


@dataclass
class TrajectorySurface:
    """``loss[j, i]`` = :math:`L(\\theta^* + \\alpha_i d_1 + \\beta_j d_2)`; ``path_loss[k]`` the loss at snapshot
    k's point in the plane, ``snapshot_loss[k]`` the loss of its own weights; ``final_loss`` :math:`L(\\theta^*)`."""

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    path_loss: np.ndarray
    snapshot_loss: np.ndarray
    final_loss: float


def _axis(values: np.ndarray, points: int, margin: float) -> np.ndarray:
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    width = high - low or 1.0
    return np.linspace(low - margin * width, high + margin * width, points)


def trajectory_surface(model: nn.Module, loss_fn: Callable[[], Tensor], plane: TrajectoryPlane, *, points: int = 21,
                       margin: float = 0.2, alphas: Sequence[float] | None = None,
                       betas: Sequence[float] | None = None) -> TrajectorySurface:
    """The loss on a ``points`` × ``points`` grid in ``plane`` (spanning the path and θ*, widened by ``margin`` of
    its extent on each side, unless ``alphas``/``betas`` are given), at the path's points and at the snapshots'
    own weights. ``loss_fn()`` evaluates the loss at ``model``'s current weights; they are restored afterwards."""
    _check_grid(points, 1.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ConfigError(f"margin: invalid margin={margin!r}; expected a number >= 0")
    a = np.asarray(alphas, dtype=float) if alphas is not None else _axis(plane.coords[:, 0], points, margin)
    b = np.asarray(betas, dtype=float) if betas is not None else _axis(plane.coords[:, 1], points, margin)
    saved = [p.detach().clone() for p in model.parameters()]
    base = _unflat(plane.final, model)
    d1, d2 = (_unflat(d, model) for d in plane.directions)
    try:
        grid = np.array([[_evaluate(model, loss_fn, base, [(float(x), d1), (float(y), d2)]) for x in a] for y in b])
        path = np.array([_evaluate(model, loss_fn, base, [(float(x), d1), (float(y), d2)])
                         for x, y in plane.coords])  # fmt: skip
        own = np.array([_evaluate(model, loss_fn, _unflat(plane.snapshots.weights(i), model), [])
                        for i in range(len(plane.snapshots))])  # fmt: skip
        final = _evaluate(model, loss_fn, base, [])
    finally:
        _evaluate(model, lambda: torch.zeros(()), saved, [])
    return TrajectorySurface(a, b, grid, path, own, final)
