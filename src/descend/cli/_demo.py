"""``descend demo``: train a model on a built-in dataset, print its progress and a summary, keep the run folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from descend.cli._output import Out
from descend.cli._train import default_run_dir, prepare_table, run_training

__all__ = ["run_demo"]


def run_demo(printer: Out, *, dataset: str, model: str, epochs: int, out: Path | None, seed: int) -> dict[str, Any]:
    """Train ``model`` (Adam, batch 32, early stopping) on the built-in ``dataset``, with gradient norms every 25
    steps and sharpness every 250; return the JSON summary."""
    from descend.data import load_dataset

    run_dir = out or default_run_dir(Path("runs") / f"demo-{dataset}-{model}-{time.strftime('%Y%m%d-%H%M%S')}")
    table = load_dataset(dataset)
    data = prepare_table(Out(quiet=True), table, target=None, task="auto", validation=0.2, seed=seed, scale="standard")
    header = (f"{dataset}: {len(data.X_train)} training rows, {len(data.X_val)} validation rows, {data.n_features} "
              f"features, task {data.task}; model {model}, Adam, batch 32, up to {epochs} epochs")
    command = {"dataset": dataset, "data": f"built-in dataset {dataset}", "target": table.target,
               "scale": "standard", "validation": 0.2, "argv": ["demo", "--dataset", dataset, "--model", model,
                                                                "--epochs", str(epochs), "--seed", str(seed)]}
    return run_training(
        printer, data=data, command=command, model=(model, {}), loss="auto", optimizer="adam", lr=None,
        schedule="constant", batch_size=32, epochs=epochs, early_stopping=None, patience=10, seed=seed,
        run_dir=Path(run_dir), resume=None, diagnostics=True, health_every=25, sharpness_every=250, header=header,
    )
