"""Will a model fit in memory? Checked before any of it is allocated.

Training holds, per parameter, the weight, its gradient and (for Adam and its kin) two moment estimates: about
:data:`COPIES` = 4 copies of ``itemsize`` bytes each. A model whose

.. math:: \\text{bytes} = n_\\text{params} \\times \\text{itemsize} \\times 4

exceeds the memory this process may use (physical memory, or the container's limit when lower) would fail in the
allocator with a bare ``RuntimeError`` (or be killed) after its run folder was made; :func:`check_size` refuses it
first, with the arithmetic in the message. Activations come on top, so passing the check is necessary, not
sufficient.

Example:
    >>> from descend.models import MLP
    >>> count_parameters(MLP(hidden=(64,)), 10, 3)
    899
    >>> check_size(MLP(hidden=(10**9,)), 10, 3, limit=2**34)
    Traceback (most recent call last):
    ...
    descend.errors.ConfigError: model: MLP needs 14,000,000,003 parameters x 4 bytes x 4 (weights, gradients, 2 optimizer moments) = 224 GB, more than the 17.2 GB of memory here; use smaller layers
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
from collections.abc import Sequence

import torch
from torch import nn

from descend.errors import ConfigError

__all__ = ["COPIES", "check_size", "count_parameters", "memory_limit", "mlp_parameters"]

#: Copies of each parameter training holds: weights, gradients and two optimizer moments.
COPIES = 4


def memory_limit() -> int | None:
    """Bytes of memory this process may use: physical memory, or the cgroup (container) limit when lower."""
    limits: list[int] = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            limits.append(int(text))
    return min(limits) if limits else None


def mlp_parameters(in_features: int, out_features: int, hidden: Sequence[int]) -> int:
    """Weights and biases of an MLP: :math:`\\sum_l (w_{l-1} + 1) w_l` over widths ``in, *hidden, out``.

    >>> mlp_parameters(4, 3, (8,))
    67
    """
    widths = [in_features, *hidden, out_features]
    return sum((a + 1) * b for a, b in itertools.pairwise(widths))


def count_parameters(model: nn.Module, in_features: int | None = None, out_features: int | None = None) -> int:
    """Parameters of ``model`` once built for these sizes, counted on the meta device (nothing is allocated).

    A built model (or any ``nn.Module``) is counted as it is; an unbuilt descend model is built, as a copy, for
    ``in_features`` inputs and ``out_features`` outputs.
    """
    from descend.models.base import Model

    if isinstance(model, Model) and not model.built:
        if in_features is None:
            raise ConfigError(f"{type(model).__name__}: in_features is needed to count the parameters")
        with torch.device("meta"):
            model = copy.deepcopy(model).build(in_features, out_features)
    return sum(p.numel() for p in model.parameters())


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} bytes"


def check_size(
    model: nn.Module | int,
    in_features: int | None = None,
    out_features: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    limit: int | None = None,
    what: str = "",
) -> int:
    """Refuse a model whose training state (:data:`COPIES` x its parameters) exceeds memory; return its bytes.

    Args:
        model: a model (unbuilt descend models are counted as built for the sizes) or a parameter count.
        in_features, out_features: the sizes ``fit`` will build an unbuilt model with.
        dtype: the parameters' type (4 bytes for float32, 8 for float64).
        limit: bytes available; default :func:`memory_limit`. No check when it cannot be known.
        what: how the message names the model (default: its class).

    Raises:
        ConfigError: the arithmetic, the memory there is, and what to change.
    """
    n = model if isinstance(model, int) else count_parameters(model, in_features, out_features)
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = n * itemsize * COPIES
    limit = memory_limit() if limit is None else limit
    if limit is not None and need > limit:
        name = what or (type(model).__name__ if not isinstance(model, int) else "the model")
        raise ConfigError(
            f"model: {name} needs {n:,} parameters x {itemsize} bytes x {COPIES} (weights, gradients, 2 optimizer "
            f"moments) = {_size(need)}, more than the {_size(limit)} of memory here; use smaller layers"
        )
    return need
