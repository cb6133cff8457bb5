"""Arrays of any rank: N examples of any shape (signals N x C x L, images N x C x H x W), split and standardised.

:func:`prepare_arrays` is :func:`~descend.data.prepare` for data that is not a table: ``(X, y)`` arrays or
tensors, an ``.npy``/``.npz`` file (``X`` and ``y``), or a folder of images (:mod:`descend.data.images`). The
split is the tables' (seeded, stratified); the target is coded as a table's target column is. Axis 1 is the
channel axis (N x C x L, N x C x H x W; give grayscale images as N x 1 x H x W; N x L is one channel), and each
channel is standardised with the mean and standard deviation of its training values,

.. math:: x'_{c} = (x_{c} - \\mu_c) / \\sigma_c,\\qquad \\mu_c, \\sigma_c \\text{ over every training value of channel } c,

and :class:`ArrayPreprocessor` keeps :math:`\\mu, \\sigma` (with the image size and colour mode), so a saved model
reapplies them to what it predicts from.

Example:
    >>> import numpy as np
    >>> X, y = np.random.default_rng(0).normal(5, 2, (100, 1, 8, 8)), np.arange(100) % 2
    >>> data = prepare_arrays((X, y), validation=0.2, seed=0)
    >>> data.X_train.shape, data.task, abs(float(data.X_train.mean())) < 1e-6
    (torch.Size([80, 1, 8, 8]), 'binary', True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from descend.data.errors import (
    DataOptionError,
    EmptyTableError,
    FileFormatError,
    LengthMismatchError,
    NonFiniteError,
    NonNumericError,
)
from descend.data.prepare import PreparedData
from descend.data.read import Origin
from descend.data.split import check_fractions, split_indices
from descend.data.target import TASKS, TargetEncoding, fit_target

__all__ = ["ArrayPreprocessor", "is_array_source", "prepare_arrays", "read_arrays"]


def _rank(a: Any) -> int:
    return int(getattr(a, "ndim", 0))


def is_array_source(source: Any) -> bool:
    """Whether ``source`` is data of examples that are not table rows: a folder (of images), an ``.npy``/``.npz``
    whose X has more than two axes, or a pair ``(X, y)`` / an array with X of more than two axes."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return True
        if path.suffix.lower() in (".npy", ".npz") and path.is_file():
            try:
                loaded = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception:  # a probe: the table reader reports a damaged file
                return False
            if isinstance(loaded, np.ndarray):
                return loaded.ndim > 2
            with loaded:
                key = next((k for k in ("X", "x") if k in loaded.files), None)
                return key is not None and loaded[key].ndim > 2
        return False
    if isinstance(source, (tuple, list)) and len(source) == 2:
        return _rank(source[0]) > 2
    return False


