"""Text corpora for language models: a ``.txt`` file as tokens, split by position, cut into random blocks.

A corpus is read one token per character (``level="char"``: the vocabulary is the sorted set of characters
the text holds) or one per byte of its UTF-8 encoding (``level="byte"``: 256 symbols, any language, nothing
unseen). The last ``validation`` fraction of the tokens is the validation text, as nanoGPT splits its
Shakespeare; the split is by position, never shuffled, so no validation text leaks into a training block.

Training batches are :class:`TextBlocks`: ``batch_size`` blocks of ``block`` tokens at random offsets, the
target the same block shifted one token on. Each epoch's offsets are drawn at its start from a generator
seeded once, and the state (epoch, batches given, the generator at the epoch's start) is saved with a
checkpoint, so a resumed run trains on exactly the batches an uninterrupted one would.

Example:
    >>> corpus = TextCorpus.from_text("to be or not to be, that is the question. " * 20, validation=0.1)
    >>> corpus.vocabulary.size, len(corpus.train), len(corpus.val)
    (15, 756, 84)
    >>> corpus.vocabulary.decode(corpus.vocabulary.encode("to be"))
    'to be'
    >>> X, y = next(iter(TextBlocks(corpus.train, block=8, batch_size=4, seed=0)))
    >>> X.shape, bool((X[:, 1:] == y[:, :-1]).all())
    (torch.Size([4, 8]), True)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from descend.data.errors import (
    DataFileError,
    DataFileNotFoundError,
    DataOptionError,
    EmptyTableError,
    EncodingError,
    FileFormatError,
)

__all__ = ["LEVELS", "TextBlocks", "TextCorpus", "Vocabulary", "is_text", "read_text", "validation_blocks"]

LEVELS = ("char", "byte")
TEXT_SUFFIXES = (".txt",)


def is_text(source: Any) -> bool:
    """Whether ``source`` is a text corpus for a language model: a :class:`TextCorpus`, a path ending in ``.txt``,
    or a non-empty list of such paths."""
    if isinstance(source, TextCorpus):
        return True
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower() in TEXT_SUFFIXES
    return (isinstance(source, (list, tuple)) and len(source) > 0
            and all(isinstance(s, (str, os.PathLike)) and Path(s).suffix.lower() in TEXT_SUFFIXES for s in source))  # fmt: skip


@dataclass(frozen=True)
class Vocabulary:
    """The symbols of a corpus, token id = position: characters (``level="char"``) or the 256 bytes."""

    level: str
    symbols: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return 256 if self.level == "byte" else len(self.symbols)

    def encode(self, text: str) -> Tensor:
        """The token ids of ``text`` (a LongTensor); a character the vocabulary lacks is an error naming it."""
        if self.level == "byte":
            return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
        index = {c: i for i, c in enumerate(self.symbols)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise DataOptionError(f"text: {''.join(unknown)!r} not in the vocabulary of {self.size} characters; "
                                  "expected text made of the training corpus's characters")  # fmt: skip
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The text of token ids (bytes that do not form UTF-8 become U+FFFD)."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        if self.level == "byte":
            return bytes(values).decode("utf-8", errors="replace")
        return "".join(self.symbols[i] for i in values)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "symbols": "".join(self.symbols)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        return cls(str(d["level"]), tuple(str(d.get("symbols", ""))))


@dataclass
class TextCorpus:
    """Training and validation tokens (LongTensors) and their vocabulary; ``source`` names where they came from."""

    train: Tensor
    val: Tensor
    vocabulary: Vocabulary
    source: str = "<text>"

    @classmethod
    def from_text(cls, text: str, *, level: str = "char", validation: float = 0.1,
                  source: str = "<text>") -> TextCorpus:  # fmt: skip
        """Tokenise ``text`` and split it by position: the last ``validation`` fraction (in [0, 1)) validates."""
        if level not in LEVELS:
            raise DataOptionError(f"level: invalid level={level!r}; expected one of {', '.join(LEVELS)}")
        if isinstance(validation, bool) or not isinstance(validation, (int, float)) or not 0 <= validation < 1:
            raise DataOptionError(f"validation: invalid validation={validation!r}; expected a fraction in [0, 1) "
                                  "of the text, taken from its end")  # fmt: skip
        if not text:
            raise EmptyTableError(f"{source}: the text is empty; expected at least two characters")
        vocab = Vocabulary("byte") if level == "byte" else Vocabulary("char", tuple(sorted(set(text))))
        tokens = vocab.encode(text)
        cut = len(tokens) - int(len(tokens) * validation)
        return cls(tokens[:cut], tokens[cut:], vocab, source)


def read_text(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, level: str = "char",
              validation: float = 0.1, encoding: str = "utf-8") -> TextCorpus:  # fmt: skip
    """Read one or more text files (joined in the order given) as a :class:`TextCorpus`.

    Errors name the file: missing, a folder, empty, or not text (NUL bytes, or not in ``encoding``).
    """
    files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    parts = []
    for f in files:
        path = Path(f)
        if not path.exists():
            raise DataFileNotFoundError(f"{path}: no such file; expected a text file (.txt)")
        if path.is_dir():
            raise FileFormatError(f"{path}: is a folder; expected a text file (.txt)")
        raw = path.read_bytes()
        if not raw:
            raise EmptyTableError(f"{path}: the file is empty; expected text to train a language model on")
        if b"\x00" in raw[:65536]:
            raise FileFormatError(f"{path}: holds NUL bytes, so it is binary, not text; expected a text file")
        try:
            parts.append(raw.decode(encoding))
        except UnicodeDecodeError as e:
            raise EncodingError(f"{path}: byte {e.start} is not {encoding} ({raw[e.start:e.start + 1]!r}); expected "
                                f"text in {encoding}, or encoding= naming the file's own") from None  # fmt: skip
        except LookupError:
            raise DataOptionError(f"encoding: unknown encoding {encoding!r}; expected a Python codec name") from None
    source = str(files[0]) if len(files) == 1 else f"{files[0]} and {len(files) - 1} more"
    return TextCorpus.from_text("".join(parts), level=level, validation=validation, source=source)


def _check_block(tokens: Tensor, block: int, what: str) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise DataOptionError(f"block: invalid block={block!r}; expected an int >= 1 (tokens of context)")
    if len(tokens) < block + 1:
        raise DataFileError(f"block: block={block} needs {block + 1} tokens of {what} text (a block and its next "
                            f"token), but it holds {len(tokens)}; expected a shorter block or more text")  # fmt: skip


class TextBlocks:
    """Batches ``(X, y)`` of ``batch_size`` random blocks of ``block`` tokens from ``tokens``; ``y`` is ``X``
    one token on. An epoch is ``steps`` batches (by default as many as draw the text's length in tokens).

    Iterating gives the remaining batches of the current epoch; ``state_dict`` / ``load_state_dict`` resume at
    the next batch with the same offsets (see the module docstring).
    """

    def __init__(self, tokens: Tensor, *, block: int, batch_size: int, seed: int = 0,
                 steps: int | None = None) -> None:  # fmt: skip
        _check_block(tokens, block, "training")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataOptionError(f"batch_size: invalid batch_size={batch_size!r} for text; expected an int >= 1 "
                                  "(blocks per batch)")  # fmt: skip
        self.tokens, self.block, self.batch_size, self.seed = tokens, block, batch_size, seed
        self.steps = steps if steps is not None else max(1, -(-len(tokens) // (block * batch_size)))
        self._generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position, self.epoch_done = 0, 0, False
        self._epoch_rng = self._generator.get_state()
        self._offsets: Tensor | None = None
        self._span = torch.arange(block + 1)

    def __len__(self) -> int:
        return self.steps

    def _draw(self) -> Tensor:
        self._epoch_rng = self._generator.get_state()
        return torch.randint(len(self.tokens) - self.block, (self.steps, self.batch_size), generator=self._generator)

    def blocks(self, offsets: Tensor) -> tuple[Tensor, Tensor]:
        """The blocks starting at ``offsets`` and their targets."""
        window = self.tokens[offsets.unsqueeze(1) + self._span]
        return window[:, :-1], window[:, 1:]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.epoch_done:
            self.epoch, self.position, self.epoch_done, self._offsets = self.epoch + 1, 0, False, None
        if self._offsets is None:
            self._offsets = self._draw()
        while self.position < self.steps:
            offsets = self._offsets[self.position]
            self.position += 1
            yield self.blocks(offsets)
        self.epoch_done = True

    def state_dict(self) -> dict[str, Any]:
        return {"block": self.block, "batch_size": self.batch_size, "steps": self.steps, "seed": self.seed,
                "epoch": self.epoch, "position": self.position, "epoch_done": self.epoch_done,
                "rng_state": self._epoch_rng.clone()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("block", "batch_size", "steps"):
            if state.get(key) != getattr(self, key):
                raise DataOptionError(f"resume: the saved text batches have {key}={state.get(key)!r}, these "
                                      f"{key}={getattr(self, key)!r}; expected the same")  # fmt: skip
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self.epoch_done = bool(state["epoch_done"])
        self._generator.set_state(state["rng_state"])
        self._offsets = self._draw()

    def __repr__(self) -> str:
        return (f"TextBlocks({len(self.tokens)} tokens, block={self.block}, batch_size={self.batch_size}, "
                f"seed={self.seed}; epoch {self.epoch}, batch {self.position}/{self.steps})")  # fmt: skip


def validation_blocks(tokens: Tensor, *, block: int, count: int = 256, batch_size: int = 64) -> list[tuple[Tensor, Tensor]]:
    """A fixed sample of ``count`` blocks spread evenly over ``tokens`` (all of them when fewer fit), in batches
    ``(X, y)`` of ``batch_size``: the same blocks at every evaluation, so validation losses compare."""
    _check_block(tokens, block, "validation")
    last = len(tokens) - block - 1
    n = min(count, last + 1)
    offsets = torch.linspace(0, last, n).round().long() if n > 1 else torch.zeros(1, dtype=torch.long)
    span = torch.arange(block + 1)
    out = []
    for chunk in offsets.split(batch_size):
        window = tokens[chunk.unsqueeze(1) + span]
        out.append((window[:, :-1], window[:, 1:]))
    return out
