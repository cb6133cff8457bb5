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
        [--fused-only] [--threads N]

``--fused-only`` times descend's default against torch's fused kernels alone (the must-show ratio, in a few
minutes on a loaded machine); the load average is printed before and after, since a loaded machine slows the
multithreaded kernels of both sides, not always alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

import descend.optim as D

Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def contenders(algo: str, fused_only: bool = False) -> dict[str, Factory]:
    every = _contenders(algo)
    return {k: v for k, v in every.items() if k in ("descend (default)", "torch fused")} if fused_only else every


def _contenders(algo: str) -> dict[str, Factory]:
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


def bench(algo: str, numel: int, tensors: int, rounds: int, steps: int,
          fused_only: bool = False) -> dict[str, tuple[float, float]]:
    gen = torch.Generator().manual_seed(0)
    size = numel // tensors
    made: dict[str, Callable[[], object]] = {}
    for name, make in contenders(algo, fused_only).items():
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


def bench_paths(algo: str, numel: int, tensors: int, rounds: int, steps: int) -> dict[str, tuple[float, float]]:
    """descend's default step with each of the fast path's reaches into torch's internals switched off in turn.

    - "dynamo calls": every call of a compiled chunk through plain torch.compile (dynamo's frame evaluation and
      guards, inductor's size asserts), instead of inductor's compiled function called directly once compiled
      (``_Direct``: a capturing backend and the graph's input sources, both torch internals);
    - "tensor guards": as "dynamo calls", with guards on the tensors alone (``keep_tensor_guards_unsafe``) and
      no size asserts, as fit's compiled step has them (the optimizer's chunks had them before direct calls);
    - "size asserts": direct calls, with the size and stride asserts inductor's wrapper makes of every input on
      every call (``size_asserts=True``, inductor's default);
    - "no duck sizes": chunks of equally sized tensors compiled like the others (a size symbol per tensor), not
      with the private ``use_duck_shape`` switch (one symbol per chunk);
    - "no chunks": one compiled call per tensor (``chunk=1``) instead of ``CHUNK`` tensors per call.
    """
    import descend.optim.fast as fast

    plain_compile = fast.compile_own

    def plain(fn: Callable[..., object], *, dynamic: bool | None, tensor_guards: bool = True,
              capture: object = None) -> object:
        return plain_compile(fn, dynamic=dynamic, tensor_guards=False)

    def guarded(fn: Callable[..., object], *, dynamic: bool | None, tensor_guards: bool = True,
                capture: object = None) -> object:
        return plain_compile(fn, dynamic=dynamic, tensor_guards=True)

    capturing = fast._capturing

    def asserting(into: list[tuple[object, list[str], list[object]]]) -> Callable[..., object]:
        backend = capturing(into)
        return lambda gm, example_inputs, options=None: backend(gm, example_inputs)

    def with_asserts(fn: Callable[..., object], *, dynamic: bool | None, tensor_guards: bool = True,
                     capture: object = None) -> object:
        fast._capturing = asserting  # type: ignore[assignment]
        try:
            return plain_compile(fn, dynamic=dynamic, tensor_guards=tensor_guards, capture=capture)  # type: ignore[arg-type]
        finally:
            fast._capturing = capturing  # type: ignore[assignment]

    swaps = {"dynamo calls": plain, "tensor guards": guarded, "size asserts": with_asserts}

    make = contenders(algo)["descend (default)"]
    gen = torch.Generator().manual_seed(0)
    size = numel // tensors
    made: dict[str, Callable[[], object]] = {}
    for name in ("default", "dynamo calls", "tensor guards", "size asserts", "no duck sizes", "no chunks",
                 "torch fused"):
        ps = [torch.nn.Parameter(torch.randn(size, generator=gen)) for _ in range(tensors)]
        for p in ps:
            p.grad = torch.randn(size, generator=gen) * 1e-2
        if name == "torch fused":
            made[name] = contenders(algo)["torch fused"](ps).step
            continue
        opt = make(ps)
        opt._fast = fast.FastRules(compile=True, chunk=1 if name == "no chunks" else None)  # type: ignore[attr-defined]
        if name == "no duck sizes":
            opt._fast._uniform = opt._fast._fn  # type: ignore[attr-defined]
        if name in swaps:
            def step(opt: torch.optim.Optimizer = opt, swap: Callable[..., object] = swaps[name]) -> None:
                fast.compile_own = swap  # type: ignore[assignment]
                try:
                    opt.step()
                finally:
                    fast.compile_own = plain_compile
            made[name] = step
        else:
            made[name] = opt.step
    return timed(made, rounds, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--only", choices=["large", "small"], default=None, help="run one part only")
    ap.add_argument("--fused-only", action="store_true", help="descend's default against torch fused, nothing else")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--speed-paths", action="store_true",
                    help="the gain of each of the fast path's reaches into torch's internals, on 100 tensors")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"Python {platform.python_version()}, torch {torch.__version__}, load average {_load()} at start")
    if args.speed_paths:
        for algo in ("adam", "sgd-momentum"):
            res = bench_paths(algo, args.numel, 100, args.rounds, args.steps)
            base = res["default"][0]
            print(f"\n{algo}, {args.numel:,} parameters in 100 tensors: descend's default with one speed path off")
            print(f"| {'variant':<14} | step ms | this / default | this / torch fused | first 2 steps s |")
            print("|---|---:|---:|---:|---:|")
            for name, (t, warm) in res.items():
                print(f"| {name:<14} | {t * 1e3:7.1f} | {t / base:6.3f} | {t / res['torch fused'][0]:6.3f} | "
                      f"{warm:6.2f} |")
        print(f"load average {_load()} at the end")
        return
    summary = []
    for algo in ("adam", "sgd-momentum") if args.only != "small" else ():
        for tensors in (1, 100):
            res = bench(algo, args.numel, tensors, args.rounds, args.steps, args.fused_only)
            fused = res["torch fused"][0]
            base = res["torch default"][0] if "torch default" in res else fused
            print(f"\n{algo}, {args.numel:,} parameters in {tensors} tensor(s)")
            print(f"| {'optimizer':<20} | step ms | torch default / this | this / torch fused | first 2 steps s |")
            print("|---|---:|---:|---:|---:|")
            for name, (t, warm) in res.items():
                print(f"| {name:<20} | {t * 1e3:7.1f} | {base / t:6.2f} | {t / fused:6.2f} | {warm:6.2f} |")
            summary.append(f"{algo}, {tensors} x {args.numel // tensors:,}: descend default / torch fused "
                           f"{res['descend (default)'][0] / fused:.3f}")
    if summary:
        print("\n" + "\n".join(summary))
    if args.only != "large":
        res = bench_small(args.rounds, 200)
        base = res["torch Adam default"][0]
        print("\nsmall MLP 61 -> 64 -> 10, batch 32: one training step (forward, backward, Adam step)")
        print(f"| {'optimizer':<23} | step us | torch default / this | first 2 steps s |")
        print("|---|---:|---:|---:|")
        for name, (t, warm) in res.items():
            print(f"| {name:<23} | {t * 1e6:7.1f} | {base / t:6.2f} | {warm:6.2f} |")
    print(f"load average {_load()} at the end")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
