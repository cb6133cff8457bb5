"""Gradient health per layer: gradient norms, update-to-parameter ratios, dead units and activation statistics.

A *layer* is a module that owns parameters directly; its name is the parameter's name up to the last dot
(``"0"`` for ``"0.weight"`` and ``"0.bias"`` in an ``nn.Sequential``). All measurements are plain reductions
over tensors that already exist, so they are cheap enough to take every few steps of training.

- :func:`grad_norms`, :func:`param_norms`: :math:`\\|g_\\ell\\|_2` and :math:`\\|\\theta_\\ell\\|_2` per layer.
- :class:`UpdateRatio`: :math:`\\|\\theta_\\ell^{after} - \\theta_\\ell^{before}\\|_2 / \\|\\theta_\\ell^{before}\\|_2`
  per layer across an optimizer step. Around 1e-3 is the common rule of thumb; far below means the layer is
  hardly learning, far above that it is being rewritten every step.
- :class:`ActivationMonitor`: forward hooks on activation modules recording mean, standard deviation, the
  fraction of non-positive outputs, the fraction of *dead* units (never positive on any input seen) and, for
  tanh and sigmoid, the fraction of saturated outputs.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> with ActivationMonitor(model) as monitor:
    ...     model(torch.randn(16, 3)).pow(2).mean().backward()
    >>> sorted(grad_norms(model)), sorted(monitor.stats())
    (['0', '2'], ['1'])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from descend.inspect._checks import check_int

__all__ = [
    "ActivationMonitor",
    "ActivationStats",
    "UpdateRatio",
    "by_layers",
    "global_grad_norm",
    "grad_norms",
    "param_norms",
]

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
)


def _layer(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _norms(tensors: list[Tensor]) -> list[float]:
    """The L2 norm of each tensor, accumulated in float64: one fused reduction and one read-back for all of them
    (a norm and a read-back per tensor cost a small model's health record about a training step)."""
    if not tensors:
        return []
    norms = torch._foreach_norm(tensors, 2, dtype=torch.float64)
    if len({n.device for n in norms}) > 1:
        return [float(n) for n in norms]
    return torch.stack(norms).tolist()


def _by_layer(model: nn.Module, values: Iterable[tuple[str, Tensor | None]]) -> dict[str, float]:
    return by_layers(values)[0]


def by_layers(*lists: Iterable[tuple[str, Tensor | None]]) -> list[dict[str, float]]:
    """Per list of named tensors (``None`` skipped), the L2 norm of each layer's tensors taken together; the
    norms of every list in one fused reduction and one read-back (a health record needs four such lists)."""
    named = [[(name, t.detach()) for name, t in values if t is not None] for values in lists]
    norms = iter(_norms([t for part in named for _, t in part]))
    out = []
    for part in named:
        squares: dict[str, float] = {}
        for name, _ in part:
            norm, layer = next(norms), _layer(name)
            squares[layer] = squares.get(layer, 0.0) + norm * norm
        out.append({k: math.sqrt(v) for k, v in squares.items()})
    return out


def grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each layer's parameters, taken together; layers without gradients are left out.

    Example:
        >>> lin = torch.nn.Linear(2, 1)
        >>> lin.weight.grad, lin.bias.grad = torch.tensor([[3.0, 0.0]]), torch.tensor([4.0])
        >>> grad_norms(torch.nn.Sequential(lin))
        {'0': 5.0}
    """
    return _by_layer(model, ((n, p.grad) for n, p in model.named_parameters()))


def param_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each layer's parameters, taken together."""
    return _by_layer(model, model.named_parameters())


def global_grad_norm(model: nn.Module) -> float:
    """L2 norm of all gradients together, :math:`\\sqrt{\\sum_\\ell \\|g_\\ell\\|^2}` (0.0 if there are none)."""
    return math.sqrt(sum(v * v for v in grad_norms(model).values()))


class UpdateRatio:
    """Per-layer :math:`\\|\\Delta\\theta_\\ell\\| / \\|\\theta_\\ell\\|` across one (or several) optimizer steps.

    Call :meth:`snapshot` before ``optimizer.step()`` and :meth:`ratios` after it. Layers whose parameters
    have zero norm before the step report ``inf`` if they moved and 0.0 if not.

    Example:
        >>> lin = torch.nn.Linear(1, 1, bias=False); torch.nn.init.constant_(lin.weight, 2.0)
        Parameter containing:
        tensor([[2.]], requires_grad=True)
        >>> tracker = UpdateRatio(lin); tracker.snapshot()
        >>> with torch.no_grad(): _ = lin.weight.sub_(0.002)
        >>> round(tracker.ratios()["weight"], 6)
        0.001
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._before: dict[str, Tensor] = {}

    def snapshot(self) -> None:
        """Remember the current parameters (a detached copy of each trainable one)."""
        self._before = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def ratios(self) -> dict[str, float]:
        """The ratio per layer since the last :meth:`snapshot` (empty if none was taken)."""
        return self.divide(*by_layers(*self.moves()))

    def moves(self) -> tuple[list[tuple[str, Tensor]], list[tuple[str, Tensor]]]:
        """The parameters before the step and their moves since, named, for :func:`by_layers`."""
        params = dict(self.model.named_parameters())
        names = list(self._before)
        saved = list(self._before.values())
        moved = torch._foreach_sub([params[n].detach() for n in names], saved) if names else []
        return list(zip(names, saved)), list(zip(names, moved))

    @staticmethod
    def divide(before: dict[str, float], delta: dict[str, float]) -> dict[str, float]:
        """The ratios from the layers' norms before the step and of their moves."""
        return {k: (delta[k] / before[k] if before[k] > 0 else (math.inf if delta[k] > 0 else 0.0)) for k in before}


@dataclass(frozen=True)
class ActivationStats:
    """What one activation module produced over the inputs seen since the last reset.

    Attributes:
        mean, std: over every output entry (population standard deviation).
        nonpositive_fraction: fraction of entries <= 0 (for ReLU, inactive outputs).
        dead_fraction: fraction of units (slices along ``unit_dim``) never > 0 on any input seen; in [0, 1].
        saturated_fraction: tanh: fraction with ``|a| > 0.99``; sigmoid: with ``a < 0.01`` or ``a > 0.99``
            (the derivative is then below 0.02); ``None`` for other activations.
        units: number of units; count: number of entries seen.
    """

    mean: float
    std: float
    nonpositive_fraction: float
    dead_fraction: float
    saturated_fraction: float | None
    units: int
    count: int


class _Tally:
    def __init__(self, module: nn.Module, unit_dim: int) -> None:
        self.unit_dim = unit_dim
        self.saturating = isinstance(module, (nn.Tanh, nn.Sigmoid))
        self.sigmoid = isinstance(module, nn.Sigmoid)
        self.clear()

    def clear(self) -> None:
        self.alive: Tensor | None = None
        self.total = self.square = self.nonpositive = self.saturated = 0.0
        self.count = 0

    @torch.no_grad()
    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, Tensor) or output.numel() == 0:
            return
        out = output.detach().float()
        x = out.movedim(self.unit_dim, 0).reshape(out.shape[self.unit_dim], -1) if out.dim() >= 2 else out[None]
        alive = (x > 0).any(1)
        if self.alive is None or self.alive.shape != alive.shape:
            self.alive = alive
        else:
            self.alive |= alive
        sums = [x.sum(dtype=torch.float64), x.pow(2).sum(dtype=torch.float64), (x <= 0).sum(dtype=torch.float64)]
        if self.saturating:
            far = (x - 0.5).abs() > 0.49 if self.sigmoid else x.abs() > 0.99
            sums.append(far.sum(dtype=torch.float64))
        read = torch.stack(sums).tolist()  # one read-back for the four figures
        self.total += read[0]
        self.square += read[1]
        self.nonpositive += read[2]
        if self.saturating:
            self.saturated += read[3]
        self.count += x.numel()

    def stats(self) -> ActivationStats | None:
        if self.count == 0 or self.alive is None:
            return None
        mean = self.total / self.count
        return ActivationStats(
            mean=mean,
            std=math.sqrt(max(self.square / self.count - mean * mean, 0.0)),
            nonpositive_fraction=self.nonpositive / self.count,
            dead_fraction=float((~self.alive).sum()) / self.alive.numel(),
            saturated_fraction=self.saturated / self.count if self.saturating else None,
            units=self.alive.numel(),
            count=self.count,
        )


