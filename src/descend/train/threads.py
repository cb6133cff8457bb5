"""How many torch threads a training step is worth: ``fit(threads="auto")``.

A thread pool pays for itself only when each matrix product is big enough to split: waking a second thread
costs microseconds, and a small MLP's whole step takes about a millisecond. What decides is the work of one
step, not the parameter count: a transformer of 0.8M parameters over 768 tokens a step does about 3.7 GFLOP,
an MLP of 85k parameters over 32 rows 15 MFLOP. The work is counted once, before training, by torch's
``FlopCounterMode`` on one training example's forward pass (matrix products, convolutions, attention), times 3
(the backward pass does about twice the forward's products) and the batch size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["STEP_FLOPS_FOR_THREADS", "auto_threads", "step_flops"]

#: below this many floating-point operations a step, one thread is as fast (benchmarks/threads.py, on a quiet
#: machine: 0.6 and 15 MFLOP level, 20 MFLOP and up 1.1-1.5x faster on two threads)
STEP_FLOPS_FOR_THREADS = 2**24


def step_flops(model: nn.Module, example: Tensor, batch_size: int) -> int | None:
    """Floating-point operations of one training step on ``batch_size`` rows like ``example`` (one row, with its
    batch dimension): :math:`3 \\times` the forward pass's, or None where the model cannot be counted."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()  # no dropout draws, no batch-norm statistics: the count must not change the run
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    except Exception:  # a model the counter cannot trace trains all the same, on the parameter rule
        return None
    finally:
        model.train(was_training)
    return 3 * int(counter.get_total_flops()) * batch_size


def auto_threads(model: nn.Module, example: Tensor, batch_size: int) -> int | None:
    """1 for a step under :data:`STEP_FLOPS_FOR_THREADS` operations, else None (torch's own setting).

    A model the counter cannot follow falls back to its size: 1 under 2**20 parameters.

    >>> auto_threads(nn.Linear(61, 10), torch.zeros(1, 61), 32)
    1
    """
    flops = step_flops(model, example, batch_size)
    if flops is None:
        return 1 if sum(p.numel() for p in model.parameters()) < 2**20 else None
    return 1 if flops < STEP_FLOPS_FOR_THREADS else None
