"""Entry point of the ``descend`` command. Parses, calls the library, maps errors to exit codes.

Exit codes: 0 success; 2 a usage error or bad input (one line on stderr, no traceback): click's usage errors,
every :class:`descend.errors.DescendError` (bad data, options, folders) and files that cannot be read or
written; 1 an internal error (a bug: Python's traceback, then one line saying so).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from descend.cli._evaluate import evaluate
from descend.cli._explore import compare, landscape, report, runs
from descend.cli._output import Out, output_options
from descend.cli._predict import predict
from descend.cli._sample import sample
from descend.cli._search import search
from descend.cli._train import lr_find, train
from descend.errors import DescendError
from descend.train.options import OPTIONS

__all__ = ["cli", "main"]

DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
MODELS = ("mlp", "softmax", "logistic", "linear", "svm")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(prefix: str, message: str, code: int) -> None:
    if os.environ.get("RANK", "0") in ("", "0"):  # under torchrun every process fails alike; process 0 says why
        click.echo(f"{prefix}: error: {_one_line(message)}", err=True)
    sys.exit(code)


class DescendGroup(click.Group):
    """A group whose ``main`` turns every error into an exit code and at most one line on stderr."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        sub = next((w for w in words if w in self.commands), None)
        name = f"{prog_name or 'descend'}{' ' + sub if sub else ''}"
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else name
            hint = f" (see '{where} --help')"
            _fail(where, e.format_message() + hint, 2)
        except click.ClickException as e:  # BadInput and click's FileError: the user's input; an interrupted run
            _fail(name, e.format_message(), e.exit_code if e.exit_code == 130 else 2)
        except click.exceptions.Abort:  # Ctrl-C outside a run (click turns KeyboardInterrupt into Abort)
            _fail(name, "interrupted", 130)
        except DescendError as e:
            _fail(name, str(e), 2)
        except OSError as e:  # a file the user named cannot be read or written
            _fail(name, f"{e.strerror or e}: {e.filename!r}" if e.filename else str(e), 2)
        except Exception as e:
            traceback.print_exc()
            _fail(name, f"internal error ({type(e).__name__}: {e}); this is a bug in descend, please report it", 1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(name="descend", cls=DescendGroup)
@click.version_option(package_name="descend")
def cli() -> None:
    """Train models by gradient descent, and see what the descent did.

    Start with `descend demo`; then `descend train DATA --target COL`. Every command has --help.
    """


@cli.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True, help="Built-in dataset.")
@click.option("--model", type=click.Choice(MODELS), default="mlp", show_default=True, help="Model to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=OPTIONS["epochs"].default, show_default=True,
              help="Most epochs to train.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of split, init, order.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder to write (must not exist). Default: runs/demo-<dataset>-<model>-<time>.",
)
@output_options
def demo(dataset: str, model: str, epochs: int, seed: int, out: Path | None, quiet: bool, as_json: bool) -> None:
    """Train a model on a built-in dataset (an MLP on digits by default), print its progress and a summary,
    and write the run folder with its report.html."""
    from descend.cli._demo import run_demo

    o = Out(quiet=quiet, as_json=as_json)
    o.result(run_demo(o, dataset=dataset, model=model, epochs=epochs, out=out, seed=seed))


for command in (train, predict, evaluate, lr_find, compare, landscape, report, runs, search, sample):
    cli.add_command(command)


def main() -> None:
    cli()

