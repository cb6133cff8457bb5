"""What fit's watching costs in instructions executed: deterministic, so a loaded machine does not move it.

The setting of ``benchmarks/inspect_overhead.py``: digits through descend.data.prepare (1438 training rows), an MLP
61-64-10, descend Adam at 1e-3, batch 32 (45 steps an epoch), one torch thread, no early stopping, ``--epochs``
epochs (default 23: 1035 steps, one sharpness measurement). Variants: bare (``guard=False, diagnostics=False``),
guard (``diagnostics=False``: the divergence guard, fit's default), default (``fit`` as it comes: the guard,
gradient health, sharpness, findings).

Each variant runs in its own process under ``valgrind --tool=callgrind --instr-atstart=no``: the process first
runs the same fit for one epoch (imports, allocator and caches warm, as in any fit but a process's first), then
switches the instruction count on (``callgrind_control -i on``) for one whole ``fit`` call and off after it. The
figure per variant is its count over bare's. Instructions are not time: cache misses and branch mispredictions
do not count, so the timed figures of ``inspect_overhead.py`` remain the measure of time; this one is the measure a
busy machine cannot blur. Needs valgrind (Debian's ``valgrind``); each variant takes minutes.

Run: ``.venv/bin/python benchmarks/inspect_instructions.py [--epochs 23] [--variants bare guard default]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings

VARIANTS = {"bare": {"guard": False, "diagnostics": False}, "guard": {"diagnostics": False}, "default": {}}


def child(variant: str, epochs: int) -> None:
    import torch

    import descend
    from descend import optim
    from descend.data import DataWarning, load_dataset, prepare
    from descend.models import MLP

    warnings.simplefilter("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = prepare(load_dataset("digits"), validation=0.2, seed=0)
    torch.set_num_threads(1)

    def run(n: int) -> None:
        torch.manual_seed(0)
        model = MLP(data.n_features, data.n_classes, hidden=(64,))
        descend.fit(model, data, optimizer=optim.Adam, lr=1e-3, epochs=n, tol=None, early_stopping=False,
                    progress=False, threads=1, **VARIANTS[variant])  # fmt: skip

    run(1)
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True, check=True)
    run(epochs)
    subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True, check=True)


def count(variant: str, epochs: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={tmp}/out",
             sys.executable, __file__, "--child", variant, "--epochs", str(epochs)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=23)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs)
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("needs valgrind (apt-get install valgrind)")
    counts = {v: count(v, args.epochs) for v in dict.fromkeys(["bare", *args.variants])}
    import torch

    print(f"digits MLP 61-64-10, Adam, batch 32, {args.epochs} epochs ({args.epochs * 45} steps), one thread; "
          f"torch {torch.__version__}, Python {sys.version.split()[0]}")
    for v, n in counts.items():
        print(f"{v:>8}: {n / 1e6:9.1f} M instructions in the fit call, {n / counts['bare'] - 1:+.2%} vs bare")


if __name__ == "__main__":
    main()
