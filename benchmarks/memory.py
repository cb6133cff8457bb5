"""Peak memory of a training step with and without gradient checkpointing, in float32 and bf16.

Each case runs in its own process, so one case's freed memory cannot hide another's peak. In that process the
model, its AdamW optimizer and a batch are made, and one whole step on a small batch loads the kernels and
makes the optimizer's state and the gradients' buffers. The *baseline* is then taken, and one forward and
backward pass on the measured batch follows; the figure is the peak above the baseline: on the CPU the resident
set (``resource.getrusage``'s ``ru_maxrss``, the process's peak; glibc's mmap threshold fixed at 64 KiB, see
``ENV``), on CUDA ``torch.cuda.max_memory_allocated``.
What rises above the baseline is what the step keeps for its backward pass (the activations) and the temporary
buffers of the largest operation, so the sizes are chosen for activations to dominate.

After the memory, ``--steps`` more forward and backward passes are timed (the median): checkpointing buys its
memory with a second forward pass of each block.

    flock /tmp/descend-bench.lock .venv/bin/python benchmarks/memory.py [--device cpu] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from descend.models import GPT, MLP
from descend.models.blocks import set_checkpointing
from descend.train.devices import Precision, resolve_device

CASES = ("gpt", "mlp")
#: glibc raises its mmap threshold each time a large block is freed, after which blocks of that size come from
#: the heap and stay resident when freed: the resident set would count memory the step no longer holds. A fixed
#: threshold (64 KiB) maps every larger block on its own and returns it when freed, so the peak resident set is
#: the peak of what the step held.
ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
PRECISIONS = ("32", "bf16")


def _case(name: str, device: torch.device, batch: int | None = None) -> tuple[str, nn.Module, Tensor, Tensor, Any]:
    g = torch.Generator().manual_seed(0)
    if name == "gpt":
        b = batch or 8
        model = GPT(96, layers=8, heads=8, dim=256, block=256)
        X = torch.randint(0, 96, (b, 256), generator=g)
        y = torch.randint(0, 96, (b, 256), generator=g)

        def loss(out: Tensor, target: Tensor) -> Tensor:
            return F.cross_entropy(out.float().reshape(-1, out.shape[-1]), target.reshape(-1))

        what = f"gpt: 8 blocks, dim 256, 8 heads, context 256, batch {b}"
    else:
        b = batch or 2048
        model = MLP(hidden=(512,) * 16, residual=True, norm="layer").build(256, 10)
        X = torch.randn(b, 256, generator=g)
        y = torch.randint(0, 10, (b,), generator=g)

        def loss(out: Tensor, target: Tensor) -> Tensor:
            return F.cross_entropy(out.float(), target)

        what = f"mlp: 16 residual blocks of width 512 (layer norm), 256 inputs, batch {b}"
    return what, model.to(device), X.to(device), y.to(device), loss


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def measure(name: str, checkpointing: bool, precision: str, device: torch.device, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    what, model, X, y, loss_fn = _case(name, device)
    set_checkpointing(model, checkpointing)
    amp = Precision(precision, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def forward_backward(xb: Tensor, yb: Tensor) -> None:
        with amp.autocast():
            out = model(xb)
        loss_fn(out, yb).backward()

    model.train()
    forward_backward(X[:1], y[:1])  # kernels loaded, gradients' buffers made
    optimizer.step()  # the optimizer's state made
    optimizer.zero_grad(set_to_none=False)  # the buffers stay: the baseline holds them
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = int(torch.cuda.memory_allocated(device))
    else:
        base = _peak_bytes(device)
    forward_backward(X, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    peak = _peak_bytes(device) - base
    times = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=False)
        start = time.perf_counter()
        forward_backward(X, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"case": name, "what": what, "checkpointing": checkpointing, "precision": precision,
            "device": str(device), "peak_mib": peak / 2**20, "params_mib": params / 2**20,
            "seconds": statistics.median(times) if times else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed forward and backward passes per case")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # case,checkpointing,precision: run in this process
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.one:
        name, ckpt, precision = args.one.split(",")
        print(json.dumps(measure(name, ckpt == "1", precision, device, args.steps)))
        return
    rows = []
    for name in args.cases.split(","):
        for precision in PRECISIONS:
            for ckpt in (False, True):
                out = subprocess.run([sys.executable, __file__, "--device", args.device, "--steps", str(args.steps),
                                      "--one", f"{name},{int(ckpt)},{precision}"],
                                     capture_output=True, text=True, check=True, env=ENV)  # fmt: skip
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nmachine: {os.cpu_count()} cores {platform.machine()}, torch {torch.__version__}, device {device}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| case | precision | checkpointing | peak above baseline (MiB) | vs. float32 without | forward+backward (s) |")
    print("|---|---|---|---:|---:|---:|")
    for row in rows:
        ref = next(r for r in rows if r["case"] == row["case"] and r["precision"] == "32" and not r["checkpointing"])
        print(f"| {row['case']} | {row['precision']} | {'yes' if row['checkpointing'] else 'no'} | "
              f"{row['peak_mib']:.0f} | {row['peak_mib'] / ref['peak_mib']:.2f} | {row['seconds']:.3f} |")
    for row in rows:
        if row["checkpointing"]:
            plain = next(r for r in rows if r["case"] == row["case"] and r["precision"] == row["precision"]
                         and not r["checkpointing"])  # fmt: skip
            print(f"{row['case']} {row['precision']}: checkpointing keeps {row['peak_mib'] / plain['peak_mib']:.2f} "
                  f"of the memory, for {row['seconds'] / plain['seconds']:.2f}x the time")


if __name__ == "__main__":
    main()
