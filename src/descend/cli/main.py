"""Entry point of the ``descend`` command. Parses, calls the library, maps errors to exit codes."""

from __future__ import annotations

from pathlib import Path

import click

from descend.errors import DescendError

DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
MODELS = ("mlp", "softmax", "logistic", "linear", "svm")


@click.group()
@click.version_option(package_name="descend")
def cli() -> None:
    """Train models by gradient descent, and see what the descent did."""


@cli.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True, help="Built-in dataset.")
@click.option("--model", type=click.Choice(MODELS), default="mlp", show_default=True, help="Model to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True, help="Most epochs to train.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of split, init, order.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder to write (must not exist). Default: runs/demo-<dataset>-<model>-<time>.",
)
def demo(dataset: str, model: str, epochs: int, seed: int, out: Path | None) -> None:
    """Train a model on a built-in dataset (an MLP on digits by default), print its progress and a summary,
    and write the run folder."""
    from descend.cli._demo import run_demo

    try:
        run_demo(dataset=dataset, model=model, epochs=epochs, out=out, seed=seed)
    except DescendError as e:
        raise _bad_input(e) from e


class BadInput(click.ClickException):
    """Bad input: exit code 2 and one line on stderr (a bug keeps Python's traceback and exit code 1)."""

    exit_code = 2


def _bad_input(error: DescendError) -> click.ClickException:
    return BadInput(str(error))


def main() -> None:
    cli()
