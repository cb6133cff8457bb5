"""Read a table from a file or an in-memory object into a pandas DataFrame (or, via :func:`read_file`, the Arrow
table pyarrow parsed, which :func:`~descend.data.prepare` takes straight to tensors when it is all numbers).

Files are parsed by pyarrow (CSV, TSV, Parquet) and NumPy (``.npy``, ``.npz``); nothing here parses text by hand.
What this module adds is the boundary: a file that cannot be a table (missing, a directory, an unknown extension,
binary, empty, header only, ragged) is refused with a :mod:`descend.data.errors` exception naming the file and,
where there is one, the line.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.data.errors import (
    DataFileNotFoundError,
    DataOptionError,
    DuplicateColumnError,
    EmptyTableError,
    FileFormatError,
    MissingColumnError,
    NonNumericError,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["FORMATS", "Origin", "read_file", "read_table", "to_frame"]

#: File formats by extension. ``.gz``/``.bz2`` after ``.csv``/``.tsv`` are decompressed on the fly by pyarrow.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
    ".npz": "npz",
}
_COMPRESSED = (".gz", ".bz2")
_ACCEPTED = ", ".join(FORMATS)
_MAGIC = {
    b"PAR1": "a Parquet file",
    b"\x93NUMPY": "a NumPy .npy file",
    b"PK\x03\x04": "a zip archive (.npz, .xlsx)",
}


@dataclass(frozen=True)
class Origin:
    """Where a table came from, so an error can point at the line a person would open the file at.

    ``name`` is the path or the kind of object (``"DataFrame"``); ``lines`` is true for text files, whose data row
    ``i`` (0-based) is line ``i + 2`` (the header is line 1). Other tables count rows from 1.
    """

    name: str
    lines: bool = False

    def at(self, i: int) -> str:
        return f"line {i + 2}" if self.lines else f"row {i + 1}"

    def __str__(self) -> str:
        return self.name


def read_table(
    source: Any, *, format: str | None = None, header: bool = True, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Return ``source`` as a DataFrame with unique string column names.

    Args:
        source: a path (``.csv``, ``.tsv``, ``.csv.gz``, ``.parquet``, ``.npy``, ``.npz``), a DataFrame or Series,
            a NumPy array (2-D, 1-D or structured) or a tensor. Arrays get columns ``x0, x1, ...``; an ``.npz``
            holding ``X`` and ``y`` gets ``x0, x1, ..., y``.
        format: override the extension (``"csv"``, ``"tsv"``, ``"parquet"``, ``"npy"``, ``"npz"``).
        header: text files only; ``False`` when the first line is data (columns are then ``x0, x1, ...``).
        columns: text and Parquet files only; read just these columns.

    Text files are typed by their first megabyte (pyarrow's inference); number columns are then parsed straight to
    float32 (float64 for whole numbers), so a value beyond float32's range (about 3.4e38) reads as infinite.

    Example:
        >>> read_table(np.eye(2)).columns.tolist()
        ['x0', 'x1']
    """
    return read_with_origin(source, format=format, header=header, columns=columns)[0]


def read_with_origin(
    source: Any, *, format: str | None = None, header: bool = True, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, Origin]:
    import pandas as pd

    if isinstance(source, (str, os.PathLike)):
        table, origin = read_file(Path(source), format=format, header=header, columns=columns)
        return (table if isinstance(table, pd.DataFrame) else to_frame(table)), origin
    if isinstance(source, pd.Series):
        source = source.to_frame()
    if isinstance(source, pd.DataFrame):
        origin = Origin("DataFrame")
        return _checked_names(source, origin), origin
    if isinstance(source, torch.Tensor):
        return frame_from_array(source.detach().cpu().numpy(), "tensor"), Origin("tensor")
    if isinstance(source, np.ndarray):
        return frame_from_array(source, "array"), Origin("array")
    raise DataOptionError(
        f"cannot read a table from a {type(source).__name__}; give a path ({_ACCEPTED}), a pandas DataFrame, "
        "a NumPy array or a torch tensor"
    )


