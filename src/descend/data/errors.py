"""The specific errors of ``descend.data``.

Every class derives from :class:`descend.errors.DataError` (itself a ``DescendError`` and a ``ValueError``), so
``except DataError`` catches all bad data and the command line maps them to one exit code. The leaves say what is
wrong, so a test (or a caller) can tell a ragged row from a missing value without reading the message.

Messages follow one shape: *where* (file, column, line or row), *what* was found (the value), *what would be
accepted*. Rows are counted as a person counts them: ``line 7`` is the seventh line of a text file (the header is
line 1); ``row 7`` is the seventh row of a table that has no lines (Parquet, NumPy, pandas, a tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from descend.errors import ConfigError, DataError

__all__ = [
    "CategoryError",
    "ColumnError",
    "ColumnMismatchError",
    "ColumnTypeError",
    "ConstantColumnError",
    "DataFileError",
    "DataFileNotFoundError",
    "DataOptionError",
    "DataWarning",
    "DuplicateColumnError",
    "EmptyTableError",
    "EncodingError",
    "FileFormatError",
    "LengthMismatchError",
    "MissingColumnError",
    "MissingValueError",
    "NonFiniteError",
    "NonNumericError",
    "SplitError",
    "TargetError",
    "UnnamedColumnError",
    "listed",
    "shown",
]

#: Longest repr of one value in a message, and how many offenders a message lists before "and N more": every
#: message stays one line a person can read (under 300 characters with a path of ordinary length).
VALUE_CHARS = 40
LISTED = 5


def shown(value: Any, width: int = VALUE_CHARS) -> str:
    """``repr(value)``, cut to ``width`` characters with an ellipsis (a cell can hold a whole paragraph):
    ``shown("x" * 100, width=10)`` is ``'xxxxx...'``, quotes kept."""
    text = repr(value)
    if len(text) <= width:
        return text
    return text[: width - 4] + "..." + text[-1] if text[-1] in "'\"" else text[: width - 3] + "..."


def listed(values: Sequence[Any], k: int = LISTED) -> str:
    """The first ``k`` values (each :func:`shown`), then "and N more": ``listed(range(8), k=3)`` is
    ``0, 1, 2 and 5 more``."""
    head = ", ".join(shown(v) for v in values[:k])
    return head + (f" and {len(values) - k} more" if len(values) > k else "")


class DataOptionError(DataError, ConfigError):
    """An argument of a data function is out of range (``batch_size=0``, ``validation=1.5``, ``scale="z"``)."""


class DataFileError(DataError):
    """A path cannot be read as a table."""


class DataFileNotFoundError(DataFileError, FileNotFoundError):
    """The path does not exist (also a ``FileNotFoundError``)."""


class FileFormatError(DataFileError):
    """The file is a directory, has an unknown extension, is binary, or does not parse (ragged rows)."""


class EncodingError(FileFormatError):
    """A text file is not in the encoding it was read with (UTF-8 unless ``encoding=`` says otherwise)."""


class EmptyTableError(DataFileError):
    """The table has no columns or no rows (an empty file, a header-only file, every row dropped)."""


class ColumnError(DataError):
    """The columns of a table are not the ones needed."""


class MissingColumnError(ColumnError):
    """A column that was asked for (the target, a feature at prediction time) is not in the table."""


class DuplicateColumnError(ColumnError):
    """Two columns share a name, so a column cannot be chosen by name."""


class UnnamedColumnError(ColumnError):
    """A column's name is empty (an empty field in the header line), so it cannot be chosen or reported."""


class ColumnTypeError(ColumnError):
    """A column holds values that are not numbers, text or booleans (lists, structs, maps): nothing to encode."""


class ColumnMismatchError(ColumnError):
    """At prediction time the table has missing, extra or differently typed feature columns."""


class NonNumericError(DataError):
    """A numeric column holds a value that is not a number."""


class MissingValueError(DataError):
    """A value is missing (empty, NA, NaN) and no ``impute=`` choice was made, or a column has no values at all."""


class NonFiniteError(DataError):
    """A value is infinite; no imputation choice applies to it."""


class ConstantColumnError(DataError):
    """A feature column holds one value in every training row (raised only with ``constant="error"``)."""


class TargetError(DataError):
    """The target cannot be learned as asked: one class only, wrong task override, non-numeric regression."""


class CategoryError(DataError):
    """A categorical column holds a category that was not seen in the training rows (with ``unseen="error"``)."""


class SplitError(DataError):
    """There are too few rows (or too few of one class) for the requested train/validation/test split."""


class DataWarning(UserWarning):
    """Something in the data was changed on the way in (a constant column dropped); the message says what."""


class LengthMismatchError(DataError):
    """Features and target given separately, ``(X, y)``, have different numbers of rows."""
