"""A character language model on Tiny Shakespeare: descend against nanoGPT's own training code, same config.

nanoGPT runs from an unmodified copy of ``../shared/reference/nanoGPT`` in a scratch folder: its
``prepare.py`` on the corpus, then ``train.py config/train_shakespeare_char.py`` with the CPU settings its README
gives (4 layers, 4 heads, 128 dims, block 64, batch 12, 2,000 iterations, AdamW 1e-3 with betas (0.9, 0.99),
weight decay 0.1 on the matrices, gradient clipping at 1, 100 warm-up steps and cosine decay to 1e-4, no
dropout, evaluations every 250 iterations on 20 batches). descend trains the same model with the same settings
through ``descend.fit`` on the ``.txt`` file (its default watching on: divergence guard, gradient health,
sharpness; validation on a fixed sample of 256 validation blocks at the end of each epoch of 1,308 steps). Each
side is a fresh ``python`` process, timed from outside (wall seconds, imports and evaluations included).

The losses: each side's own report (nanoGPT's validation loss at iteration 2,000, on 240 random blocks;
descend's val_loss, on its 256 fixed blocks), and one common measure: the cross-entropy per character of the
final model over every non-overlapping 64-character block of the validation text (1,742 blocks).
``--auto`` adds descend's ``lr="auto"`` with the warm-up-cosine schedule chosen for it (no learning rate given).

    .venv/bin/python benchmarks/char_lm.py --rounds 2 [--auto] [--threads auto|none|N] [--seed S] [--json out.json]

Rounds alternate nanoGPT and descend so that load from other work on the machine falls on both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "nanoGPT"
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
NANOGPT_FLAGS = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
                 "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                 "--lr_decay_iters=2000", "--dropout=0.0"]  # fmt: skip
SPEC = "gpt:layers=4,heads=4,dim=128,block=64"

DESCEND = """
import json, sys, time, warnings
start = time.perf_counter()
import descend
from descend.schedules import warmup_cosine
auto = sys.argv[2] == "auto"
threads = None if sys.argv[3] == "none" else sys.argv[3] if sys.argv[3] == "auto" else int(sys.argv[3])
warnings.simplefilter("ignore")
options = dict(optimizer="adamw", weight_decay=0.1, clip_norm=1.0, batch_size=12, max_steps=2000,
               optimizer_options={"betas": (0.9, 0.99), "weight_decay_mask": "matrices"},
               early_stopping=False, tol=None, seed=int(sys.argv[4]), progress=False, run_dir=sys.argv[1], overwrite=True,
               threads=threads)
if auto:
    options.update(lr="auto", schedule="warmup-cosine")
else:
    options.update(lr=warmup_cosine(1e-3, 2000, warmup_steps=100, min_lr=1e-4))
result = descend.fit(%(spec)r, %(corpus)r, **options)
wall = time.perf_counter() - start
print(json.dumps({"val_loss": result.final["val_loss"], "fit_wall": wall, "steps": result.steps,
                  "lr": None if result.lr_find is None else result.lr_find.lr}))
"""


def _load() -> float:
    return os.getloadavg()[0]


def _checked(side: str, command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command``; on failure raise with the end of its stderr, which would otherwise be lost."""
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def nanogpt(scratch: Path) -> dict[str, Any]:
    """Run nanoGPT's train.py in ``scratch`` (a prepared copy); its wall time and the losses it printed."""
    out = scratch / "out-shakespeare-char"
    shutil.rmtree(out, ignore_errors=True)
    load = _load()
    start = time.perf_counter()
    proc = _checked("nanoGPT", [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_FLAGS], cwd=scratch)
    wall = time.perf_counter() - start
    evals = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    val = float(evals[-1].split("val loss ")[1])
    return {"wall": wall, "val_loss": val, "load": load, "last_eval": evals[-1], "checkpoint": str(out / "ckpt.pt")}


def run_descend(run_dir: Path, auto: bool, threads: str, seed: int = 1337) -> dict[str, Any]:
    load = _load()
    start = time.perf_counter()
    code = DESCEND % {"spec": SPEC, "corpus": str(CORPUS)}
    proc = _checked("descend", [sys.executable, "-c", code, str(run_dir), "auto" if auto else "fixed", threads,
                                 str(seed)], cwd=ROOT)  # fmt: skip
    wall = time.perf_counter() - start
    return {"wall": wall, "load": load, "threads": threads, **json.loads(proc.stdout.strip().splitlines()[-1])}


def common_loss(model: Any, forward: Any) -> float:
    """Mean cross-entropy per character over every non-overlapping 64-block of the validation text."""
    import torch
    import torch.nn.functional as F

    from descend.data.text import read_text

    corpus = read_text(CORPUS)
    val = corpus.val
    n = (len(val) - 1) // 64
    X = val[: n * 64].view(n, 64)
    Y = val[1 : n * 64 + 1].view(n, 64)
    total = 0.0
    with torch.no_grad():
        for xb, yb in zip(X.split(128), Y.split(128), strict=True):
            logits = forward(model, xb)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum"))
    return total / (n * 64)


def nanogpt_common(scratch: Path, checkpoint: str) -> float:
    import torch

    sys.path.insert(0, str(scratch))
    from model import GPT, GPTConfig  # nanoGPT's own model.py

    ckpt = torch.load(checkpoint, map_location="cpu")
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    # nanoGPT's forward with targets gives every position's logits (without them only the last)
    return common_loss(model, lambda m, x: m(x, x)[0])


def descend_common(run_dir: Path) -> float:
    import descend

    saved = descend.load(run_dir)
    return common_loss(saved.model, lambda m, x: m(x))


def prepare_nanogpt() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="nanogpt-"))
    shutil.copytree(REFERENCE, scratch, dirs_exist_ok=True)
    shutil.copy(CORPUS, scratch / "data" / "shakespeare_char" / "input.txt")
    subprocess.run([sys.executable, "data/shakespeare_char/prepare.py"], cwd=scratch, capture_output=True, check=True)
    return scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--auto", action="store_true", help="also descend with lr='auto' and warmup-cosine")
    parser.add_argument("--only", choices=("nanogpt", "descend", "auto"), default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1337,
                        help="descend's seed (nanoGPT's, 1337, is written in its train.py, which runs unmodified)")
    parser.add_argument("--threads", default="auto",
                        help="descend's torch threads: auto (fit's default: 1 under 2**28 FLOPs a step), none (torch's "
                             "default, as nanoGPT runs) or a number")  # fmt: skip
    args = parser.parse_args()
    scratch = prepare_nanogpt()
    runs = Path(tempfile.mkdtemp(prefix="char-lm-"))
    rows: list[dict[str, Any]] = []
    sides = [args.only] if args.only else ["nanogpt", "descend", *(["auto"] if args.auto else [])]
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            if side == "nanogpt":
                row = nanogpt(scratch)
                row["common"] = nanogpt_common(scratch, row.pop("checkpoint"))
            else:
                run_dir = runs / f"{side}-{r}"
                row = run_descend(run_dir, auto=side == "auto", threads=args.threads, seed=args.seed)
                row["common"] = descend_common(run_dir)
            row.update(side=side, round=r + 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| side | round | val loss (own) | val loss (all val blocks) | wall s | load avg |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['side']} | {row['round']} | {row['val_loss']:.3f} | {row['common']:.3f} | {row['wall']:.1f} | "
              f"{row['load']:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
