"""``descend demo``: train a model on a built-in dataset, print its progress and a summary, keep the run folder."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import click

from descend.train import Callback, TrainState

__all__ = ["EchoProgress", "run_demo"]


class EchoProgress(Callback):
    """Print one line every ``every`` epochs (and the last), for output that is not a terminal."""

    def __init__(self, every: int = 5) -> None:
        self.every = every

    def on_epoch_end(self, state: TrainState) -> None:
        row = state.row
        epoch = int(row["epoch"])
        if epoch % self.every and epoch != 1 and state.stop is None:
            return
        shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("loss", "accuracy", "r2")))
        click.echo(f"epoch {epoch:>3}  {shown}")


def run_demo(*, dataset: str, model: str, epochs: int, out: Path | None, seed: int) -> Path:
    import descend
    from descend.data import DataWarning, load_dataset, prepare

    run_dir = out or Path("runs") / f"demo-{dataset}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = prepare(load_dataset(dataset), validation=0.2, seed=seed)
    click.echo(
        f"{dataset}: {len(data.X_train)} training rows, {len(data.X_val)} validation rows, {data.n_features} "
        f"features, task {data.task}; model {model}, Adam, batch 32, up to {epochs} epochs"
    )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = descend.fit(
            model, data, epochs=epochs, seed=seed, run_dir=run_dir, callbacks=[EchoProgress()], progress=False
        )
    seconds = time.perf_counter() - start
    for w in caught:
        if not issubclass(w.category, DataWarning):
            click.echo(f"warning: {w.message}", err=True)
    final: dict[str, Any] = result.final
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if k.startswith("val_"))
    click.echo(
        f"stopped: {result.stop_reason} after {result.epochs} epochs ({result.steps} steps, {seconds:.1f} s); "
        f"converged: {'yes' if result.converged else 'no'}"
    )
    if result.best_epoch is not None:
        click.echo(f"best epoch {result.best_epoch} (weights restored): {metrics}")
    else:
        click.echo(f"final: {metrics}")
    click.echo(f"run folder: {run_dir}")
    return run_dir
