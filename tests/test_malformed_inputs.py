"""Malformed input through the command line, one row of a table each: every one is refused, never fatal.

Each case builds its files in a fresh folder and runs ``descend train`` or ``descend predict`` there. Every case must
exit with code 2, print nothing on stdout and exactly one line on stderr (under 300 characters, no traceback) that
names the file (where there is one) and the place in it (line, column, byte, field), and leave nothing behind: no run
folder, no output file, no other new path. Library-level cases (one exception class each) are in
``tests/test_data_errors.py``; command-line usage errors in ``tests/test_cli_commands.py``.
"""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from descend.cli.main import cli

ROWS = 30
TRAIN = "a,b,c,y\n" + "".join(f"{i % 7}.5,{(i * 3) % 5},{'xyz'[i % 3]},{i % 2}\n" for i in range(ROWS))
NEW = "a,b,c\n1.5,2,x\n3.5,1,y\n"


def invoke(args: list[Any]) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small saved models of the same table: ``mlp:4`` (the one cases damage) and ``mlp:8`` (other weights)."""
    d = tmp_path_factory.mktemp("runs")
    (d / "t.csv").write_text(TRAIN)
    out: dict[str, Path] = {}
    for spec in ("mlp:4", "mlp:8"):
        r = invoke(["train", d / "t.csv", "--target", "y", "--model", spec, "--epochs", "1", "--no-diagnostics",
                    "--out", d / spec.replace(":", ""), "-q"])
        assert r.exit_code == 0, r.output
        out[spec] = d / spec.replace(":", "") / "model"
    return out


# --- builders: each writes its input into the case's folder and returns the arguments of the command ---------------

Build = Callable[[Path, dict[str, Path]], list[Any]]


def train_bytes(name: str, body: bytes, *extra: str, target: str = "y") -> Build:
    def build(d: Path, runs: dict[str, Path]) -> list[Any]:
        (d / name).write_bytes(body)
        return ["train", d / name, "--target", target, "--epochs", "1", "--out", d / "run", *extra]

    return build


def train_text(name: str, body: str, *extra: str, target: str = "y") -> Build:
    return train_bytes(name, body.encode(), *extra, target=target)


def train_with(writer: Callable[[Path], None], name: str, *extra: str, target: str = "y") -> Build:
    def build(d: Path, runs: dict[str, Path]) -> list[Any]:
        writer(d / name)
        return ["train", d / name, "--target", target, "--epochs", "1", "--out", d / "run", *extra]

    return build


def parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda p: pq.write_table(table, p)


def npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda p: np.save(p, array)


def cut(write: Callable[[Path], None], keep: int) -> Callable[[Path], None]:
    """``write``, then keep only the first ``keep`` bytes of the file (a copy interrupted, a download cut)."""

    def writer(p: Path) -> None:
        write(p)
        p.write_bytes(p.read_bytes()[:keep])

    return writer


def model(meta_edit: Callable[[dict[str, Any]], Any] | None = None, *, weights: bytes | None = None,
          json_text: str | bytes | None = None, remove: str | None = None, other_weights: bool = False,
          data: str = NEW, extra: tuple[str, ...] = ()) -> Build:
    """``predict`` with a copy of the saved model, damaged as asked, on a small new table."""

    def build(d: Path, runs: dict[str, Path]) -> list[Any]:
        folder = d / "model"
        shutil.copytree(runs["mlp:4"], folder)
        if meta_edit is not None:
            meta = json.loads((folder / "model.json").read_text())
            meta_edit(meta)
            (folder / "model.json").write_text(json.dumps(meta))
        if json_text is not None:
            raw = json_text.encode() if isinstance(json_text, str) else json_text
            (folder / "model.json").write_bytes(raw)
        if weights is not None:
            (folder / "model.safetensors").write_bytes(weights)
        if other_weights:
            shutil.copy(runs["mlp:8"] / "model.safetensors", folder / "model.safetensors")
        if remove is not None:
            (folder / remove).unlink()
        (d / "new.csv").write_text(data)
        return ["predict", folder, d / "new.csv", "--out", d / "pred.csv", *extra]

    return build


def predict_bytes(name: str, body: bytes, *extra: str) -> Build:
    def build(d: Path, runs: dict[str, Path]) -> list[Any]:
        (d / name).write_bytes(body)
        return ["predict", runs["mlp:4"], d / name, "--out", d / "pred.csv", *extra]

    return build


def predict_onto_input(relative: bool) -> Build:
    def build(d: Path, runs: dict[str, Path]) -> list[Any]:
        (d / "new.csv").write_text(NEW)
        return ["predict", runs["mlp:4"], d / "new.csv", "--out", "new.csv" if relative else d / "new.csv"]

    return build


def edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``meta[k1][k2]...`` (keys separated by '/', list indices as numbers); ``value=KeyError`` deletes it."""

    def apply(meta: dict[str, Any]) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split("/")]
        at: Any = meta
        for k in keys[:-1]:
            at = at[k]
        if value is KeyError:
            del at[keys[-1]]
        else:
            at[keys[-1]] = value

    return apply


