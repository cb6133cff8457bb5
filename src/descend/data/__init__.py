"""descend.data: tables in, tensors out.

read (:func:`read_table`) → check → split → scale and encode (:class:`Preprocessor`) → batch (:class:`Batches`),
all behind :func:`prepare`. Built-in tables come from :func:`load_dataset` and the ``make_*`` generators.

Example:
    >>> from descend.data import Batches, load_dataset, prepare
    >>> data = prepare(load_dataset("iris"), validation=0.2, seed=0)
    >>> batches = Batches(len(data.X_train), batch_size=32, seed=0)
    >>> for xb, yb in batches.over(data.X_train, data.y_train):
    ...     pass
"""

from __future__ import annotations

from descend.data.batching import Batches, LoaderBatches
from descend.data.datasets import Dataset, list_datasets, load_dataset
from descend.data.errors import (
    CategoryError,
    ColumnError,
    ColumnMismatchError,
    ColumnTypeError,
    ConstantColumnError,
    DataFileError,
    DataFileNotFoundError,
    DataOptionError,
    DataWarning,
    DuplicateColumnError,
    EmptyTableError,
    EncodingError,
    FileFormatError,
    LengthMismatchError,
    MissingColumnError,
    MissingValueError,
    NonFiniteError,
    NonNumericError,
    SplitError,
    TargetError,
    UnnamedColumnError,
)
from descend.data.prepare import PreparedData, prepare
from descend.data.preprocess import Preprocessor
from descend.data.read import read_table
from descend.data.split import split_indices
from descend.data.synthetic import make_blobs, make_linear, make_logistic, make_spirals
from descend.data.target import TargetEncoding

__all__ = [
    "Batches",
    "CategoryError",
    "ColumnError",
    "ColumnMismatchError",
    "ColumnTypeError",
    "ConstantColumnError",
    "DataFileError",
    "DataFileNotFoundError",
    "DataOptionError",
    "DataWarning",
    "Dataset",
    "DuplicateColumnError",
    "EmptyTableError",
    "EncodingError",
    "FileFormatError",
    "LengthMismatchError",
    "LoaderBatches",
    "MissingColumnError",
    "MissingValueError",
    "NonFiniteError",
    "NonNumericError",
    "PreparedData",
    "Preprocessor",
    "SplitError",
    "TargetEncoding",
    "TargetError",
    "UnnamedColumnError",
    "list_datasets",
    "load_dataset",
    "make_blobs",
    "make_linear",
    "make_logistic",
    "make_spirals",
    "prepare",
    "read_table",
    "split_indices",
]