def frame_from_array(a: np.ndarray, what: str, prefix: str = "x") -> pd.DataFrame:
    """A DataFrame over the columns of ``a`` (no copy for a 2-D numeric array)."""
    import pandas as pd

    if a.dtype.names:  # structured array: the fields are the columns
        return pd.DataFrame({name: a[name] for name in a.dtype.names})
    if a.ndim == 0 or a.ndim > 2:
        raise FileFormatError(
            f"{what} has shape {tuple(a.shape)}; a table must be 1-D (one column) or 2-D (rows x columns); "
            "reshape it first, e.g. a.reshape(len(a), -1)"
        )
    if a.dtype == object:
        raise FileFormatError(f"{what} holds Python objects (dtype=object); give a numeric or string array")
    a2 = a.reshape(len(a), -1)
    return pd.DataFrame(a2, columns=[f"{prefix}{j}" for j in range(a2.shape[1])], copy=False)


def _checked_names(df: pd.DataFrame, origin: Origin) -> pd.DataFrame:
    names = [str(c) for c in df.columns]
    _check_unique(names, origin)
    if list(df.columns) != names:
        df = df.set_axis(names, axis=1)
    return df


def _check_unique(names: Sequence[str], origin: Origin) -> None:
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        if name in seen:
            raise DuplicateColumnError(
                f"{origin}: column name {name!r} appears twice (columns {seen[name] + 1} and {j + 1}); "
                "column names must be unique so a column can be chosen by name"
            )
        seen[name] = j


def _format_of(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in set(FORMATS.values()):
            raise DataOptionError(f"format must be one of csv, tsv, parquet, npy, npz; got {format!r}")
        return format
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in FORMATS:
        shown = f"extension {ext!r}" if ext else "no extension"
        raise FileFormatError(
            f"{path}: {shown} is not a table format descend reads; accepted: {_ACCEPTED} "
            "(CSV/TSV may end in .gz or .bz2), or pass format='csv' to read it as CSV"
        )
    return FORMATS[ext]


def read_file(
    path: Path, *, format: str | None = None, header: bool = True, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame | pa.Table, Origin]:
    """The table in ``path``, and where it came from: CSV, TSV and Parquet as the Arrow table pyarrow parsed."""
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in FORMATS)[:5]
        hint = f" (tables in it: {', '.join(inside)})" if inside else ""
        raise FileFormatError(f"{path} is a directory; give one file ({_ACCEPTED}){hint}")
    if not path.exists():
        near = difflib.get_close_matches(path.name, _listing(path.parent), n=1)
        hint = f"; did you mean {str(path.parent / near[0])!r}?" if near else ""
        raise DataFileNotFoundError(f"{path}: no such file{hint}")
    kind = _format_of(path, format)
    if path.stat().st_size == 0:
        raise EmptyTableError(
            f"{path}: the file is empty (0 bytes); a table needs a header line and data rows"
        )
    if kind in ("csv", "tsv"):
        return _read_text(path, "\t" if kind == "tsv" else ",", header, columns)
    if kind == "parquet":
        return _read_parquet(path, columns), Origin(str(path))
    return _read_numpy(path, kind), Origin(str(path))


def _listing(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir()]
    except OSError:
        return []


def _sniff_binary(path: Path) -> None:
    if path.suffix.lower() in _COMPRESSED:
        return
    with open(path, "rb") as f:
        head = f.read(8192)
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise FileFormatError(f"{path}: this is {what}, not text; rename it or pass the matching format=")
    if b"\x00" in head:
        raise FileFormatError(
            f"{path}: the file is binary (it holds NUL bytes), not CSV/TSV text; accepted: {_ACCEPTED}"
        )