LATIN = "a,b,c,y\n" + "".join(f"{i}.5,{i % 3},{'café' if i == 1 else 'x'},{i % 2}\n" for i in range(ROWS))
WIDE_CLASSES = "a,b,y\n" + "".join(f"{i % 7}.5,{i % 3},k{i}\n" for i in range(1000))
LONG = "v" * 2000


def gz(text: bytes) -> bytes:
    return gzip.compress(text)


@dataclass
class Case:
    id: str
    build: Build
    fragment: str  # must appear in the error line
    file: str | None  # the file the line must name (None: the error is about an option, not a file)


CASES: list[Case] = [
    # text encodings
    Case("latin-1 value", train_bytes("latin.csv", LATIN.encode("latin-1")),
         "not UTF-8 text: byte 0xe9 at offset 27 (line 3, column 'c'); if it is Latin-1", "latin.csv"),
    Case("latin-1 header", train_bytes("lh.csv", "größe,y\n".encode("latin-1") + b"1,0\n2,1\n" * 10),
         "byte 0xf6 at offset 2 (line 1)", "lh.csv"),
    Case("cp1252 quote", train_bytes("q.csv", b"a,c,y\n" + b"1,\x93hi\x94,0\n2,x,1\n" * 10), "byte 0x93", "q.csv"),
    Case("latin-1 in numbers", train_bytes("deg.csv", b"a,y\n" + b"3\xb0,0\n4,1\n" * 10),
         "byte 0xb0 at offset 5 (line 2, column 'a')", "deg.csv"),
    Case("latin-1 gzip", train_bytes("latin.csv.gz", gz(LATIN.encode("latin-1"))), "of the decompressed text",
         "latin.csv.gz"),
    Case("cut multibyte at end", train_bytes("cut.csv", TRAIN.encode() + "1.5,2,é".encode()[:-1]),
         "not UTF-8 text", "cut.csv"),
    Case("utf-16 without mark", train_bytes("u16.csv", TRAIN.encode("utf-16-le")), "binary", "u16.csv"),
    Case("bad latin-1 in tsv", train_bytes("t.tsv", b"a\tc\ty\n" + b"1\t\xe9\t0\n2\tx\t1\n" * 10),
         "column 'c'", "t.tsv"),
    # compressed files
    Case("gz not gzip", train_text("plain.csv.gz", TRAIN), "cannot be decompressed as gz", "plain.csv.gz"),
    Case("gz truncated", train_bytes("cut.csv.gz", gz(TRAIN.encode())[:40]), "cannot be decompressed as gz",
         "cut.csv.gz"),
    Case("bz2 truncated", train_bytes("cut.csv.bz2", bz2.compress(TRAIN.encode())[:40]),
         "cannot be decompressed as bz2", "cut.csv.bz2"),
    Case("bz2 named gz", train_bytes("b.tsv.gz", bz2.compress(TRAIN.encode())), "cannot be decompressed", "b.tsv.gz"),
    Case("gzip named csv", train_bytes("z.csv", gz(TRAIN.encode())), "this is a gzip archive, not text", "z.csv"),
    # header and columns
    Case("empty column name", train_text("e.csv", ",y\n" + "1,0\n2,1\n" * 10), "column 1 of 2 has no name in line 1",
         "e.csv"),
    Case("trailing comma", train_text("tc.csv", "a,y,\n" + "1,0,\n2,1,\n" * 10), "column 3 of 3 has no name",
         "tc.csv"),
    Case("blank column name", train_text("bl.csv", "a, ,y\n" + "1,2,0\n2,3,1\n" * 10), "column 2 of 3 has no name",
         "bl.csv"),
    Case("two unnamed", train_text("tw.csv", ",,y\n" + "1,2,0\n2,3,1\n" * 10), "(2 unnamed columns)", "tw.csv"),
    Case("duplicate column", train_text("dup.csv", "a,a,y\n" + "1,2,0\n2,3,1\n" * 10),
         "column name 'a' appears twice (columns 1 and 2)", "dup.csv"),
    Case("header only", train_text("h.csv", "a,y\n"), "no data rows", "h.csv"),
    Case("empty file", train_text("empty.csv", ""), "the file is empty (0 bytes)", "empty.csv"),
    Case("blank lines only", train_text("blank.csv", "\n\n\n"), "no lines of data", "blank.csv"),
    Case("ragged row", train_text("r.csv", "a,y\n1,0\n2,1,3\n" + "4,1\n" * 10), "line 3 has 3 fields", "r.csv"),
    Case("header is data", train_text("num.csv", "1,2\n" + "3,4\n" * 10, target="2"), "looks like data", "num.csv"),
    Case("long target name", train_text("t.csv", TRAIN, target=LONG), "no target column 'vvvvv", "t.csv"),
    Case("long value not a number", train_text("lv.csv", "a,y\n" + "1,0.5\n2,1.5\n" * 10 + f"3,{LONG}\n"),
         "column 'y', line 22", "lv.csv"),
    Case("long column name, infinite value", train_text("ln.csv", f"{LONG},y\n" + "1,0\ninf,1\n" * 10),
         "line 3: value inf is infinite", "ln.csv"),
    Case("1000 classes, one row each", train_text("k.csv", WIDE_CLASSES),
         "(1000 classes, sizes 1, 1, 1 and 997 more)", "k.csv"),
    Case("target with infinity", train_text("inf.csv", "a,y\n" + "1,0.5\n2,inf\n" * 10), "is infinite", "inf.csv"),
    Case("every feature constant", train_text("const.csv", "a,y\n" + "1,0\n1,1\n" * 10),
         "every feature column is constant", "const.csv"),
    # Parquet
    Case("parquet list column", train_with(parquet(pa.table({"tags": [[1, 2], [3]] * 10, "y": [0, 1] * 10})),
                                           "l.parquet"), "column 'tags' holds lists or records (list<", "l.parquet"),
    Case("parquet struct column",
         train_with(parquet(pa.table({"p": [{"x": 1, "z": 2}] * 20, "y": [0, 1] * 10})), "s.parquet"),
         "column 'p' holds lists or records (struct<", "s.parquet"),
    Case("parquet map column", train_with(parquet(pa.table({
        "m": pa.array([[("k", 1)]] * 20, type=pa.map_(pa.string(), pa.int64())), "y": [0, 1] * 10})), "m.parquet"),
         "column 'm' holds lists or records (map<", "m.parquet"),
    Case("parquet several nested",
         train_with(parquet(pa.table({"u": [[1]] * 20, "v": [[2]] * 20, "y": [0, 1] * 10})), "n.parquet"),
         "(2 such columns: 'u', 'v')", "n.parquet"),
    Case("parquet bytes column", train_with(parquet(pa.table({"b": [b"\x00\x01"] * 20, "y": [0, 1] * 10})),
                                            "b.parquet"), "column 'b' holds raw bytes", "b.parquet"),
    Case("parquet dates", train_with(parquet(pa.table({"d": pa.array([0, 1] * 10, pa.date32()), "y": [0, 1] * 10})),
                                     "d.parquet"), "column 'd' holds dates or times (date32", "d.parquet"),
    Case("parquet unnamed column", train_with(parquet(pa.table({"": [1.0, 2.0] * 10, "y": [0, 1] * 10})),
                                              "un.parquet"), "column 1 of 2 has no name", "un.parquet"),
    Case("parquet duplicate names", train_with(parquet(pa.Table.from_arrays(
        [pa.array([1.0, 2.0] * 10), pa.array([3.0, 4.0] * 10), pa.array([0, 1] * 10)], names=["a", "a", "y"])),
        "dd.parquet"), "column name 'a' appears twice", "dd.parquet"),
    Case("parquet truncated", train_with(cut(parquet(pa.table({"a": [1.0] * 20, "y": [0, 1] * 10})), 60),
                                         "cut.parquet"),
         "cannot be read as Parquet", "cut.parquet"),
    Case("csv named parquet", train_text("text.parquet", TRAIN), "cannot be read as Parquet", "text.parquet"),
    Case("parquet named csv", train_with(parquet(pa.table({"a": [1.0] * 20, "y": [0, 1] * 10})), "pq.csv"),
         "this is a Parquet file, not text", "pq.csv"),
    # NumPy
    Case("npy truncated", train_with(cut(npy(np.ones((20, 3))), 100), "cut.npy", target="x2"),
         "cannot be read as npy", "cut.npy"),
    Case("npy of objects", train_with(npy(np.array([[1, "a"]] * 20, dtype=object)), "o.npy", target="x1"),
         "cannot be read as npy", "o.npy"),
    Case("npy complex", train_with(npy(np.ones((20, 2), dtype=np.complex64)), "c.npy", target="x1"),
         "holds complex numbers", "c.npy"),
    Case("npy 3-D", train_with(npy(np.ones((20, 2, 2))), "3d.npy", target="x1"), "has shape (20, 2, 2)", "3d.npy"),
    Case("npz damaged", train_with(cut(lambda p: np.savez(p, X=np.ones((20, 2)), y=np.arange(20) % 2), 200),
                                   "cut.npz"),
         "cannot be read as npz", "cut.npz"),
    # paths
    Case("a folder as data", lambda d, r: ["train", d, "--target", "y", "--out", d / "run"], "is a directory", None),
    Case("unknown extension", train_text("t.xlsx", TRAIN), "extension '.xlsx' is not a table format", "t.xlsx"),
    # model specifications
    Case("mlp: without sizes", train_text("t.csv", TRAIN, "--model", "mlp:"), "invalid item '' in 'mlp:'", None),
    Case("mlp: empty size", train_text("t.csv", TRAIN, "--model", "mlp:64,,32"), "invalid item '' in 'mlp:64,,32'",
         None),
    Case("mlp: lone comma", train_text("t.csv", TRAIN, "--model", "mlp:,"), "invalid item '' in 'mlp:,'", None),
    Case("mlp: zero", train_text("t.csv", TRAIN, "--model", "mlp:0"), "invalid item '0' in 'mlp:0'", None),
    Case("mlp: exponent", train_text("t.csv", TRAIN, "--model", "mlp:1e3"), "invalid item '1e3' in 'mlp:1e3'", None),
    Case("mlp: beyond any memory", train_text("t.csv", TRAIN, "--model", "mlp:10000000000000"),
         "needs 70,000,000,000,001 parameters x 4 bytes x 4", None),
    Case("mlp: beyond this memory", train_text("t.csv", TRAIN, "--model", "mlp:100000000"),
         "needs 700,000,001 parameters x 4 bytes x 4 (weights, gradients, 2 optimizer moments) = 11.2 GB, more than "
         "the 2.15 GB", None),
    # damaged model folders
    Case("model.json truncated", model(json_text='{"format": 1, "model": {"cla'), "not valid JSON", "model.json"),
    Case("model.json empty", model(json_text=""), "not valid JSON (Expecting value at line 1, column 1)",
         "model.json"),
    Case("model.json a list", model(json_text="[1, 2]"), "holds a JSON list, not the object", "model.json"),
    Case("model.json not UTF-8", model(json_text=b'{"format": 1, "\xff": 2}'), "not UTF-8 text (byte 15)",
         "model.json"),
    Case("model.json newer format", model(edit("format", 2)), "format is 2; this descend reads format 1",
         "model.json"),
    Case("task edited to multiclass", model(edit("task", "multiclass")),
         "task 'multiclass' does not fit the model's 1 output(s)", "model.json"),
    Case("task edited to regression", model(edit("task", "regression")),
         "task is 'regression' but the preprocessor's target is 'binary'", "model.json"),
    Case("task unknown", model(edit("task", "ranking")), "'task' is 'ranking'; expected one of", "model.json"),
    Case("task missing", model(edit("task", KeyError)), "'task' is None", "model.json"),
    Case("classes edited", model(edit("classes", [0, 1, 2])), "binary task with 3 classes", "model.json"),
    Case("n_features edited", model(edit("n_features", 9)), "n_features is 9 but the model takes 5 inputs",
         "model.json"),
    Case("in_features edited", model(edit("model/in_features", 7)),
         "tensor 'net.0.weight' has shape [4, 5] but the MLP of model.json needs [4, 7]", "model.safetensors"),
    Case("hidden edited", model(edit("model/hidden", [9])), "needs [9, 5]", "model.safetensors"),
    Case("hidden beyond memory", model(edit("model/hidden", [10**12])), "needs 7,000,000,000,001 parameters",
         "model.json"),
    Case("model class unknown", model(edit("model/class", "Nope")), "unknown model class 'Nope'", "model.json"),
    Case("model option unknown", model(edit("model/depth", 3)), "unexpected keyword argument 'depth'",
         "model.json"),
    Case("model activation unknown", model(edit("model/activation", "swish")), "unknown activation 'swish'",
         "model.json"),
    Case("model not an object", model(edit("model", "MLP")), "'model' is 'MLP'; expected an object", "model.json"),
    Case("weights truncated", model(weights=b"\x10\x00\x00\x00\x00\x00\x00\x00{}"), "not a readable safetensors file",
         "model.safetensors"),
    Case("weights empty", model(weights=b""), "header too small", "model.safetensors"),
    Case("weights another format", model(weights=b"PK\x03\x04" + bytes(200)), "not a readable safetensors file",
         "model.safetensors"),
    Case("weights of another model", model(other_weights=True), "has shape [8, 5] but the MLP of model.json needs",
         "model.safetensors"),
    Case("weights missing", model(remove="model.safetensors"), "missing (the folder holds model.json)",
         "model.safetensors"),
    Case("model.json missing", model(remove="model.json"), "missing (the folder holds model.safetensors)",
         "model.json"),
    Case("preprocessor scale 0", model(edit("preprocessor/columns/0/scale", 0)),
         "preprocessor: columns[0] ('a').scale is 0; expected a number > 0", "model.json"),
    Case("preprocessor scale text", model(edit("preprocessor/columns/1/scale", "big")),
         "columns[1] ('b').scale is 'big'; expected a finite number", "model.json"),
    Case("preprocessor shift infinite", model(edit("preprocessor/columns/0/shift", 1e400)),
         "columns[0] ('a').shift is inf", "model.json"),
    Case("preprocessor columns missing", model(edit("preprocessor/columns", KeyError)),
         "preprocessor: columns is missing", "model.json"),
    Case("preprocessor option bad", model(edit("preprocessor/options/scale", "z")),
         "scale must be one of 'standard', 'minmax', 'none'; got 'z'", "model.json"),
    Case("preprocessor kind bad", model(edit("preprocessor/columns/2/kind", "text")),
         "columns[2] ('c').kind is 'text'", "model.json"),
    Case("preprocessor categories cut", model(edit("preprocessor/columns/2/categories", ["x"])),
         "the preprocessor makes 3 features but the model takes 5", "model.json"),
    Case("preprocessor duplicate column", model(edit("preprocessor/columns/1/name", "a")),
         "the name 'a' appears twice", "model.json"),
    Case("preprocessor target task", model(edit("preprocessor/target/task", "multiclass")),
         "task is 'binary' but the preprocessor's target is 'multiclass'", "model.json"),
    Case("preprocessor not an object", model(edit("preprocessor", [1])), "'preprocessor' is [1]", "model.json"),
    Case("preprocessor absent", model(edit("preprocessor", None)), "saved without its preprocessing", None),
    # predict's data and output
    Case("predict latin-1 data", predict_bytes("new.csv", "a,b,c\n1.5,2,caf\xe9\n".encode("latin-1")),
         "byte 0xe9 at offset 15 (line 2, column 'c')", "new.csv"),
    Case("predict wrong --encoding", predict_bytes("new.csv", "a,b,c\n1.5,2,caf\xe9\n".encode("latin-1"),
                                                   "--encoding", "ascii"), "not ascii text: byte 0xe9", "new.csv"),
    Case("predict unknown --encoding", predict_bytes("new.csv", NEW.encode(), "--encoding", "klingon"),
         "unknown text encoding 'klingon'", None),
    Case("predict list column", lambda d, r: (pq.write_table(pa.table({"a": [1.5], "b": [2], "c": [["x"]]}),
                                                             d / "n.parquet"),
                                              ["predict", r["mlp:4"], d / "n.parquet", "--out", d / "pred.csv"])[1],
         "column 'c' holds lists or records", "n.parquet"),
    Case("predict long text where numbers were", predict_bytes("new.csv", f"a,b,c\n{LONG},2,x\n".encode()),
         "column 'a' was numeric in training but here holds text such as 'vvvv", "new.csv"),
    Case("predict --out onto DATA", predict_onto_input(relative=False), "is DATA itself", "new.csv"),
    Case("predict --out onto DATA, relative", predict_onto_input(relative=True), "is DATA itself", "new.csv"),
    Case("predict --out in a missing folder",
         lambda d, r: ((d / "new.csv").write_text(NEW), ["predict", r["mlp:4"], d / "new.csv", "--out",
                                                         d / "no" / "p.csv"])[1], "does not exist", "p.csv"),
    Case("predict --proba on regression", model(lambda m: (edit("task", "regression")(m), edit("classes", None)(m),
                                                            edit("preprocessor/target/task", "regression")(m),
                                                            edit("preprocessor/target/classes", [])(m)),
                                                extra=("--proba",)), "is a regression model", None),
]


def test_there_are_at_least_60_distinct_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input_is_refused_in_one_line(case: Case, runs: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import descend.models.size

    monkeypatch.chdir(tmp_path)  # a default run folder would go to ./runs
    if case.id == "mlp: beyond this memory":  # the tester's machine: 2 GiB, whatever this one has
        monkeypatch.setattr(descend.models.size, "memory_limit", lambda: 2**31)
    args = case.build(tmp_path, runs)
    before = sorted(tmp_path.rglob("*"))
    r = invoke(args)
    assert r.exit_code == 2, (case.id, r.output)
    assert r.stdout == "", (case.id, r.stdout)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, (case.id, r.stderr)
    line = lines[0]
    assert line.startswith(f"descend {args[0]}: error: "), line
    assert len(line) < 300, (case.id, len(line), line)
    assert "Traceback" not in r.output
    assert case.fragment in line, (case.id, line)
    if case.file is not None:
        assert case.file in line, (case.id, line)
    assert sorted(tmp_path.rglob("*")) == before, case.id  # no run folder, no output, nothing half-written
