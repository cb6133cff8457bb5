"""Text corpora and the GPT language model: data errors, seeded blocks that resume, causality, the JSON round
trip, training, resume bit for bit, sampling, and the command line."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import descend
from descend.cli.main import cli
from descend.data.errors import DataFileError, EmptyTableError, EncodingError, FileFormatError
from descend.data.text import TextBlocks, TextCorpus, Vocabulary, read_text, validation_blocks
from descend.errors import ConfigError, DataError, ModelFolderError
from descend.models import GPT, from_config, from_spec
from descend.train.fit import fit
from tests.test_run import Crash

TINY = "gpt:layers=1,heads=2,dim=16,block=8"
TEXT = "the cat sat on the mat. the dog sat on the log. " * 12


@pytest.fixture()
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _quiet_fit(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(*args, progress=False, **kwargs)


# -- data ------------------------------------------------------------------------------------------------------


def test_corpus_splits_by_position_with_the_vocabulary_of_the_text() -> None:
    c = TextCorpus.from_text("abcdefghij", validation=0.2)
    assert c.vocabulary.decode(c.train) == "abcdefgh" and c.vocabulary.decode(c.val) == "ij"
    assert c.vocabulary.symbols == tuple("abcdefghij")


def test_byte_level_reads_any_language() -> None:
    v = TextCorpus.from_text("héllo wörld 日本", level="byte").vocabulary
    assert v.size == 256 and v.decode(v.encode("日本 ö")) == "日本 ö"
    assert Vocabulary.from_dict(json.loads(json.dumps(v.to_dict()))) == v


@pytest.mark.parametrize(("content", "error", "words"), [
    (b"", EmptyTableError, "empty"),
    (b"PK\x03\x04\x00\x00binary", FileFormatError, "NUL bytes"),
    (b"caf\xe9 au lait", EncodingError, "not utf-8"),
])  # fmt: skip
def test_read_text_refuses_what_is_not_text(tmp_path: Path, content: bytes, error: type, words: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(error, match=words):
        read_text(path)


def test_a_block_longer_than_the_text_is_refused() -> None:
    c = TextCorpus.from_text("short text", validation=0.0)
    with pytest.raises(DataFileError, match=r"block=64 needs 65 tokens of training text .* holds 10"):
        TextBlocks(c.train, block=64, batch_size=2)
    with pytest.raises(DataError, match="block=64"):
        _quiet_fit("gpt:layers=1,heads=1,dim=8,block=64", c, max_steps=1)


def test_blocks_are_the_text_shifted_by_one_and_drawn_from_the_seed() -> None:
    tokens = torch.arange(1000)
    a, b = TextBlocks(tokens, block=16, batch_size=4, seed=3), TextBlocks(tokens, block=16, batch_size=4, seed=3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ya, xa + 1)  # arange: the next token is the token plus one
    other = next(iter(TextBlocks(tokens, block=16, batch_size=4, seed=4)))[0]
    assert not torch.equal(other, next(iter(TextBlocks(tokens, block=16, batch_size=4, seed=3)))[0])


def test_blocks_resume_at_the_next_batch_across_epochs() -> None:
    tokens = torch.arange(500)
    full = TextBlocks(tokens, block=8, batch_size=3, seed=0, steps=5)
    expected = [x for _ in range(3) for x, _ in full]
    part = TextBlocks(tokens, block=8, batch_size=3, seed=0, steps=5)
    seen = [x for x, _ in part]  # epoch 1
    it = iter(part)
    seen += [next(it)[0], next(it)[0]]  # two batches into epoch 2
    resumed = TextBlocks(tokens, block=8, batch_size=3, seed=0, steps=5)
    resumed.load_state_dict(part.state_dict())
    seen += [x for x, _ in resumed] + [x for x, _ in resumed]
    assert len(seen) == len(expected) and all(torch.equal(s, e) for s, e in zip(seen, expected, strict=True))


def test_validation_blocks_are_fixed_and_spread_over_the_text() -> None:
    batches = validation_blocks(torch.arange(1000), block=10, count=50, batch_size=16)
    X = torch.cat([x for x, _ in batches])
    assert X.shape == (50, 10) and int(X[0, 0]) == 0 and int(X[-1, -1]) == 998
    assert all(torch.equal(x, x2) for (x, _), (x2, _) in zip(batches, validation_blocks(
        torch.arange(1000), block=10, count=50, batch_size=16), strict=True))


# -- the model -------------------------------------------------------------------------------------------------


def test_changing_a_later_token_never_changes_an_earlier_output() -> None:
    torch.manual_seed(0)
    model = GPT(13, layers=2, heads=2, dim=16, block=12)
    x = torch.randint(0, 13, (3, 12))
    for mode in (model.eval, model.train):
        mode()
        base = model(x)
        for t in range(11):
            changed = x.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 1 + torch.arange(11 - t)) % 13
            out = model(changed)
            assert torch.equal(out[:, : t + 1], base[:, : t + 1]), t
            assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])


def test_json_round_trip_rebuilds_identical_logits(tmp_path: Path) -> None:
    model = from_spec("gpt:layers=2,heads=2,dim=16,block=8,bias=true").build(7, 7).eval()
    config = json.loads(json.dumps(model.config()))
    twin = from_config(config).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randint(0, 7, (2, 8))
    assert torch.equal(model(x), twin(x))
    assert config["class"] == "GPT" and config["block"] == 8 and config["in_features"] == 7
    assert [n for n in model.state_dict() if n.endswith("embed.weight") or "head" in n] == ["net.embed.weight"]


def test_gpt_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="dim=10 with heads=4"):
        GPT(5, heads=4, dim=10)
    with pytest.raises(ConfigError, match="longer than the model's block=4"):
        GPT(5, layers=1, heads=1, dim=4, block=4)(torch.zeros(1, 5, dtype=torch.long))


# -- training --------------------------------------------------------------------------------------------------


def test_training_learns_a_deterministic_sequence(corpus_file: Path) -> None:
    # every character of "abcdefg..." repeated has one successor: a learned model predicts it almost surely
    corpus = TextCorpus.from_text("abcdefghijklmnopqrstuvwxyz" * 40)
    result = _quiet_fit(TINY, corpus, optimizer="adamw", lr=1e-2, batch_size=16, max_steps=150, seed=0)
    assert result.history[0]["loss"] > 2.0  # about ln 26 = 3.26 at the start
    assert result.final["val_loss"] < 0.1 and result.final["val_accuracy"] > 0.97


def test_the_loss_is_the_mean_cross_entropy_per_token(corpus_file: Path) -> None:
    result = _quiet_fit(TINY, corpus_file, lr=1e-3, batch_size=4, max_steps=2, seed=0, validation=0.2)
    data = result.data
    X = torch.cat([x for x, _ in validation_blocks(data.val, block=8, count=256)])
    Y = torch.cat([y for _, y in validation_blocks(data.val, block=8, count=256)])
    with torch.no_grad():
        logits = result.model(X)
    manual = -torch.log_softmax(logits.double(), -1).gather(-1, Y.unsqueeze(-1)).mean()
    assert math.isclose(result.final["val_loss"], float(manual), rel_tol=1e-5)


def test_a_run_killed_mid_training_resumes_bit_exactly(corpus_file: Path, tmp_path: Path) -> None:
    options = dict(optimizer="adamw", lr=3e-3, batch_size=4, max_steps=30, checkpoint_every=4, seed=5,
                   health_every=5, sharpness_every=10)  # fmt: skip
    whole = _quiet_fit(TINY, corpus_file, run_dir=tmp_path / "whole", **options)
    with pytest.raises(KeyboardInterrupt):
        _quiet_fit(TINY, corpus_file, run_dir=tmp_path / "cut", callbacks=[Crash(10)], **options)
    resumed = _quiet_fit(TINY, corpus_file, resume=tmp_path / "cut", **options)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]


def test_sampling_with_a_seed_repeats(corpus_file: Path, tmp_path: Path) -> None:
    _quiet_fit(TINY, corpus_file, lr=3e-3, batch_size=8, max_steps=20, run_dir=tmp_path / "lm")
    a = descend.sample(tmp_path / "lm", "the ", tokens=40, temperature=0.8, top_k=5, seed=1)
    assert a.startswith("the ") and len(a) == 44
    assert a == descend.sample(tmp_path / "lm", "the ", tokens=40, temperature=0.8, top_k=5, seed=1)
    assert set(a) <= set(TEXT)
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        descend.sample(tmp_path / "lm", "THE", tokens=1)


# -- the command line ------------------------------------------------------------------------------------------


def test_cli_trains_on_a_text_file_and_samples_from_it(corpus_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(corpus_file), "--model", TINY, "--max-steps", "10",
                                      "--batch-size", "4", "--out", str(out), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model" / "model.json").read_text())["vocabulary"]["level"] == "char"
    sampled = CliRunner().invoke(cli, ["sample", str(out), "--prompt", "the", "--tokens", "12", "--seed", "1",
                                       "--temperature", "0.8", "--top-k", "3"])  # fmt: skip
    assert sampled.exit_code == 0 and sampled.output.startswith("the") and len(sampled.output) == 16


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = CliRunner().invoke(cli, ["train", str(empty), "--model", TINY, "--quiet"])
    assert result.exit_code == 2 and "empty" in result.output and len(result.output.strip().splitlines()) == 1
    table = tmp_path / "t.csv"
    table.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    run = tmp_path / "table-run"
    assert CliRunner().invoke(cli, ["train", str(table), "--target", "y", "--epochs", "2", "--out", str(run),
                                    "--quiet"]).exit_code == 0  # fmt: skip
    result = CliRunner().invoke(cli, ["sample", str(run), "--prompt", "x"])
    assert result.exit_code == 2 and "not a language model" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_saved_language_model_refuses_sampling_without_vocabulary(tmp_path: Path) -> None:
    from descend.train.saved import save_model

    save_model(GPT(4, layers=1, heads=1, dim=4, block=4), tmp_path / "m", task="multiclass")
    with pytest.raises(ModelFolderError, match="not a language model"):
        descend.sample(tmp_path / "m", tokens=3)