def _read_text(
    path: Path, delimiter: str, header: bool, columns: Sequence[str] | None
) -> tuple[pa.Table, Origin]:
    import pyarrow as pa
    import pyarrow.csv as pc

    _sniff_binary(path)
    origin = Origin(str(path), lines=header)
    read_opts = pc.ReadOptions(autogenerate_column_names=not header)
    parse_opts = pc.ParseOptions(delimiter=delimiter)
    try:
        # The first block (1 MB) decides the types; numbers are then parsed straight to the width we keep, so a
        # float column never exists as float64 (half the memory). Integers become float64: exact, and a later 2.5
        # still parses.
        schema = pc.open_csv(path, read_options=read_opts, parse_options=parse_opts).schema
    except pa.ArrowInvalid as e:
        raise _parse_error(path, e, delimiter, header) from None
    names = [f"x{j}" for j in range(len(schema.names))] if not header else list(schema.names)
    _check_unique(names, origin)
    if header:
        _check_header(path, names)
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise MissingColumnError(f"{path}: no column {missing[0]!r}; columns are {shown_names(names)}")
    wide = {pa.float64(): pa.float32(), pa.int64(): pa.float64()}
    types = {f.name: wide[f.type] for f in schema if f.type in wide}
    if not header:
        read_opts = pc.ReadOptions(column_names=names)
    include = list(columns) if columns else None
    # Fast path: only an empty field is missing (NaN and inf parse as numbers). Checking every field against
    # pyarrow's full list of missing-value markers costs about a sixth of the parse, so that list is used only
    # when a number column turns out to hold one of them (NA, NULL, N/A, ...).
    table = None
    for null_values in ([""], None):
        convert = pc.ConvertOptions(column_types=types, include_columns=include)
        if null_values is not None:
            convert.null_values = null_values
        try:
            table = pc.read_csv(
                path,
                read_options=read_opts,
                parse_options=parse_opts,
                convert_options=convert,
                memory_pool=_pool(),
            )
            break
        except pa.ArrowInvalid as e:
            if null_values is None or "conversion error" not in str(e):
                raise _parse_error(path, e, delimiter, header, names) from None
    assert table is not None
    if table.num_rows == 0:
        raise EmptyTableError(
            f"{path}: the file has a header ({shown_names(names)}) but no data rows; a table needs at least one row"
        )
    return table, origin


@functools.cache
def _pool() -> pa.MemoryPool:
    """jemalloc with immediate purging when pyarrow has it, else the default pool.

    The parsed Arrow buffers live only until they are copied into NumPy columns; pyarrow's default allocator
    (mimalloc) keeps freed pages mapped, so a large CSV would hold about twice its size in memory at its peak.
    """
    import pyarrow as pa

    try:
        pa.jemalloc_set_decay_ms(0)
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()
    return pool


