"""Built-in datasets for demos and tests, from files that ship inside installed packages (never downloaded).

======================  =====  ========  ===========  ==========================================================
name                    rows   features  target       task
======================  =====  ========  ===========  ==========================================================
``iris``                  150         4  species      multiclass (3 species)
``wine``                  178        13  cultivar     multiclass (3 cultivars)
``breast_cancer``         569        30  diagnosis    binary (malignant, benign)
``digits``               1797        64  digit        multiclass (0-9, 8x8 images)
``diabetes``              442        10  progression  regression (disease progression after one year)
``mnist1d``              5000        40  digit        multiclass (0-9, 1-D signals; needs ``pip install mnist1d``)
======================  =====  ========  ===========  ==========================================================

The first five are scikit-learn's bundled copies; ``mnist1d`` is generated locally by the ``mnist1d`` package with
its default arguments (seed 42), never fetched.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from descend.data.errors import DataOptionError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Dataset", "list_datasets", "load_dataset"]


@dataclass(frozen=True)
class Dataset:
    """A table with a named target column, ready for :func:`descend.data.prepare`.

    Attributes:
        name: short name (``"iris"``).
        frame: features and target, one row per example.
        target: the name of the target column in ``frame``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        description: one line on where the data comes from.
        info: extra facts, e.g. the true weights of a synthetic linear problem.

    Example:
        >>> ds = load_dataset("iris")
        >>> ds.frame.shape, ds.target
        ((150, 5), 'species')
    """

    name: str
    frame: pd.DataFrame = field(repr=False)
    target: str
    task: str
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def feature_names(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.target]


_SKLEARN = {
    # name: (loader, target column, label names by index or None, task, description)
    "iris": ("load_iris", "species", True, "multiclass", "Fisher's iris flowers (scikit-learn bundled copy)"),
    "wine": ("load_wine", "cultivar", True, "multiclass", "UCI wine recognition (scikit-learn bundled copy)"),
    "breast_cancer": (
        "load_breast_cancer",
        "diagnosis",
        True,
        "binary",
        "Wisconsin diagnostic breast cancer (scikit-learn bundled copy)",
    ),
    "digits": (
        "load_digits",
        "digit",
        False,
        "multiclass",
        "8x8 handwritten digits (scikit-learn bundled copy)",
    ),
    "diabetes": (
        "load_diabetes",
        "progression",
        False,
        "regression",
        "diabetes progression after one year; features are mean-centred and scaled (scikit-learn bundled copy)",
    ),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`; ``mnist1d`` only when the ``mnist1d`` package is installed."""
    import importlib.util

    names = list(_SKLEARN)
    if importlib.util.find_spec("mnist1d") is not None:
        names.append("mnist1d")
    return names


def load_dataset(name: str) -> Dataset:
    """Load a built-in dataset by name (see the module table); the frame is a fresh copy each call."""
    if name == "mnist1d":
        frame = _mnist1d().copy()
        return Dataset(name, frame, "digit", "multiclass", "MNIST-1D generated locally (mnist1d, seed 42)")
    if name not in _SKLEARN:
        known = [*_SKLEARN, "mnist1d"]
        near = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise DataOptionError(f"dataset must be one of {', '.join(map(repr, known))}; got {name!r}{hint}")
    _, target, _, task, description = _SKLEARN[name]
    return Dataset(name, _sklearn(name).copy(), target, task, description)


@functools.cache
def _sklearn(name: str) -> pd.DataFrame:
    import sklearn.datasets

    loader, target, named, _, _ = _SKLEARN[name]
    bunch = getattr(sklearn.datasets, loader)(as_frame=True)
    frame = bunch.frame.rename(columns={"target": target})
    if named:
        frame[target] = [str(bunch.target_names[i]) for i in bunch.target]
    return frame


@functools.cache
def _mnist1d() -> pd.DataFrame:
    import random

    import numpy as np
    import pandas as pd

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataOptionError(
            "dataset 'mnist1d' needs the mnist1d package: pip install 'descend[data]' (or pip install mnist1d)"
        ) from None
    # make_dataset seeds the global `random` and NumPy generators; put them back so loading data has no side effect.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(x.shape[1])])
    frame["digit"] = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return frame
