"""Read a table from a file or an in-memory object into a pandas DataFrame (or, via :func:`read_file`, the Arrow
table pyarrow parsed, which :func:`~descend.data.prepare` takes straight to tensors when it is all numbers).

Files are parsed by pyarrow (CSV, TSV, Parquet) and NumPy (``.npy``, ``.npz``); nothing here parses text by hand.
What this module adds is the boundary: a file that cannot be a table (missing, a directory, an unknown extension,
binary, corrupt, empty, header only, ragged, not in its text encoding, with an unnamed, repeated or nested column)
is refused with a :mod:`descend.data.errors` exception naming the file and, where there is one, the line, column
or byte.

Text is UTF-8 (a byte-order mark is allowed) unless ``encoding=`` names another codec; a UTF-16 or UTF-32 file is
recognised by its byte-order mark. A file that is not valid UTF-8 is refused with the offset of the first bad byte,
never guessed at: Latin-1 and Windows-1252 decode every byte, so a guess would silently misread a file in another
encoding.
"""

from __future__ import annotations

import bz2
import codecs
import difflib
import functools
import gzip
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
import torch

from descend.data.errors import (
    ColumnTypeError,
    DataFileNotFoundError,
    DataOptionError,
    DuplicateColumnError,
    EmptyTableError,
    EncodingError,
    FileFormatError,
    MissingColumnError,
    NonNumericError,
    UnnamedColumnError,
    listed,
    shown,
)
from descend.errors import DataError

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
    b"\x1f\x8b": "a gzip archive",
    b"BZh": "a bzip2 archive",
}
# Byte-order marks that name their encoding (longest first: UTF-32-LE's mark begins with UTF-16-LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_LATIN_HINT = "if it is Latin-1 or Windows-1252 (a spreadsheet export), pass encoding='latin-1' (--encoding latin-1)"


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
    source: Any,
    *,
    format: str | None = None,
    header: bool = True,
    columns: Sequence[str] | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """Return ``source`` as a DataFrame with unique string column names.

    Args:
        source: a path (``.csv``, ``.tsv``, ``.csv.gz``, ``.parquet``, ``.npy``, ``.npz``), a DataFrame or Series,
            a NumPy array (2-D, 1-D or structured) or a tensor. Arrays get columns ``x0, x1, ...``; an ``.npz``
            holding ``X`` and ``y`` gets ``x0, x1, ..., y``.
        format: override the extension (``"csv"``, ``"tsv"``, ``"parquet"``, ``"npy"``, ``"npz"``).
        header: text files only; ``False`` when the first line is data (columns are then ``x0, x1, ...``).
        columns: text and Parquet files only; read just these columns.
        encoding: text files only; the codec of the text (``"latin-1"``, ``"cp1252"``, ``"utf-16"``, any name
            Python's :mod:`codecs` knows). ``None``: UTF-8, or UTF-16/32 when the file starts with their
            byte-order mark; a file that is not valid UTF-8 is refused, naming the first bad byte.

    Text files are typed by their first megabyte (pyarrow's inference); number columns are then parsed straight to
    float32 (float64 for whole numbers), so a value beyond float32's range (about 3.4e38) reads as infinite.

    Example:
        >>> read_table(np.eye(2)).columns.tolist()
        ['x0', 'x1']
    """
    return read_with_origin(source, format=format, header=header, columns=columns, encoding=encoding)[0]


def read_with_origin(
    source: Any,
    *,
    format: str | None = None,
    header: bool = True,
    columns: Sequence[str] | None = None,
    encoding: str | None = None,
) -> tuple[pd.DataFrame, Origin]:
    import pandas as pd

    if isinstance(source, (str, os.PathLike)):
        table, origin = read_file(Path(source), format=format, header=header, columns=columns, encoding=encoding)
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
    if a.dtype.kind == "c":
        raise ColumnTypeError(
            f"{what} holds complex numbers ({a.dtype}); give real numbers (e.g. a.real and a.imag as two columns)"
        )
    a2 = a.reshape(len(a), -1)
    return pd.DataFrame(a2, columns=[f"{prefix}{j}" for j in range(a2.shape[1])], copy=False)


def _checked_names(df: pd.DataFrame, origin: Origin) -> pd.DataFrame:
    names = [str(c) for c in df.columns]
    check_names(names, origin)
    if list(df.columns) != names:
        df = df.set_axis(names, axis=1)
    return df


