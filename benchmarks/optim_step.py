"""Step time of descend's Adam and SGD-momentum against torch.optim's default, foreach and fused paths.

10M parameters, in 1 tensor and in 100 tensors of 100k. Every optimizer sees the same gradients; each is warmed
up (the one-off compile of descend's fast path is reported separately), then timed in interleaved rounds so that
a noisy machine affects all of them alike; the median round is reported, and ratios are taken within this run.
Last, a whole training step of a small MLP (61 -> 64 -> 10, batch 32: forward, backward, step), where the
optimizer's dispatch overhead, not memory, is what counts.

Reading the numbers: a step is bound by memory traffic. SGD-momentum must read p, g, b and write p, b: at least
20 bytes per float32 entry (200 MB a step at 10M); torch's default moves 32 (b·μ, + g, p − α b: three passes), so
no implementation can beat it by more than 32/20 = 1.6x at the same bandwidth, and 3x is out of reach. Adam's
minimum is 28 bytes (read p, g, m, v; write p, m, v). With many tensors of 100k entries the compiled path also pays
fixed costs: ~30 µs of guards and wrappers per compiled call, which is why it compiles chunks of ``CHUNK`` tensors
per call (descend.optim.fast), plus a few µs per tensor inside a call; 100 small tensors cost descend ~1.5 ms a step
against ~0.7 ms for torch's fused Adam.

    .venv/bin/python benchmarks/optim_step.py [--numel 10000000] [--rounds 7] [--steps 5] [--only small]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

import descend.optim as D

Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def contenders(algo: str) -> dict[str, Factory]:
    if algo == "adam":
        return {
            "descend (default)": lambda ps: D.Adam(ps, lr=1e-3),
            "descend (readable)": lambda ps: D.Adam(ps, lr=1e-3, compile=False),
            "descend (compiled)": lambda ps: D.Adam(ps, lr=1e-3, compile=True),
            "torch default": lambda ps: torch.optim.Adam(ps, lr=1e-3),
            "torch foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
            "torch fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        }
    return {
        "descend (default)": lambda ps: D.SGD(ps, lr=1e-3, momentum=0.9),
        "descend (readable)": lambda ps: D.SGD(ps, lr=1e-3, momentum=0.9, compile=False),
        "descend (compiled)": lambda ps: D.SGD(ps, lr=1e-3, momentum=0.9, compile=True),
        "torch default": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9),
        "torch foreach": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True),
        "torch fused": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, fused=True),
    }


def timed(steps_by_name: dict[str, Callable[[], object]], rounds: int, steps: int) -> dict[str, tuple[float, float]]:
    """Per contender: (median over interleaved rounds of the time of one call, time of the first two calls)."""
    first = {}
    for name, step in steps_by_name.items():
        t0 = time.perf_counter()
        step()
        step()
        first[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: (statistics.median(times[name]), first[name]) for name in steps_by_name}


def bench(algo: str, numel: int, tensors: int, rounds: int, steps: int) -> dict[str, tuple[float, float]]:
    gen = torch.Generator().manual_seed(0)
    size = numel // tensors
    made: dict[str, Callable[[], object]] = {}
    for name, make in contenders(algo).items():
        ps = [torch.nn.Parameter(torch.randn(size, generator=gen)) for _ in range(tensors)]
        for p in ps:
            p.grad = torch.randn(size, generator=gen) * 1e-2
        made[name] = make(ps).step
    return timed(made, rounds, steps)


def bench_small(rounds: int, steps: int) -> dict[str, tuple[float, float]]:
    """One training step of a 61 -> 64 -> 10 MLP on a batch of 32, per optimizer (same data, same init)."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 61, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    makers: dict[str, Factory] = {
        "descend Adam (default)": lambda ps: D.Adam(ps, lr=1e-3),
        "descend Adam (readable)": lambda ps: D.Adam(ps, lr=1e-3, compile=False),
        "descend Adam (compiled)": lambda ps: D.Adam(ps, lr=1e-3, compile=True),
        "torch Adam default": lambda ps: torch.optim.Adam(ps, lr=1e-3),
        "torch Adam fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
    }
    made: dict[str, Callable[[], object]] = {}
    for name, make in makers.items():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(61, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        opt = make(list(model.parameters()))

        def train_step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        made[name] = train_step
    return timed(made, rounds, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--only", choices=["large", "small"], default=None, help="run one part only")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, Python {platform.python_version()}, "
          f"torch {torch.__version__}")
    for algo in ("adam", "sgd-momentum") if args.only != "small" else ():
        for tensors in (1, 100):
            res = bench(algo, args.numel, tensors, args.rounds, args.steps)
            base = res["torch default"][0]
            fused = res["torch fused"][0]
            print(f"\n{algo}, {args.numel:,} parameters in {tensors} tensor(s)")
            print(f"| {'optimizer':<20} | step ms | torch default / this | this / torch fused | first 2 steps s |")
            print("|---|---:|---:|---:|---:|")
            for name, (t, warm) in res.items():
                print(f"| {name:<20} | {t * 1e3:7.1f} | {base / t:6.2f} | {t / fused:6.2f} | {warm:6.2f} |")
    if args.only != "large":
        res = bench_small(args.rounds, 200)
        base = res["torch Adam default"][0]
        print("\nsmall MLP 61 -> 64 -> 10, batch 32: one training step (forward, backward, Adam step)")
        print(f"| {'optimizer':<23} | step us | torch default / this | first 2 steps s |")
        print("|---|---:|---:|---:|")
        for name, (t, warm) in res.items():
            print(f"| {name:<23} | {t * 1e6:7.1f} | {base / t:6.2f} | {warm:6.2f} |")


if __name__ == "__main__":
    main()
