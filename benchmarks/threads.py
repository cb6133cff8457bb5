"""One torch thread or two: the time of one training step (forward, backward, Adam) against the work in it.

Each case is a model and a batch; its work is the floating-point operations of one step as torch's
``FlopCounterMode`` counts them (matrix products, convolutions, attention; forward and backward). Rounds
alternate 1 and 2 threads so that load from other work falls on both; the median step over rounds is reported.
``fit(threads="auto")`` reads the crossover from this table.

    .venv/bin/python benchmarks/threads.py [--rounds 7] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from descend.models import GPT, MLP, FTTransformer

Case = tuple[str, nn.Module, Tensor, Tensor, Callable[[Tensor, Tensor], Tensor]]


def _mlp(widths: tuple[int, ...], n_in: int, n_out: int, batch: int) -> Case:
    model = MLP(hidden=widths).build(n_in, n_out)
    X, y = torch.randn(batch, n_in), torch.randint(0, n_out, (batch,))
    return f"mlp {n_in}-{'-'.join(map(str, widths))}-{n_out}, batch {batch}", model, X, y, F.cross_entropy


def _gpt(layers: int, dim: int, block: int, batch: int) -> Case:
    model = GPT(vocab=65, layers=layers, heads=4, dim=dim, block=block)
    X, y = torch.randint(0, 65, (batch, block)), torch.randint(0, 65, (batch, block))

    def loss(out: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))

    return f"gpt {layers}x{dim}, block {block}, batch {batch}", model, X, y, loss


def _ftt(features: int, classes: int, batch: int) -> Case:
    model = FTTransformer(features, classes, layers=3, dim=64, heads=8)
    X, y = torch.randn(batch, features), torch.randint(0, classes, (batch,))
    return f"ftt 3x64, {features} features, batch {batch}", model, X, y, F.cross_entropy


def cases() -> list[Case]:
    return [_mlp((64,), 61, 10, 32), _mlp((256, 256), 61, 10, 32), _mlp((64,), 61, 10, 1024),
            _mlp((512, 512), 784, 10, 128), _mlp((1024, 1024), 784, 10, 256),
            _ftt(13, 3, 32), _ftt(61, 10, 32), _gpt(1, 32, 32, 8), _gpt(2, 64, 64, 12), _gpt(4, 128, 64, 4),
            _gpt(4, 128, 64, 12)]  # fmt: skip


def step_flops(model: nn.Module, X: Tensor, y: Tensor, loss: Callable[[Tensor, Tensor], Tensor]) -> int:
    with FlopCounterMode(display=False) as counter:
        loss(model(X), y).backward()
    model.zero_grad()
    return int(counter.get_total_flops())


def step_time(model: nn.Module, X: Tensor, y: Tensor, loss: Callable[[Tensor, Tensor], Tensor], steps: int,
              threads: int) -> float:  # fmt: skip
    torch.set_num_threads(threads)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for _ in range(2):  # warm-up: allocator, thread pool
        opt.zero_grad()
        loss(model(X), y).backward()
        opt.step()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss(model(X), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("| case | parameters | work per step (MFLOP) | 1 thread (ms) | 2 threads (ms) | 1 / 2 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, model, X, y, loss in cases():
        flops = step_flops(model, X, y, loss)
        times: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.rounds):
            for t in (1, 2) if r % 2 == 0 else (2, 1):
                times[t].append(step_time(model, X, y, loss, args.steps, t))
        one, two = statistics.median(times[1]) * 1e3, statistics.median(times[2]) * 1e3
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {params:,} | {flops / 1e6:,.1f} | {one:.2f} | {two:.2f} | {one / two:.2f} |", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