def to_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as a DataFrame; the Arrow buffers are released as they convert (the table is spent)."""
    # One block per column and the Arrow buffers released as they convert: no second copy of the whole table.
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _check_header(path: Path, names: Sequence[str]) -> None:
    def number(s: str) -> bool:
        try:
            float(s)
        except ValueError:
            return False
        return True

    if names and all(number(n) for n in names):
        raise FileFormatError(
            f"{path}: line 1 looks like data, not a header ({shown_names(names)}); name the columns in line 1, or "
            "read it with descend.data.read_table(path, header=False) to call them x0, x1, ..."
        )


def shown_names(names: Sequence[str], k: int = 8) -> str:
    head = ", ".join(repr(n) for n in names[:k])
    return head + (f", ... ({len(names)} in all)" if len(names) > k else "")


def _parse_error(
    path: Path, e: Exception, delimiter: str, header: bool, names: Sequence[str] | None = None
) -> Exception:
    import pyarrow as pa
    import pyarrow.csv as pc

    text = str(e)
    if "Empty CSV file" in text:
        return EmptyTableError(
            f"{path}: the file holds no lines of data; a table needs a header line and rows"
        )
    ragged = re.search(r"Expected (\d+) columns, got (\d+)", text)
    if ragged:
        first: list[Any] = []

        def keep_first(row: Any) -> str:
            if not first:
                first.append(row)
            return "skip"

        # Single-threaded so pyarrow can number the row; this runs only on the error path.
        pc.read_csv(
            path,
            read_options=pc.ReadOptions(use_threads=False, autogenerate_column_names=not header),
            parse_options=pc.ParseOptions(delimiter=delimiter, invalid_row_handler=keep_first),
        )
        where = f"line {first[0].number}" if first and first[0].number is not None else "a line"
        shown = first[0].text if first else "?"
        return FileFormatError(
            f"{path}: {where} has {ragged.group(2)} fields but the header has {ragged.group(1)} "
            f"({shown[:80]!r}); every row needs one value per column (quote values that contain "
            f"{delimiter!r})"
        )
    conv = re.search(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", text)
    if conv and names is not None:
        name = names[int(conv.group(1))]
        col = pc.read_csv(
            path,
            read_options=pc.ReadOptions(column_names=list(names), skip_rows=1 if header else 0),
            parse_options=pc.ParseOptions(delimiter=delimiter),
            convert_options=pc.ConvertOptions(include_columns=[name], column_types={name: pa.string()}),
        ).column(0)
        frame = col.to_pandas()
        bad = first_non_number(frame)
        origin = Origin(str(path), lines=header)
        where = origin.at(bad) if bad is not None else "a row"
        value = frame.iloc[bad] if bad is not None else conv.group(3)
        return NonNumericError(
            f"{path}: column {name!r}, {where}: {value!r} is not a number, and the column's other values are "
            "numbers; fix the value, or mark it missing (empty or NA)"
        )
    kind = "TSV" if delimiter == "\t" else "CSV"
    return FileFormatError(f"{path}: cannot be parsed as {kind}: {text}")


def first_non_number(values: pd.Series) -> int | None:
    """Position of the first non-missing value that does not parse as a number, or None."""
    import pandas as pd

    parsed = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy() & values.notna().to_numpy())
    return int(bad[0]) if len(bad) else None


def _read_parquet(path: Path, columns: Sequence[str] | None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
    except (pa.ArrowInvalid, OSError) as e:
        raise FileFormatError(f"{path}: cannot be read as Parquet ({e})") from None
    _check_unique(table.schema.names, Origin(str(path)))
    if table.num_columns == 0 or table.num_rows == 0:
        raise EmptyTableError(
            f"{path}: the Parquet file has {table.num_rows} rows and {table.num_columns} columns"
        )
    return table


def _read_numpy(path: Path, kind: str) -> pd.DataFrame:
    import pandas as pd

    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise FileFormatError(f"{path}: cannot be read as {kind} ({e})") from None
    if kind == "npy":
        if not isinstance(loaded, np.ndarray):
            raise FileFormatError(f"{path}: holds an .npz archive, not one array; rename it to .npz")
        frame = frame_from_array(loaded, str(path))
    else:
        with loaded:
            keys = list(loaded.keys())
            x_key = next((k for k in ("X", "x") if k in keys), None)
            if x_key is not None and "y" in keys:
                frame = frame_from_array(loaded[x_key], str(path))
                y = loaded["y"]
                frame = pd.concat([frame, frame_from_array(y, str(path), prefix="y")], axis=1)
                if y.ndim == 1:
                    frame = frame.rename(columns={"y0": "y"})
            elif len(keys) == 1:
                frame = frame_from_array(loaded[keys[0]], str(path))
            else:
                raise FileFormatError(
                    f"{path}: holds arrays {keys}; an .npz table holds one array, or 'X' and 'y'"
                )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise EmptyTableError(f"{path}: the array has shape {frame.shape}; a table needs rows and columns")
    return frame
