"""Malformed input, one row of a table each: the specific exception, and a message naming where and what.

Each case builds its input under ``tmp_path`` and calls :func:`descend.data.prepare` (or, for prediction time,
``Preprocessor.transform``). ``match`` is a regular expression the message must contain: the file, the column, the
line (1-based, header = line 1) or row, the value, and what would be accepted.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from descend.data import (
    CategoryError,
    ColumnError,
    ColumnMismatchError,
    ConstantColumnError,
    DataFileError,
    DataFileNotFoundError,
    DataOptionError,
    DataWarning,
    DuplicateColumnError,
    EmptyTableError,
    FileFormatError,
    LengthMismatchError,
    MissingColumnError,
    MissingValueError,
    NonFiniteError,
    NonNumericError,
    SplitError,
    TargetError,
    prepare,
)
from descend.errors import ConfigError, DataError, DescendError


def text(name: str, body: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        p.write_text(body)
        return p

    return make


def raw(name: str, body: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        p.write_bytes(body)
        return p

    return make


def late_typo(d: Path) -> Path:
    # 200,000 rows (> one 1 MB pyarrow block) with a typo far past the first block, where types were inferred.
    p = d / "late.csv"
    lines = ["a,y"] + [f"{i % 7}.5,{i % 2}" for i in range(200_000)]
    lines[150_001] = "1.5x,1"  # data row 150,001 = line 150,002
    p.write_text("\n".join(lines) + "\n")
    return p


def parquet_as_csv(d: Path) -> Path:
    p = d / "table.csv"
    pd.DataFrame({"a": [1.0, 2.0], "y": [0, 1]}).to_parquet(p)
    return p


def npy(name: str, array: np.ndarray, **kw: Any) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        if name.endswith(".npz"):
            np.savez(p, **kw)
        else:
            np.save(p, array, allow_pickle=True)
        return p

    return make


def directory(d: Path) -> Path:
    (d / "tables").mkdir()
    (d / "tables" / "train.csv").write_text("a,y\n1,2\n")
    return d / "tables"


def missing_file(d: Path) -> Path:
    (d / "train.csv").write_text("a,y\n1,2\n")
    return d / "trian.csv"


GOOD = "a,b,y\n" + "".join(f"{i},{(i * 7) % 5},{i % 2}\n" for i in range(20))

# (id, input builder or object, prepare keyword arguments, exception, message pattern)
CASES: list[tuple[str, Any, dict[str, Any], type[Exception], str]] = [
    ("missing file", missing_file, {}, DataFileNotFoundError, r"trian\.csv: no such file; did you mean .*train\.csv"),
    ("directory", directory, {}, FileFormatError, r"tables is a directory; give one file .* train\.csv"),
    ("wrong extension", text("t.xlsx", GOOD), {}, FileFormatError, r"t\.xlsx: extension '\.xlsx' is not a table"),
    ("no extension", text("table", GOOD), {}, FileFormatError, r"table: no extension .* format='csv'"),
    ("empty file", text("e.csv", ""), {}, EmptyTableError, r"e\.csv: the file is empty \(0 bytes\)"),
    ("blank lines only", text("b.csv", "\n\n\n"), {}, EmptyTableError, r"b\.csv: the file holds no lines"),
    ("header only", text("h.csv", "a,b,y\n"), {}, EmptyTableError, r"h\.csv: .*header \('a', 'b', 'y'\) but no data"),
    (
        "ragged row",
        text("r.csv", "a,b,y\n1,2,0\n3,4,1,9\n5,6,0\n"),
        {},
        FileFormatError,
        r"r\.csv: line 3 has 4 fields but the header has 3 \('3,4,1,9'\)",
    ),
    (
        "ragged tsv",
        text("r.tsv", "a\tb\ty\n1\t2\t0\n3\t4\t1\n5\t0\n"),
        {},
        FileFormatError,
        r"r\.tsv: line 4 has 2 fields but the header has 3",
    ),
    ("binary file", raw("bin.csv", bytes(range(256)) * 8), {}, FileFormatError, r"bin\.csv: the file is binary"),
    ("parquet named .csv", parquet_as_csv, {}, FileFormatError, r"table\.csv: this is a Parquet file, not text"),
    ("corrupt parquet", text("c.parquet", GOOD), {}, FileFormatError, r"c\.parquet: cannot be read as Parquet"),
    (
        "duplicate columns",
        text("dup.csv", "a,b,a,y\n1,2,3,0\n4,5,6,1\n"),
        {},
        DuplicateColumnError,
        r"dup\.csv: column name 'a' appears twice \(columns 1 and 3\)",
    ),
    (
        "missing target column",
        text("t.csv", GOOD),
        {"target": "yy"},
        MissingColumnError,
        r"t\.csv: no target column 'yy' \(did you mean 'y'\?\); columns are 'a', 'b', 'y'",
    ),
    ("target not named", text("t.csv", GOOD), {"target": None}, MissingColumnError, r"name the target column"),
    (
        "text in numeric column",
        text("n.csv", "a,b,y\n1,2,0\n3,4,1\nx7,5,0\n6,7,1\n8,9,0\n"),
        {"strict": True},
        NonNumericError,
        r"n\.csv: column 'a', line 4: 'x7' is not a number, and 4 of the column's 5 values are numbers",
    ),
    (
        "text in numeric column past the first block",
        late_typo,
        {"strict": True},
        NonNumericError,
        r"late\.csv: column 'a', line 150002: '1\.5x' is not a number",
    ),
    (
        "missing value",
        text("m.csv", GOOD.replace("\n2,4,0\n", "\n2,,0\n")),
        {"strict": True},
        MissingValueError,
        r"m\.csv: column 'b', line 4: value is missing \(1 missing .* impute='median' or 'mean' \(strict off\) or 'drop'",
    ),
    (
        "NA marker in a number column",
        text("na.csv", GOOD.replace("\n3,1,1\n", "\nNA,1,1\n")),
        {"strict": True},
        MissingValueError,
        r"na\.csv: column 'a', line 5: value is missing",
    ),
    (
        "infinite value",
        text("i.csv", GOOD.replace("\n1,2,1\n", "\n1,inf,1\n")),
        {},
        NonFiniteError,
        r"i\.csv: column 'b', line 3: value inf is infinite",
    ),
    (
        "infinite target",
        text("it.csv", "a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(30)) + "1,-inf\n"),
        {},
        NonFiniteError,
        r"it\.csv: target 'y', line 32: value -inf is infinite",
    ),
    (
        "constant column refused",
        text("k.csv", "a,c,y\n" + "".join(f"{i},1,{i % 2}\n" for i in range(20))),
        {"constant": "error"},
        ConstantColumnError,
        r"k\.csv: column 'c' has the same value \(1\.0\) in every training row",
    ),
    (
        "one-class target",
        text("o.csv", "a,y\n" + "".join(f"{i},yes\n" for i in range(10))),
        {},
        TargetError,
        r"o\.csv: target 'y' has one class \('yes'\) in all 10 rows",
    ),
    (
        "all-NaN target",
        text("nan.csv", "a,y\n" + "".join(f"{i},\n" for i in range(10))),
        {},
        MissingValueError,
        r"nan\.csv: target 'y' has no values \(all 10 are missing\)",
    ),
    (
        "typo in a numeric target",
        text("ty.csv", "a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(8)) + "9,4..5\n"),
        {},
        NonNumericError,
        r"ty\.csv: column 'y', line 10: '4\.\.5' is not a number, and 8 of the column's 9 values are numbers",
    ),
    (
        "empty feature column",
        text("ec.csv", "a,e,y\n1,,0\n2,,1\n3,,0\n"),
        {"strict": True},
        MissingValueError,
        r"ec\.csv: column 'e' has no values \(all 3 are missing\); remove the column",
    ),
    (
        "some target missing",
        text("sm.csv", "a,y\n1,0\n2,\n3,1\n4,0\n"),
        {"strict": True},
        MissingValueError,
        r"sm\.csv: target 'y', line 3: value is missing .*impute='drop'",
    ),
    (
        "too few rows for the split",
        text("few.csv", "a,y\n1,0.5\n2,1.5\n"),
        {"validation": 0.2},
        SplitError,
        r"few\.csv: 2 rows are too few for validation=0\.2: .* at least 3 rows",
    ),
    (
        "too few rows per class",
        text("pc.csv", "a,y\n1,a\n2,b\n3,c\n4,d\n5,e\n"),
        {"validation": 0.2},
        SplitError,
        r"pc\.csv: too few rows per class for a stratified split",
    ),
    (
        "binary task, three classes",
        text("b3.csv", "a,y\n1,r\n2,g\n3,b\n4,r\n5,g\n"),
        {"task": "binary"},
        TargetError,
        r"b3\.csv: task='binary' needs two classes, target 'y' has 3",
    ),
    (
        "regression on labels",
        text("rl.csv", "a,y\n1,cat\n2,dog\n3,cat\n"),
        {"task": "regression"},
        TargetError,
        r"rl\.csv: task='regression' needs a numeric target, but 'y' holds labels such as 'cat'",
    ),
    (
        "dates refused in strict mode",
        text("tc.csv", "a,when,y\n1,2024-03-05,0\n2,2024-03-06,1\n3,2024-03-07,0\n"),
        {"strict": True},
        NonNumericError,
        r"tc\.csv: column 'when' holds dates \(e\.g\. '2024-03-05'\); pass dates=\['when'\]",
    ),
    (
        "categorical names a column the table lacks",
        text("tc.csv", "a,colour,y\n1,red,0\n2,blue,1\n3,red,0\n"),
        {"categorical": ["color"]},
        DataOptionError,
        r"categorical names 'color', not a feature column of .*tc\.csv; feature columns are 'a', 'colour'",
    ),
    (
        "header is data",
        text("nh.csv", "1.5,2,0\n3,4,1\n"),
        {"target": "0"},
        FileFormatError,
        r"nh\.csv: line 1 looks like data, not a header .* header=False",
    ),
    ("3-D array file", npy("cube.npy", np.zeros((2, 3, 4))), {}, FileFormatError, r"cube\.npy has shape \(2, 3, 4\)"),
    (
        "pickled npy",
        npy("obj.npy", np.array([{"a": 1}], dtype=object)),
        {},
        FileFormatError,
        r"obj\.npy: cannot be read as npy",
    ),
    (
        "npz without X and y",
        npy("ab.npz", np.zeros(1), u=np.zeros(3), v=np.ones(3)),
        {},
        FileFormatError,
        r"ab\.npz: holds arrays \['u', 'v'\]; an \.npz table holds one array, or 'X' and 'y'",
    ),
    (
        "impute=drop leaves nothing",
        text("dn.csv", "a,b,y\n1,,0\n,2,1\n"),
        {"impute": "drop"},
        EmptyTableError,
        r"dn\.csv: impute='drop' removed every row",
    ),
    ("bad scale name", text("t.csv", GOOD), {"scale": "zscore"}, DataOptionError, r"scale must be one of 'standard', 'minmax', 'none'; got 'zscore'"),
    ("bad validation fraction", text("t.csv", GOOD), {"validation": 1.5}, DataOptionError, r"validation must be a fraction in \[0, 1\); got 1\.5"),
    ("negative test fraction", text("t.csv", GOOD), {"test": -0.1}, DataOptionError, r"test must be a fraction in \[0, 1\); got -0\.1"),
    ("fractions sum to 1", text("t.csv", GOOD), {"validation": 0.5, "test": 0.5}, DataOptionError, r"validation \+ test must be below 1"),
    ("bad impute", text("t.csv", GOOD), {"impute": "zero"}, DataOptionError, r"impute must be one of 'median', 'mean', 'drop', 'error'; got 'zero'"),
    ("bad task", text("t.csv", GOOD), {"task": "ranking"}, DataOptionError, r"task must be one of 'auto', .*; got 'ranking'"),
    ("bad seed", text("t.csv", GOOD), {"seed": 1.5}, DataOptionError, r"seed must be an integer; got 1\.5"),
    ("unreadable source", {"a": [1, 2]}, {}, DataOptionError, r"cannot read a table from a dict; give a path"),
    (
        "X and y of different lengths",
        (np.zeros((5, 2)), np.zeros(4)),
        {"target": None},
        LengthMismatchError,
        r"X has 5 rows but y has 4",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("builder", "kwargs", "error", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_input_is_refused_with_a_specific_message(
    tmp_path: Path, builder: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    source = builder(tmp_path) if callable(builder) else builder
    kwargs = {"target": "y", **kwargs}
    with pytest.raises(error, match=match) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        prepare(source, **kwargs)
    # Every data error is a DescendError and a ValueError, so the CLI and `except ValueError` both catch it.
    assert isinstance(info.value, DataError) and isinstance(info.value, DescendError)
    assert isinstance(info.value, ValueError)


def test_there_are_at_least_25_cases_and_they_use_distinct_messages() -> None:
    assert len(CASES) >= 25
    assert len({c[4] for c in CASES}) == len(CASES)


def test_error_classes_also_are_the_builtins_a_python_user_expects(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        prepare(tmp_path / "nope.csv", target="y")
    assert issubclass(DataFileNotFoundError, DataFileError)
    assert issubclass(DataOptionError, ConfigError)
    assert issubclass(DuplicateColumnError, ColumnError)


def test_every_feature_constant_is_refused_after_the_warning(tmp_path: Path) -> None:
    p = tmp_path / "allk.csv"
    p.write_text("a,b,y\n" + "".join(f"1,2,{i % 2}\n" for i in range(10)))
    dropped = r"left out 2 column\(s\) constant over the training rows: 'a', 'b'"
    with (
        pytest.warns(DataWarning, match=dropped),
        pytest.raises(ConstantColumnError, match=r"every feature column"),
    ):
        prepare(p, target="y")


# --- prediction time -----------------------------------------------------------------------------------------------

TRAIN = pd.DataFrame(
    {"age": [20.0, 30.0, 40.0, 50.0, 60.0, 35.0], "colour": ["red", "blue", "red", "green", "blue", "red"],
     "y": [0, 1, 0, 1, 0, 1]}
)  # fmt: skip

PREDICT_CASES: list[tuple[str, Any, type[Exception], str]] = [
    (
        "missing column",
        pd.DataFrame({"age": [1.0]}),
        ColumnMismatchError,
        r"missing feature column\(s\) 'colour'",
    ),
    (
        "a stray word in a numeric column",
        pd.DataFrame({"age": ["1", "2", "x"], "colour": ["red", "red", "red"]}),
        NonNumericError,
        r"DataFrame: column 'age', row 3: 'x' is not a number",
    ),
    (
        "text where a number was",
        pd.DataFrame({"age": ["old", "young"], "colour": ["red", "red"]}),
        ColumnMismatchError,
        r"column 'age' was numeric in training but here holds text such as 'old'",
    ),
    (
        "unseen category",
        pd.DataFrame({"age": [1.0, 2.0], "colour": ["red", "purple"]}),
        CategoryError,
        r"DataFrame: column 'colour', row 2: category 'purple' was not seen in training .*unseen='ignore'",
    ),
    (
        "missing value",
        pd.DataFrame({"age": [1.0, np.nan], "colour": ["red", "red"]}),
        MissingValueError,
        r"column 'age', row 2: value is missing",
    ),
    (
        "array of the wrong width",
        np.zeros((3, 5)),
        ColumnMismatchError,
        r"array: has 5 columns; the model was trained on 2 feature columns",
    ),
    (
        "tensor where text was",
        torch.tensor([[1.0, 2.0]]),
        ColumnMismatchError,
        r"tensor: column 'colour' was categorical in training but here holds numbers",
    ),
    (
        "infinite value",
        pd.DataFrame({"age": [1.0, np.inf], "colour": ["red", "red"]}),
        NonFiniteError,
        r"DataFrame: column 'age', row 2: value inf is infinite",
    ),
]


@pytest.mark.parametrize(
    ("source", "error", "match"), [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES]
)
def test_prediction_time_input_is_checked_against_training(
    source: Any, error: type[Exception], match: str
) -> None:
    data = prepare(TRAIN, target="y", validation=0.0, strict=True)
    with pytest.raises(error, match=match):
        data.preprocessor.transform(source)


def test_extra_columns_at_prediction_time_are_ignored_and_named_once() -> None:
    data = prepare(TRAIN, target="y", validation=0.0, strict=True)
    new = pd.DataFrame({"height": [2.0], "colour": ["red"], "age": [1.0]})
    with pytest.warns(DataWarning, match=r"ignored 1 column\(s\) the model was not trained on: 'height'") as caught:
        got = data.preprocessor.transform(new)
    assert len(caught) == 1
    torch.testing.assert_close(got, data.preprocessor.transform(new[["age", "colour"]]), rtol=0, atol=0)


def test_messages_are_one_line_and_name_the_source(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("a,y\n1,0\n,1\n")
    with pytest.raises(MissingValueError) as info:
        prepare(p, target="y", strict=True)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(p))
    assert re.search(r"line 3", str(info.value))