def check_names(names: Sequence[str], origin: Origin) -> None:
    """Refuse empty (or blank) and repeated column names: a column is chosen, and reported, by its name."""
    blank = [j for j, name in enumerate(names) if not name.strip()]
    if blank:
        where = "line 1" if origin.lines else "the table"
        more = f" ({len(blank)} unnamed columns)" if len(blank) > 1 else ""
        raise UnnamedColumnError(
            f"{origin}: column {blank[0] + 1} of {len(names)} has no name in {where}{more}; name every column "
            "(a trailing comma in the header makes an empty one)"
        )
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        if name in seen:
            raise DuplicateColumnError(
                f"{origin}: column name {shown(name)} appears twice (columns {seen[name] + 1} and {j + 1}); "
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
    path: Path,
    *,
    format: str | None = None,
    header: bool = True,
    columns: Sequence[str] | None = None,
    encoding: str | None = None,
) -> tuple[pd.DataFrame | pa.Table, Origin]:
    """The table in ``path``, and where it came from: CSV, TSV and Parquet as the Arrow table pyarrow parsed."""
    codec = _codec(encoding)
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
        return _read_text(path, "\t" if kind == "tsv" else ",", header, columns, codec)
    if kind == "parquet":
        return _read_parquet(path, columns), Origin(str(path))
    return _read_numpy(path, kind), Origin(str(path))


def _listing(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir()]
    except OSError:
        return []


def _codec(encoding: str | None) -> str | None:
    """The canonical codec name of ``encoding`` (``None`` stays None: detect), or a DataOptionError."""
    if encoding is None:
        return None
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise DataOptionError(
            f"encoding: unknown text encoding {shown(encoding)}; expected a codec name such as 'utf-8', "
            "'latin-1', 'cp1252' or 'utf-16'"
        ) from None


def _opened(path: Path) -> BinaryIO:
    """The bytes of ``path``, decompressed when it ends in .gz or .bz2 (for ``with``)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return cast(BinaryIO, gzip.open(path))
    if suffix == ".bz2":
        return cast(BinaryIO, bz2.open(path))
    return open(path, "rb")


def _sniff(path: Path, codec: str | None) -> str:
    """The codec to read ``path`` with (pyarrow's name for UTF-8), after refusing a file that is not text."""
    try:
        with _opened(path) as f:
            head = f.read(8192)
    except (OSError, EOFError) as e:
        raise FileFormatError(
            f"{path}: cannot be decompressed as {path.suffix.lower()[1:]} ({_short(e)}); the file is damaged or "
            "is not compressed this way"
        ) from None
    if codec is None:
        codec = next((name for bom, name in _BOMS if head.startswith(bom)), None)
    wide = codec is not None and codec.startswith(("utf-16", "utf-32"))
    if not wide:
        for magic, what in _MAGIC.items():
            if head.startswith(magic):
                raise FileFormatError(f"{path}: this is {what}, not text; rename it or pass the matching format=")
        if b"\x00" in head:
            raise FileFormatError(
                f"{path}: the file is binary (it holds NUL bytes), not CSV/TSV text; accepted: {_ACCEPTED}"
            )
    return "utf8" if codec in (None, "utf-8", "utf-8-sig") else codec


def _short(e: BaseException, width: int = 80) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_encoding(path: Path, codec: str, delimiter: str, names: Sequence[str] | None) -> None:
    """Raise an :class:`EncodingError` at the first byte of ``path`` that ``codec`` cannot decode, if any."""
    label = "UTF-8" if codec == "utf8" else codec
    decoder = codecs.getincrementaldecoder("utf-8-sig" if codec == "utf8" else codec)(errors="strict")
    done = newlines = 0
    line_start = b""  # the bytes of the current line read so far, to find the column of a bad byte
    with _opened(path) as f:
        while True:
            chunk = f.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                data = bytes(e.object)
                before = data[: e.start]
                head = line_start[: len(line_start) - pending] + before if pending else line_start + before
                offset = done - pending + e.start
                line = newlines + before.count(b"\n") + 1
                prefix = head[head.rfind(b"\n") + 1 :]
                where = f"line {line}" if codec == "utf8" or codec.startswith(("latin", "cp", "iso")) else ""
                if where and names and b'"' not in prefix:
                    j = prefix.count(delimiter.encode())
                    where += f", column {shown(names[j])}" if j < len(names) else ""
                byte = data[e.start] if e.start < len(data) else 0
                unzipped = " of the decompressed text" if path.suffix.lower() in _COMPRESSED else ""
                hint = _LATIN_HINT if codec == "utf8" else "pass the file's encoding with encoding= (--encoding)"
                raise EncodingError(
                    f"{path}: not {label} text: byte 0x{byte:02x} at offset {offset}{unzipped}"
                    f"{f' ({where})' if where else ''}; {hint}"
                ) from None
            if not chunk:
                return
            done += len(chunk)
            newlines += chunk.count(b"\n")
            cut = chunk.rfind(b"\n")
            line_start = chunk[cut + 1 :] if cut >= 0 else line_start + chunk


def _read_text(
    path: Path, delimiter: str, header: bool, columns: Sequence[str] | None, encoding: str | None = None
) -> tuple[pa.Table, Origin]:
    import pyarrow as pa
    import pyarrow.csv as pc

    codec = _sniff(path, encoding)
    origin = Origin(str(path), lines=header)
    read_opts = pc.ReadOptions(autogenerate_column_names=not header, encoding=codec)
    parse_opts = pc.ParseOptions(delimiter=delimiter)
    try:
        # The first block (1 MB) decides the types; numbers are then parsed straight to the width we keep, so a
        # float column never exists as float64 (half the memory). Integers become float64: exact, and a later 2.5
        # still parses.
        schema = pc.open_csv(path, read_options=read_opts, parse_options=parse_opts).schema
    except pa.ArrowInvalid as e:
        raise _parse_error(path, e, delimiter, header, codec=codec) from None
    except (OSError, UnicodeError) as e:
        raise _stream_error(path, e, codec, delimiter) from None
    try:
        names = [f"x{j}" for j in range(len(schema))] if not header else list(schema.names)
    except UnicodeDecodeError:  # the header line is not UTF-8
        _check_encoding(path, codec, delimiter, None)
        raise
    # pyarrow keeps undecodable text as bytes: refuse it, naming the first bad byte.
    if codec == "utf8" and any(pa.types.is_binary(f.type) for f in schema):
        _check_encoding(path, codec, delimiter, names)
    check_names(names, origin)
    if header:
        _check_header(path, names)
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise MissingColumnError(f"{path}: no column {shown(missing[0])}; columns are {shown_names(names)}")
    wide = {pa.float64(): pa.float32(), pa.int64(): pa.float64()}
    types = {f.name: wide[f.type] for f in schema if f.type in wide}
    numbers = len(types) == len(schema)
    if not header:
        read_opts = pc.ReadOptions(column_names=names, encoding=codec)
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
                memory_pool=_pool(numbers),
            )
            break
        except pa.ArrowInvalid as e:
            if null_values is None or "conversion error" not in str(e):
                raise _parse_error(path, e, delimiter, header, names, codec) from None
        except (OSError, UnicodeError) as e:
            raise _stream_error(path, e, codec, delimiter, names) from None
    assert table is not None
    if codec == "utf8" and any(pa.types.is_binary(f.type) for f in table.schema):  # bad bytes past the first block
        _check_encoding(path, codec, delimiter, names)
        raise EncodingError(f"{path}: a column holds text that is not UTF-8; {_LATIN_HINT}")
    if table.num_rows == 0:
        raise EmptyTableError(
            f"{path}: the file has a header ({shown_names(names)}) but no data rows; a table needs at least one row"
        )
    return table, origin


