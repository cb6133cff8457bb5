"""``descend sample``: text from a run trained on a text corpus."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["sample"]


@click.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prompt", default="", help="Text to continue (characters of the training corpus). Default: a newline.")
@click.option("--tokens", type=click.IntRange(min=0), default=500, show_default=True, help="Tokens to write.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Below 1 sharper, above 1 flatter.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Draw from the k likeliest tokens only.")
@click.option("--seed", type=int, default=None, help="Seed of the draws (the same seed writes the same text).")
def sample(run: Path, prompt: str, tokens: int, temperature: float, top_k: int | None, seed: int | None) -> None:
    """Print PROMPT followed by text the language model of RUN (a run folder or its model/ folder) writes."""
    from descend.sampling import sample as write

    click.echo(write(run, prompt, tokens=tokens, temperature=temperature, top_k=top_k, seed=seed))
