"""``descend demo``: train a model on a built-in dataset, print its progress and a summary, keep the run folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from descend.cli._output import Out
from descend.cli._train import default_run_dir, run_training

__all__ = ["run_demo"]


def run_demo(printer: Out, *, dataset: str, model: str, epochs: int, out: Path | None, seed: int) -> dict[str, Any]:
    """Train ``model`` with fit's defaults (Adam, batch 32, early stopping) on the built-in ``dataset``, with
    gradient health every 25 steps and sharpness every 250 (a short run, watched closely); return the JSON
    summary."""
    from descend.data import load_dataset

    run_dir = out or default_run_dir(Path("runs") / f"demo-{dataset}-{model}-{time.strftime('%Y%m%d-%H%M%S')}")
    table = load_dataset(dataset)
    command = {"dataset": dataset, "data": f"built-in dataset {dataset}", "target": table.target,
               "argv": ["demo", "--dataset", dataset, "--model", model, "--epochs", str(epochs), "--seed", str(seed)]}
    options = {"model": model, "data": table, "epochs": epochs, "seed": seed, "run_dir": Path(run_dir),
               "health_every": 25, "sharpness_every": 250}
    return run_training(printer, options, command=command, label=dataset)