@functools.cache
def _pool(numbers: bool = False) -> pa.MemoryPool:
    """The memory pool a CSV parses into: pyarrow's default for a table of numbers, else jemalloc with immediate
    purging when pyarrow has it.

    The parsed Arrow buffers live only until they are copied into NumPy columns. pyarrow's default allocator
    (mimalloc) keeps freed pages mapped, so a large table converted to a DataFrame would hold about twice its size
    at its peak; jemalloc that returns them at once avoids that, at about a sixth more parse time. A table of
    numbers (the dense path of :func:`~descend.data.prepare`) parses in the faster default pool, and the dense pass
    hands its freed pages back as it goes (:func:`~descend.data.dense.fill_splits`).
    """
    import pyarrow as pa

    if numbers:
        return pa.default_memory_pool()
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
    """The first ``k`` names, each cut to a readable length, then "and N more"."""
    return listed(names, k)


def _stream_error(
    path: Path, e: BaseException, codec: str, delimiter: str, names: Sequence[str] | None = None
) -> Exception:
    """The error to raise for an exception pyarrow let through while reading (decoding, decompressing)."""
    if isinstance(e, UnicodeError) or "decode" in str(e).lower() or "utf" in str(e).lower():
        _check_encoding(path, codec, delimiter, names)
        return EncodingError(f"{path}: cannot be decoded as {codec} ({_short(e)}); pass the file's encoding=")
    return FileFormatError(f"{path}: cannot be read ({_short(e)})")


