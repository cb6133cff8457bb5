"""Where and in what arithmetic ``fit`` trains: the device, the precision and the gradient scaler.

``device``: ``auto`` (CUDA if present, then Apple's MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
The model, the data held in memory (moved once), each loader batch (a non-blocking copy, asynchronous from a
loader with ``pin_memory=True``), the optimizer's state, the guard's saved states and the diagnostics live
there. Checkpoints are written with every tensor on the CPU and read back onto the run's device, so a run
started on one device resumes on another.

``precision``:

============ =========================================================================================
``32``       float32 throughout (the default)
``bf16``     the forward pass under ``torch.autocast`` in bfloat16 (CPU and CUDA); the loss, the gradients
             of the float32 parameters and the optimizer's state stay float32. bfloat16 keeps float32's
             exponent range, so no loss scaling is needed
``16-mixed`` the forward pass under autocast in float16, the loss multiplied by a scale :math:`s` before
             the backward pass (``torch.amp.GradScaler``) so small gradients do not underflow float16, the
             gradients divided by :math:`s` again before anything reads them. A step whose scaled
             gradients overflow is skipped by the scaler, which halves :math:`s`; after 2,000 steps
             without one it doubles :math:`s`. Meant for CUDA; it runs on the CPU too (float16 autocast
             and the CPU scaler), which is how the tests here hold it to the rules
============ =========================================================================================

Under ``16-mixed`` every reader of gradients sees them unscaled: the scaler's ``unscale_`` runs right after the
backward pass, before the gradient norm, the divergence guard's check, clipping and the gradient-health records.
A step the scaler skips moves nothing; the loop tells the guard (``TrainState.scaler_skipped``), which records a
``guard_skip`` event with ``reason="loss_scale_overflow"`` and neither rolls back nor changes the learning rate:
an overflow of the *scaled* gradient is the scaler finding its scale, not the descent diverging.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> p = Precision("bf16", resolve_device("cpu"))
    >>> import torch
    >>> with p.autocast():
    ...     torch.ones(2, 2) @ torch.ones(2, 2)
    tensor([[2., 2.],
            [2., 2.]], dtype=torch.bfloat16)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from descend.errors import ConfigError
from descend.train.options import DEVICE

__all__ = ["DEVICES", "PRECISIONS", "Precision", "cpu_state", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("32", "bf16", "16-mixed")
_ACCEPTED = "auto, cpu, cuda, cuda:N or mps"


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _present() -> str:
    """The devices this machine has, in words, for the error naming what is accepted here."""
    found = ["cpu"]
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        found.append("cuda" if n == 1 else f"cuda:0 to cuda:{n - 1}")
    if _mps():
        found.append("mps")
    return ", ".join(found)


def valid_spelling(value: Any) -> bool:
    """Whether ``value`` names a device kind this option knows (present or not): the table's test."""
    if isinstance(value, torch.device):
        return value.type in ("cpu", "cuda", "mps")
    return DEVICE.ok(value)


def resolve_device(spec: str | torch.device) -> torch.device:
    """The device ``spec`` names, checked to be present on this machine.

    ``auto``: CUDA (the current device) if torch sees one, else MPS if available, else the CPU. A device that is
    not here raises :class:`~descend.errors.ConfigError` naming the devices that are.

    Example:
        >>> resolve_device("auto").type in ("cpu", "cuda", "mps")
        True
    """
    if not valid_spelling(spec):
        raise ConfigError(f"device: invalid device={spec!r}; expected {_ACCEPTED}")
    device = torch.device(spec) if not isinstance(spec, str) or spec != "auto" else None
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps() else torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: device={str(spec)!r} is not available: torch {torch.__version__} sees no CUDA "
                              f"device on this machine; expected one of {_present()} (or auto)")  # fmt: skip
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: device={str(spec)!r} is not available: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s); expected one of {_present()}")  # fmt: skip
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps():
        raise ConfigError(f"device: device={str(spec)!r} is not available: torch sees no MPS device on this machine; "
                          f"expected one of {_present()} (or auto)")  # fmt: skip
    return device


def cpu_state(value: Any) -> Any:
    """A checkpoint's payload with every tensor on the CPU (a copy only of those elsewhere): device-free."""
    if isinstance(value, Tensor):
        return value if value.device.type == "cpu" else value.detach().cpu()
    if isinstance(value, dict):
        return {k: cpu_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_state(v) for v in value)
    return value


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """The accelerator's generator state (dropout on CUDA draws from it), for a checkpoint; empty on the CPU."""
    if device.type == "cuda":
        return {"cuda": torch.cuda.get_rng_state(device)}
    return {}


