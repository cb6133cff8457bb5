"""A script calling ``descend.fit`` the way a user's would, run by tests/test_distributed.py under torchrun (and
without it, for the single-process references). ``python distributed_fit.py OUT CASE [CASE ...]``: each case is
one fit; every process saves ``OUT/<case>-rank<r>.pt`` (weights, history, guard counters, range test's rate,
DDP's ``no_sync`` calls) for the test to compare.

``batch_size`` is the per-process size, so under ``--nproc-per-node 2`` a case's global batch is twice the one of
the same case run alone; the test runs the single-process reference with ``--scale-batch 2``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

import descend


def table(n: int, *, bad_row: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(n, generator=g)
    if bad_row is not None:
        X[bad_row, 0] = float("nan")  # one bad batch per epoch: the guard skips it
    return X, y


#: name -> (rows, fit's options); batch_size is the per-process size
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    # 69 training rows, global batch 16: the last batch (5 rows) splits 2 / 3 between two processes
    "uneven": (69, dict(model="mlp:8", optimizer="adam", lr=0.01, batch_size=8, epochs=3)),
    # accumulation of 2 micro-batches: only the second exchanges gradients (no_sync for the first)
    "accumulate": (64, dict(model="mlp:8", optimizer="adam", lr=0.01, batch_size=8, epochs=3, accumulate=2)),
    # the un-accumulated run "accumulate" must equal: run alone with --scale-batch 2, batch 2 x 2 x 8
    "unaccumulated": (64, dict(model="mlp:8", optimizer="adam", lr=0.01, batch_size=16, epochs=3)),
    # accumulation with a checkpoint inside each cycle (every 3 steps, k = 2): the held gradients are saved
    "accumulate_ckpt": (64, dict(model="mlp:8", optimizer="adam", lr=0.01, batch_size=8, epochs=3, accumulate=2,
                                 checkpoint_every=3, run_dir="accumulate_ckpt-run")),
    # the same run, every process leaving at step 5 (the checkpoint of step 3 is inside a cycle) ...
    "accumulate_cut": (64, dict(model="mlp:8", optimizer="adam", lr=0.01, batch_size=8, epochs=3, accumulate=2,
                                checkpoint_every=3, run_dir="accumulate_cut-run", exit_at=5)),
    # ... and resumed from it
    "accumulate_resume": (64, dict(model="mlp:8", optimizer="adam", lr=0.01, batch_size=8, epochs=3, accumulate=2,
                                   checkpoint_every=3, resume="accumulate_cut-run")),
    # lr="auto": the range test on the global batch, the same rate on every process
    "auto": (64, dict(model="mlp:8", optimizer="sgd", lr="auto", batch_size=8, epochs=2)),
    # a NaN feature in one row: the process holding it sees a NaN loss; the global loss is NaN on both, so both skip
    "bad_row": (64, dict(model="linear", optimizer="sgd", lr=0.05, batch_size=8, epochs=3, bad_row=7)),
    # far too large a rate: the guard rolls back, on every process at the same step
    "diverging": (64, dict(model="mlp:8", optimizer="sgd", lr=3.0, batch_size=8, epochs=6)),
}


class Leave(descend.train.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: Any) -> None:
        if state.step == self.step:
            os._exit(0)


def run(out: Path, case: str, scale: int) -> None:
    from torch.nn.parallel import DistributedDataParallel

    calls = [0]
    original = DistributedDataParallel.no_sync

    def counted(self: Any) -> Any:
        calls[0] += 1
        return original(self)

    DistributedDataParallel.no_sync = counted  # type: ignore[method-assign]
    rows, options = CASES[case]
    options = dict(options)
    bad_row, exit_at = options.pop("bad_row", None), options.pop("exit_at", None)
    options["batch_size"] *= scale
    for key in ("run_dir", "resume"):
        if key in options:
            options[key] = out / options[key]
    if exit_at is not None:  # every process leaves at once, as if the job were killed there
        options["callbacks"] = [Leave(exit_at)]
    X, y = table(rows, bad_row=bad_row)
    # prepared arrays, as they are: a table's NaN would be imputed before the guard could see it
    data = SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task="regression")
    guard = descend.train.DivergenceGuard()
    result = descend.fit(options.pop("model"), data, **options, tol=None, seed=0, progress=False, guard=guard)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:  # the returned model is a plain module again: a backward pass here exchanges nothing (or hangs)
        result.model(X[:4]).sum().backward()
    torch.save({"weights": result.model.state_dict(), "history": result.history, "steps": result.steps,
                "rollbacks": guard.rollbacks, "skips": guard.skips, "diverged_steps": guard.diverged_steps,
                "lr": None if result.lr_find is None else result.lr_find.lr, "no_sync": calls[0]},
               out / f"{case}-rank{rank}.pt")  # fmt: skip
    DistributedDataParallel.no_sync = original  # type: ignore[method-assign]


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")  # ConvergenceWarning: the cases stop on their epochs
    args = sys.argv[1:]
    scale = 1
    if args[0] == "--scale-batch":
        scale, args = int(args[1]), args[2:]
    folder = Path(args[0])
    for name in args[1:]:
        run(folder, name, scale)
