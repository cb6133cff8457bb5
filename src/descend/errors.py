"""The exceptions descend raises for bad input.

Every error a person can cause derives from :class:`DescendError`, so the command line can tell bad input
(exit code 2, one line on stderr) from a bug (exit code 1). Each also derives from the built-in exception a
Python user would expect (``ValueError``, ``TypeError``, ``FileNotFoundError``), so ``except ValueError`` keeps
working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DescendError",
    "ModelFolderError",
]


class DescendError(Exception):
    """Base class of every error caused by the caller's input, not by a bug in descend."""


class ConfigError(DescendError, ValueError):
    """An argument or option has a value that is not accepted (the message names it and what is accepted)."""


class DataError(DescendError, ValueError):
    """A table, file or array cannot be used for training (the message names the file, column and row)."""


class ModelFolderError(DescendError, ValueError):
    """A folder given as a saved model or run does not hold one."""