def _parse_error(
    path: Path,
    e: Exception,
    delimiter: str,
    header: bool,
    names: Sequence[str] | None = None,
    codec: str = "utf8",
) -> Exception:
    import pyarrow as pa
    import pyarrow.csv as pc

    text = str(e)
    # Text in another encoding can look ragged, or fail inside pyarrow's row handler (printed, not raised): bad
    # bytes are reported first, whatever pyarrow tripped on. This scan runs only on the error path.
    _check_encoding(path, codec, delimiter, names)
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
            read_options=pc.ReadOptions(use_threads=False, autogenerate_column_names=not header, encoding=codec),
            parse_options=pc.ParseOptions(delimiter=delimiter, invalid_row_handler=keep_first),
        )
        where = f"line {first[0].number}" if first and first[0].number is not None else "a line"
        shown_line = shown(first[0].text if first else "?")
        return FileFormatError(
            f"{path}: {where} has {ragged.group(2)} fields but the header has {ragged.group(1)} "
            f"({shown_line}); every row needs one value per column (quote values that contain "
            f"{delimiter!r})"
        )
    conv = re.search(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", text)
    if conv and names is not None:
        name = names[int(conv.group(1))]
        try:
            col = pc.read_csv(
                path,
                read_options=pc.ReadOptions(column_names=list(names), skip_rows=1 if header else 0, encoding=codec),
                parse_options=pc.ParseOptions(delimiter=delimiter),
                convert_options=pc.ConvertOptions(include_columns=[name], column_types={name: pa.string()}),
            ).column(0)
        except pa.ArrowInvalid:  # the value is not even text in this encoding
            _check_encoding(path, codec, delimiter, names)
            raise
        frame = col.to_pandas()
        bad = first_non_number(frame)
        origin = Origin(str(path), lines=header)
        where = origin.at(bad) if bad is not None else "a row"
        value = frame.iloc[bad] if bad is not None else conv.group(3)
        return NonNumericError(
            f"{path}: column {shown(name)}, {where}: {shown(value)} is not a number, and the column's other values "
            "are numbers; fix the value, or mark it missing (empty or NA)"
        )
    kind = "TSV" if delimiter == "\t" else "CSV"
    return FileFormatError(f"{path}: cannot be parsed as {kind}: {_short(e, 120)}")


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
        schema = pq.read_schema(path)
        check_names(schema.names, Origin(str(path)))
        _check_types(path, schema if columns is None else pa.schema([schema.field(c) for c in columns]))
        table = pq.read_table(path, columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError, KeyError) as e:
        raise FileFormatError(f"{path}: cannot be read as Parquet ({_short(e)})") from None
    if table.num_columns == 0 or table.num_rows == 0:
        raise EmptyTableError(
            f"{path}: the Parquet file has {table.num_rows} rows and {table.num_columns} columns"
        )
    return table


def _check_types(path: Path, schema: pa.Schema) -> None:
    """Refuse columns whose values are not numbers, text or booleans: they have no encoding as features."""
    import pyarrow as pa

    kinds = (
        (pa.types.is_nested, "lists or records", "flatten it into one column per element or field"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t),
         "raw bytes", "decode it to text or numbers"),
    )  # fmt: skip
    for f in schema:
        t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        for test, what, fix in kinds:
            if test(t):
                bad = [g.name for g in schema if test(g.type)]
                more = f" ({len(bad)} such columns: {listed(bad, 3)})" if len(bad) > 1 else ""
                raise ColumnTypeError(f"{path}: column {shown(f.name)} holds {what} ({_short(t, 40)}){more}; {fix}")
        if pa.types.is_temporal(t) and not pa.types.is_timestamp(t) and not pa.types.is_duration(t):
            raise NonNumericError(
                f"{path}: column {shown(f.name)} holds dates or times ({t}); convert them to numbers (e.g. days "
                "since a start date) before training"
            )


def _read_numpy(path: Path, kind: str) -> pd.DataFrame:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise FileFormatError(f"{path}: cannot be read as {kind} ({_short(e)})") from None
    if kind == "npy":
        if not isinstance(loaded, np.ndarray):
            raise FileFormatError(f"{path}: holds an .npz archive, not one array; rename it to .npz")
        frame = frame_from_array(loaded, str(path))
    else:
        try:
            frame = _npz_frame(path, loaded)
        except DataError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise FileFormatError(f"{path}: cannot be read as npz ({_short(e)})") from None
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise EmptyTableError(f"{path}: the array has shape {frame.shape}; a table needs rows and columns")
    return frame


def _npz_frame(path: Path, loaded: Any) -> pd.DataFrame:
    import pandas as pd

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
                f"{path}: holds arrays [{listed(keys)}]; an .npz table holds one array, or 'X' and 'y'"
            )
    return frame
