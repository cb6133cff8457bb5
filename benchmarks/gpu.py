"""The CUDA paths in one command: fit on the GPU against the same fit on the CPU, then steps per second.

Skipped (exit 0, with a message) where torch sees no CUDA device. Otherwise, on ``cuda`` (or ``--device``):

1. the same seeded fit of an MLP on scikit-learn's digits (10 epochs of Adam, float32) on the CPU and on the GPU:
   the two descents differ only by the order of floating-point sums (TF32 is off for matrix products by torch's
   default), so the final weights must agree to 1e-3 and the validation loss to 1e-3 relative;
2. a run started on the GPU, interrupted, and resumed on the CPU from its device-free checkpoint, ending with the
   same number of steps as an uninterrupted run;
3. a character GPT on a corpus (descend's own source files) for ``--steps`` steps in each precision (32, bf16,
   16-mixed): steps per second (the loop's own time, after a warm-up of ``--steps`` steps) and the loss reached;
4. gradient checkpointing: ``benchmarks/memory.py --device cuda`` (peak ``torch.cuda.max_memory_allocated``).

    .venv/bin/python benchmarks/gpu.py [--device cuda:0] [--steps 200]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import descend
from descend.train import Callback

TOLERANCE = 1e-3


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])


def same_fit(device: str) -> bool:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    data = (torch.tensor(X, dtype=torch.float32), torch.tensor(y))
    runs = [descend.fit("mlp:128,128", data, epochs=10, seed=0, tol=None, early_stopping=False, progress=False,
                        device=d) for d in ("cpu", device)]  # fmt: skip
    gap = float((_flat(runs[0].model) - _flat(runs[1].model)).abs().max())
    losses = [r.final["val_loss"] for r in runs]
    relative = abs(losses[0] - losses[1]) / abs(losses[0])
    ok = gap <= TOLERANCE and relative <= TOLERANCE
    print(f"1. same fit on cpu and {device}: weights differ by at most {gap:.2e}, validation loss "
          f"{losses[0]:.6f} against {losses[1]:.6f} ({relative:.1e} relative): {'ok' if ok else 'FAILED'}")
    return ok


class _Stop(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, state: Any) -> None:
        if state.step == self.at:
            raise KeyboardInterrupt


def resume_elsewhere(device: str, folder: Path) -> bool:
    X = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long()
    options: dict[str, Any] = {"epochs": 4, "seed": 0, "progress": False, "checkpoint_every": 5}
    with contextlib.suppress(KeyboardInterrupt):  # the interruption
        descend.fit("mlp:32", (X, y), run_dir=folder / "moved", device=device, callbacks=[_Stop(23)], **options)
    resumed = descend.fit("mlp:32", (X, y), resume=folder / "moved", device="cpu", **options)
    whole = descend.fit("mlp:32", (X, y), run_dir=folder / "whole", device=device, **options)
    ok = resumed.steps == whole.steps and next(resumed.model.parameters()).device.type == "cpu"
    gap = float((_flat(resumed.model) - _flat(whole.model)).abs().max())
    print(f"2. a run started on {device}, resumed on the cpu: {resumed.steps} steps like the whole run's "
          f"{whole.steps}, weights within {gap:.2e} of it: {'ok' if ok else 'FAILED'}")
    return ok


def throughput(device: str, steps: int, folder: Path) -> None:
    corpus = folder / "corpus.txt"
    source = Path(descend.__file__).parent
    corpus.write_text("".join(p.read_text() for p in sorted(source.rglob("*.py"))))
    print(f"3. character GPT (6 blocks, dim 384, context 256, batch 64) on {corpus.stat().st_size:,} characters, "
          f"{steps} steps after {steps} of warm-up, on {device} ({torch.cuda.get_device_name(device)}):")
    print("| precision | steps per second | loss at the end |")
    print("|---|---:|---:|")
    for precision in ("32", "bf16", "16-mixed"):
        clock = _Clock(steps, device)
        r = descend.fit("gpt:layers=6,dim=384,heads=6,block=256", str(corpus), batch_size=64, max_steps=2 * steps,
                        epochs=1000, seed=0, progress=False, diagnostics=False, device=device, precision=precision,
                        validation=0.05, callbacks=[clock])  # fmt: skip
        print(f"| {precision} | {steps / (clock.end - clock.start):.1f} | {r.history[-1]['loss']:.3f} |")


class _Clock(Callback):
    """The wall time from step ``warm`` to step ``2 * warm``, the GPU's queue drained at both ends."""

    def __init__(self, warm: int, device: str) -> None:
        self.warm, self.device = warm, device
        self.start = self.end = 0.0

    def on_step_end(self, state: Any) -> None:
        if state.step in (self.warm, 2 * self.warm):
            torch.cuda.synchronize(self.device)
            if state.step == self.warm:
                self.start = time.perf_counter()
            else:
                self.end = time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"benchmarks/gpu.py: skipped: torch {torch.__version__} sees no CUDA device on this machine")
        return 0
    warnings.simplefilter("ignore")
    print(f"{torch.cuda.get_device_name(args.device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ok = same_fit(args.device) and resume_elsewhere(args.device, Path(tmp))
        throughput(args.device, args.steps, Path(tmp))
    print("4. gradient checkpointing on the GPU:")
    memory = Path(__file__).with_name("memory.py")
    subprocess.run([sys.executable, str(memory), "--device", args.device], check=True)
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