class ActivationMonitor:
    """Forward hooks that keep running statistics of activation outputs, per module.

    Args:
        model: any ``nn.Module``.
        modules: which submodule types to watch (default: the usual activation modules, ReLU to Softplus).
            Activations applied as functions (``F.relu`` inside ``forward``) have no module and are not seen.
        unit_dim: the axis that indexes units, >= 1: 1 for ``(batch, features)`` and ``(batch, channels, ...)``.
            Every other axis counts as another input.

    Use as a context manager (hooks removed on exit) or call :meth:`remove`; :meth:`reset` starts a new tally.

    Example:
        >>> relu_net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
        >>> _ = torch.nn.init.zeros_(relu_net[0].weight); _ = torch.nn.init.constant_(relu_net[0].bias, -1.0)
        >>> with ActivationMonitor(relu_net) as m:
        ...     _ = relu_net(torch.randn(8, 2))
        >>> m.stats()["1"].dead_fraction
        1.0
    """

    def __init__(self, model: nn.Module, modules: tuple[type[nn.Module], ...] = ACTIVATIONS, *,
                 unit_dim: int = 1) -> None:
        self.unit_dim = check_int("ActivationMonitor", "unit_dim", unit_dim, lo=1)
        self._tallies: dict[str, _Tally] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for name, module in model.named_modules():
            if isinstance(module, modules):
                tally = _Tally(module, unit_dim)
                self._tallies[name] = tally
                self._handles.append(module.register_forward_hook(tally))

    def stats(self) -> dict[str, ActivationStats]:
        """Statistics per watched module name, for those that have produced output since the last reset."""
        out = {name: t.stats() for name, t in self._tallies.items()}
        return {name: s for name, s in out.items() if s is not None}

    def reset(self) -> None:
        """Forget what has been seen; the hooks stay."""
        for tally in self._tallies.values():
            tally.clear()

    def remove(self) -> None:
        """Detach every hook (statistics gathered so far stay readable)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> ActivationMonitor:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.remove()