def set_rng_state(saved: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_state`'s generator, when the checkpoint was written on the same kind of device (resumed
    elsewhere, the run continues with that device's own draws)."""
    if device.type == "cuda" and "cuda" in saved:
        torch.cuda.set_rng_state(saved["cuda"], device)


class Precision:
    """The arithmetic of a training step: ``autocast()`` around each forward pass, and with ``16-mixed`` a
    :class:`torch.amp.GradScaler` for the backward pass and the step.

    ``backward(loss)`` scales the loss (16-mixed), differentiates, and unscales the gradients in place, so every
    reader after it sees the true gradient. ``step(step)`` runs the optimizer's step through the scaler and
    updates the scale; it returns whether the scaler skipped the step (its gradients were not finite).
    """

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in PRECISIONS:
            raise ConfigError(f"precision: invalid precision={name!r}; expected one of {', '.join(PRECISIONS)}")
        self.name, self.device = name, device
        self.dtype = {"bf16": torch.bfloat16, "16-mixed": torch.float16}.get(name)
        self.scaler = torch.amp.GradScaler(device.type) if name == "16-mixed" else None
        self.scale = self.scaler.get_scale() if self.scaler is not None else 1.0  #: the loss scale s
        self._dropping = 0  # micro-batches of an accumulation window still to leave out
        self._k: int | None = None  # the optimizer's accumulation window, read at the first step

    @property
    def mixed(self) -> bool:
        """Whether the forward pass runs in a 16-bit type."""
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def forward(self, model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``model(x)`` in this precision: under :meth:`autocast`, the output as float32."""
        if self.dtype is None:
            return model(x)
        with self.autocast():
            return model(x).float()

    def backward(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            return
        if self._k is None:
            self._k = _window(optimizer)[0]
        if self._k == 1:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            return
        # A micro-batch's loss is its rows' mean: its gradient is k times its share of the window's. Scaled by s/k,
        # the float16 backward overflows where the whole window's batch would, not k times sooner.
        self.scaler.scale(loss / self._k).backward()
        self.scaler.unscale_(optimizer)
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        torch._foreach_mul_(grads, float(self._k))

    def step(self, optimizer: torch.optim.Optimizer, step: Callable[[], Any]) -> bool:
        """Take the step (``step``: the optimizer's, as the loop calls it); True if the scaler skipped it.

        With gradient accumulation (``accumulate=k``), a micro-batch the scaler skips drops its whole window of
        ``k``: the gradients gathered so far are discarded and the window's remaining micro-batches are run but
        not added, as a batch of ``k`` times the rows whose gradient overflowed would be skipped whole. The
        windows stay aligned with the data, so accumulation still matches the larger batch.
        """
        if self.scaler is None:
            step()
            return False
        before = self.scale
        if self._dropping:  # the rest of a dropped window: no step, but the scaler still reads the gradient
            self._dropping -= 1
        else:
            self.scaler.step(optimizer)
        self.scaler.update()
        # update() lowers the scale exactly when the step found non-finite gradients (and so was skipped)
        self.scale = self.scaler.get_scale()
        skipped = self.scale < before
        if skipped and not self._dropping:
            self._dropping = _drop_window(optimizer)
        return skipped

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict(), "dropping": self._dropping}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
            self.scale = self.scaler.get_scale()
            self._dropping = int(state.get("dropping", 0))


def _window(optimizer: torch.optim.Optimizer) -> tuple[int, dict[str, Any]]:
    """A descend optimizer's accumulation window ``k`` (its ``accumulate`` rule; 1 without one) and the state
    that counts its micro-batches."""
    from descend.optim.chain import GLOBAL, ChainOptimizer
    from descend.optim.transforms import Accumulate

    if not isinstance(optimizer, ChainOptimizer):
        return 1, {}
    rule = next((t for t in optimizer.transforms if isinstance(t, Accumulate)), None)
    return (1 if rule is None else rule.k), optimizer.state.get(GLOBAL, {})  # type: ignore[call-overload]


def _drop_window(optimizer: torch.optim.Optimizer) -> int:
    """Discard a descend optimizer's partly accumulated gradients; return how many micro-batches of the window
    are still to come (0 without accumulation)."""
    k, gstate = _window(optimizer)
    if k == 1:
        return 0
    done = int(gstate.get("accumulate_calls", 0))  # micro-batches added before the one that overflowed
    gstate["accumulate_calls"] = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            optimizer.state[p].pop("accum", None)
    return k - 1 - done