def _numeric(a: Any, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise NonNumericError(f"{what} has dtype {a.dtype}; expected numbers (bool, int or float)")
    return a


def read_arrays(source: Any, *, image_size: Any = None) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """``(X, y or None, file names or None)`` from a pair, an array, an ``.npy``/``.npz`` file or an image folder
    (then ``y`` holds each image's class name; ``image_size`` (H, W) they are resized to); checked: numbers,
    N >= 1, as many targets as examples."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        from descend.data.images import read_image_folder

        return read_image_folder(Path(source), size=image_size)
    y = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            loaded = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise FileFormatError(f"{path}: no such file") from None
        except (ValueError, OSError, EOFError) as e:
            raise FileFormatError(f"{path}: cannot be read as an array ({e})") from None
        if isinstance(loaded, np.ndarray):
            X = loaded
        else:
            with loaded:
                key = next((k for k in ("X", "x") if k in loaded.files), None)
                if key is None:
                    raise FileFormatError(f"{path}: holds arrays [{', '.join(loaded.files)}]; expected 'X' (and 'y')")
                X = loaded[key]
                y = loaded["y"] if "y" in loaded.files else None
        what = str(path)
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        X, y = source
        what = "X"
    else:
        X, what = source, "X"
    X = _numeric(X, what)
    if X.ndim < 2:
        raise FileFormatError(f"{what} has shape {tuple(X.shape)}; expected N examples of some shape (N x ...), "
                              "with at least one axis per example")  # fmt: skip
    if len(X) == 0:
        raise EmptyTableError(f"{what} has shape {tuple(X.shape)}: no examples")
    if y is not None:
        y = _numeric(y, f"{what}'s y") if not (isinstance(y, np.ndarray) and y.dtype.kind in "US") else y
        if y.ndim != 1 or len(y) != len(X):
            raise LengthMismatchError(f"{what}: X has {len(X)} examples but y has shape {tuple(y.shape)}; expected "
                                      f"one target per example ({len(X)},)")  # fmt: skip
    return X, y, None


class ArrayPreprocessor:
    """Per-channel standardisation of examples of a fixed shape, the target's coding, and for images the size and
    colour mode to read new images with. ``transform`` takes what :func:`read_arrays` reads."""

    kind = "array"

    def __init__(self, *, scale: str = "standard") -> None:
        if scale not in ("standard", "none"):
            raise DataOptionError(f"scale must be 'standard' or 'none' for arrays and images; got {scale!r}")
        self.scale = scale
        self.shape_: tuple[int, ...] = ()
        self.mean_: list[float] = []
        self.std_: list[float] = []
        self.image: dict[str, Any] | None = None  # size and mode, for a model trained on an image folder
        self.target_: TargetEncoding | None = None

    @property
    def feature_names_(self) -> list[str]:
        return []

    def fit(self, X: torch.Tensor) -> ArrayPreprocessor:
        self.shape_ = tuple(int(d) for d in X.shape[1:])
        channels = int(X.shape[1]) if X.dim() > 2 else 1
        self.mean_, self.std_ = [0.0] * channels, [1.0] * channels
        if self.scale == "standard":
            values = X.double().reshape(len(X), channels, -1).transpose(0, 1).reshape(channels, -1)
            std = values.std(1, correction=0)
            self.mean_ = values.mean(1).tolist()
            self.std_ = torch.where(std > 0, std, torch.ones_like(std)).tolist()
        return self

    def apply(self, X: torch.Tensor, what: str = "X") -> torch.Tensor:
        """Standardise examples already read as a tensor; refuse another example shape."""
        if tuple(X.shape[1:]) != self.shape_:
            raise FileFormatError(f"{what}: examples have shape {tuple(X.shape[1:])}; the model was trained on "
                                  f"{self.shape_}")  # fmt: skip
        X = X.to(torch.float32)
        if not torch.isfinite(X).all():
            i = int((~torch.isfinite(X.reshape(len(X), -1))).any(1).nonzero()[0])
            raise NonFiniteError(f"{what}: example {i + 1} holds a NaN or infinite value")
        shape = (1, len(self.mean_)) + (1,) * (X.dim() - 2) if X.dim() > 2 else (1, 1)
        mean = torch.tensor(self.mean_, dtype=torch.float32).reshape(shape)
        std = torch.tensor(self.std_, dtype=torch.float32).reshape(shape)
        return (X - mean) / std

    def transform(self, source: Any, **options: Any) -> torch.Tensor:
        """Features for new examples: an array/tensor, an ``.npy``/``.npz`` file or an image folder."""
        if self.image is not None and isinstance(source, (str, Path)) and Path(source).is_dir():
            from descend.data.images import read_image_folder

            X, _, _ = read_image_folder(Path(source), size=self.image["size"], mode=self.image["mode"],
                                        labelled=False)  # fmt: skip
        else:
            X, _, _ = read_arrays(source)
        return self.apply(torch.from_numpy(np.ascontiguousarray(X)), str(source) if isinstance(source, (str, Path))
                          else "X")  # fmt: skip

    def decode(self, indices: Any) -> np.ndarray:
        assert self.target_ is not None
        return self.target_.decode(indices)

    def describe(self) -> list[str]:
        scaled = "standardised per channel (training mean and std)" if self.scale == "standard" else "not scaled"
        read = f"images read as {self.image['mode']} {self.image['size']}; " if self.image else ""
        return [f"examples of shape {self.shape_}: {read}{scaled}"]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale, "shape": list(self.shape_), "mean": self.mean_,
                "std": self.std_, "image": self.image,
                "target": self.target_.to_dict() if self.target_ is not None else None}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArrayPreprocessor:
        try:
            pre = cls(scale=d["scale"])
            pre.shape_ = tuple(int(v) for v in d["shape"])
            pre.mean_, pre.std_ = [float(v) for v in d["mean"]], [float(v) for v in d["std"]]
            pre.image = d.get("image")
            pre.target_ = TargetEncoding.from_dict(d["target"]) if d.get("target") else None
        except (KeyError, TypeError, ValueError) as e:
            raise FileFormatError(f"the saved array preprocessing is incomplete or damaged ({e!r})") from None
        if len(pre.mean_) != len(pre.std_) or not all(s > 0 for s in pre.std_):
            raise FileFormatError("the saved array preprocessing has mismatched or non-positive statistics")
        return pre


def prepare_arrays(source: Any, *, target: Any = None, task: str = "auto", validation: float = 0.2,
                   test: float = 0.0, seed: int = 0, stratify: bool = True, scale: str = "standard",
                   image_size: Any = None) -> PreparedData:  # fmt: skip
    """Split and standardise data of examples of any shape into :class:`~descend.data.PreparedData`
    (``X_*`` float32 N x ..., ``feature_names`` empty). ``target`` only names the target in the results;
    ``image_size`` (H, W) is the size a folder's images are resized to (default 32 x 32)."""
    import pandas as pd

    if task not in TASKS:
        raise DataOptionError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    check_fractions(validation, test)
    X, y, _ = read_arrays(source, image_size=image_size)
    if y is None:
        raise FileFormatError(f"{source}: X has shape {tuple(X.shape)} but there are no targets; expected an .npz "
                              "with 'X' and 'y', or a pair (X, y) (a table is 1-D or 2-D)")  # fmt: skip
    pre = ArrayPreprocessor(scale=scale)
    name = str(target) if isinstance(target, str) else "y"
    origin = Origin(str(source) if isinstance(source, (str, Path)) else "arrays")
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        from descend.data.images import image_settings

        pre.image = image_settings(Path(source), image_size)
    coding = fit_target(pd.DataFrame({name: y}), [name], task, origin)
    y_t = coding.encode(pd.DataFrame({name: y}), origin)
    labels = y_t.numpy() if coding.task != "regression" and stratify else None
    parts = [p for p in split_indices(len(X), validation=validation, test=test, seed=int(seed), labels=labels,
                                      origin=str(origin))]  # fmt: skip
    if test <= 0:
        parts = parts[:2]
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    train = Xt[torch.from_numpy(parts[0])].to(torch.float32)
    if not torch.isfinite(train).all():
        pre.shape_ = tuple(int(d) for d in train.shape[1:])
        pre.apply(train, str(origin))  # raises, naming the example
    pre.fit(train)
    pre.target_ = coding
    xs = [pre.apply(Xt[torch.from_numpy(p)], str(origin)) for p in parts]
    ys = [y_t[torch.from_numpy(p)] for p in parts]
    has_test = len(parts) > 2
    return PreparedData(
        xs[0], ys[0], xs[1], ys[1], xs[2] if has_test else None, ys[2] if has_test else None,
        task=coding.task, classes=list(coding.classes), feature_names=[], target_name=name,
        preprocessor=pre,  # type: ignore[arg-type]
        index_train=torch.from_numpy(parts[0]), index_val=torch.from_numpy(parts[1]),
        index_test=torch.from_numpy(parts[2]) if has_test else None,
    )  # fmt: skip
