"""Entry point of the ``descend`` command."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="descend")
def cli() -> None:
    """Train models by gradient descent, and see what the descent did."""


@cli.command()
def demo() -> None:
    """Run the optimizers on the Rosenbrock function and print where each ended."""
    from descend.cli._demo import run_demo

    run_demo()


def main() -> None:
    cli()
