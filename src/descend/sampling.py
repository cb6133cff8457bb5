"""``descend.sample``: text from a trained language model, one token at a time.

Each next token is drawn from :math:`\\mathrm{softmax}(f / \\tau)` over the ``top_k`` likeliest tokens, :math:`f`
the model's logits for the last position and :math:`\\tau` = ``temperature``; the model sees at most its
``block`` last tokens. The generator is seeded, so the same seed gives the same text.

Example:
    >>> import tempfile, torch
    >>> from descend.data.text import Vocabulary
    >>> from descend.models import GPT
    >>> from descend.train.saved import save_model
    >>> from types import SimpleNamespace
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_model(GPT(3, layers=1, heads=1, dim=8, block=4), folder, task="multiclass",
    ...                data=SimpleNamespace(vocabulary=Vocabulary("char", ("a", "b", "c"))))
    >>> text = sample(folder, "ab", tokens=5, seed=1)
    >>> len(text), text == sample(folder, "ab", tokens=5, seed=1)
    (7, True)
"""

from __future__ import annotations

import os
import secrets

import torch

from descend.errors import ConfigError, ModelFolderError

__all__ = ["sample"]


def sample(run: str | os.PathLike[str], prompt: str = "", *, tokens: int = 500, temperature: float = 1.0,
           top_k: int | None = None, seed: int | None = None) -> str:  # fmt: skip
    """The ``prompt`` followed by ``tokens`` tokens the language model saved in ``run`` (a run folder or its
    ``model/``) writes. ``temperature`` > 0 (below 1 sharper, above 1 flatter), ``top_k`` an int >= 1 or None
    (every token), ``seed`` an int or None (a fresh draw). An empty prompt starts from a newline (or the
    vocabulary's first token)."""
    from descend.data.text import Vocabulary
    from descend.models.transformer import generate
    from descend.train.saved import load

    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ConfigError(f"tokens: invalid tokens={tokens!r}; expected an int >= 0")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ConfigError(f"temperature: invalid temperature={temperature!r}; expected a number > 0")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k: invalid top_k={top_k!r}; expected an int >= 1 or None")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed: invalid seed={seed!r}; expected an int or None")
    saved = load(run)
    if "vocabulary" not in saved.meta:
        raise ModelFolderError(f"sample: the model in {str(run)!r} is a {saved.meta['model']['class']} trained on a "
                               f"{saved.task} table, not a language model; expected a run trained on a text corpus "
                               "(descend train corpus.txt --model gpt:...)")  # fmt: skip
    vocab = Vocabulary.from_dict(saved.meta["vocabulary"])
    block = getattr(saved.model, "block", None)
    if not isinstance(block, int):
        raise ModelFolderError(f"sample: the model in {str(run)!r} has no block (context length); expected a GPT")
    if prompt:
        ids = vocab.encode(prompt)
    else:
        ids = torch.tensor([vocab.symbols.index("\n") if "\n" in vocab.symbols else 10 if vocab.level == "byte" else 0])
    generator = torch.Generator().manual_seed(secrets.randbelow(2**63) if seed is None else seed)
    new = generate(saved.model, ids, tokens, block=block, temperature=float(temperature), top_k=top_k,
                   generator=generator)  # fmt: skip
    return prompt + vocab.decode(new)
