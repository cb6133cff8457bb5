"""A text corpus as fit's data: the corpus read, the language model built for its vocabulary, the blocks cut.

The model decides the block length (a GPT's ``block``), so for text the model is built before the batches: the
vocabulary size is both its inputs and outputs. Training batches are :class:`descend.data.text.TextBlocks`
(random blocks, drawn from the seed, resumable); each epoch (by default as many steps as draw the training
text's length in tokens) ends with the validation loss on a fixed, evenly spaced sample of validation blocks.

Example:
    >>> from descend.data.text import TextCorpus
    >>> corpus = TextCorpus.from_text("abcabcabd" * 40)
    >>> data, model = text_data(corpus, "gpt:layers=1,heads=1,dim=8,block=16", batch_size=4, seed=0, settings={})
    >>> data.task, data.n_classes, len(data.stream), tuple(data.X.shape)
    ('multiclass', 4, 6, (2048, 16))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from descend import models
from descend.data.text import TextBlocks, TextCorpus, is_text, read_text, validation_blocks
from descend.errors import ConfigError
from descend.train.options import BATCH_SIZE
from descend.train.setup import TrainData

__all__ = ["SAMPLE_BLOCKS", "VAL_BLOCKS", "is_text", "text_data"]

#: blocks of validation text evaluated at the end of each epoch (nanoGPT evaluates 20 batches of 12)
VAL_BLOCKS = 256
#: training blocks held as ``data.X`` for what needs rows in memory: the range test of lr="auto" (enough that its
#: sweeps do not memorise them), the sharpness monitor's fixed batch, the probe of the output shape
SAMPLE_BLOCKS = 2048


def _model(spec: Any, vocab: int, settings: dict[str, Any]) -> nn.Module:
    if isinstance(spec, str):
        model: Any = models.from_spec(spec, **settings)
    elif isinstance(spec, dict):
        model = models.from_config({**spec, **settings})
    else:
        model = spec
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: invalid model {spec!r}; expected a language model (e.g. gpt:layers=4,heads=4,"
                          "dim=128,block=64) or a torch.nn.Module")  # fmt: skip
    if isinstance(model, models.Model):
        if "multiclass" not in model.tasks or getattr(model, "input_dtype", None) != torch.long:
            raise ConfigError(f"model: {type(model).__name__} does not read token ids; expected a language model for "
                              "a text corpus (e.g. gpt:layers=4,heads=4,dim=128,block=64)")  # fmt: skip
        if not model.built:
            model.build(vocab, vocab)
        elif model.out_features != vocab:
            raise ConfigError(f"model: {type(model).__name__} has {model.out_features} outputs but the corpus has "
                              f"{vocab} tokens; expected a model built for this vocabulary, or one fit builds")  # fmt: skip
    if getattr(model, "block", None) is None:
        raise ConfigError(f"model: {type(model).__name__} has no block attribute (its context length in tokens); "
                          "expected a language model with one, so text can be cut into blocks of that length")  # fmt: skip
    return model


def text_data(source: Any, spec: Any, *, batch_size: int | str | None, seed: int, settings: dict[str, Any],
              validation: Any = None, level: str = "char") -> tuple[TrainData, nn.Module]:  # fmt: skip
    """The :class:`TrainData` and model for a text ``source`` (a :class:`TextCorpus`, a ``.txt`` path or several).

    ``validation``: the fraction of the text, from its end, that validates (None: 0.1). ``batch_size``: blocks
    per batch (None: 32; ``"full"`` does not apply to text).
    """
    if validation is None:
        validation = 0.1
    if isinstance(source, TextCorpus):
        corpus = source
    else:
        corpus = read_text(source, level=level, validation=validation)
    if batch_size == "full":
        raise ConfigError("batch_size: 'full' does not apply to a text corpus (its batches are random blocks); "
                          "expected an int >= 1, blocks per batch")  # fmt: skip
    if batch_size is None:
        batch_size = BATCH_SIZE
    model = _model(spec, corpus.vocabulary.size, settings)
    block = int(getattr(model, "block"))  # noqa: B009 (checked above; any module with a block works)
    stream = TextBlocks(corpus.train, block=block, batch_size=int(batch_size), seed=seed)
    val = validation_blocks(corpus.val, block=block, count=VAL_BLOCKS) if len(corpus.val) else None
    # the sample draws from its own generator: the training batches stay those of the seed alone
    sample = TextBlocks(corpus.train, block=block, batch_size=SAMPLE_BLOCKS, seed=seed + 1, steps=1)
    X, y = next(iter(sample))
    data = TrainData(X, y, X[:0], y[:0], "multiclass", corpus.vocabulary.size, corpus, stream=stream, val_stream=val)
    return data, model
