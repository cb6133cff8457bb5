"""A trained model on disk, and back: ``model.safetensors`` (weights) + ``model.json`` (everything else).

``model.json`` holds the architecture (for descend's models), the task, the classes, the feature and target
names, the loss, and the preprocessing (``preprocessor.to_dict()``), so :func:`load` gives a model that predicts
from raw rows.

Example:
    >>> import tempfile, torch, descend
    >>> from descend.models import LinearRegression
    >>> from descend.train.saved import save_model
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_model(LinearRegression(2, 1), folder, task="regression")
    >>> descend.load(folder).predict(torch.ones(3, 2)).tolist()
    [0.0, 0.0, 0.0]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from descend.errors import ConfigError, DataError, DescendError, ModelFolderError
from descend.models import Model, from_config
from descend.models.size import check_size
from descend.train.run import atomic_write, jsonable

__all__ = ["SavedModel", "load", "save_model"]

FORMAT = 1


def save_model(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    task: str,
    data: Any = None,
    loss: str | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``folder``; return the folder."""
    from safetensors.torch import save

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    arch = model.config() if isinstance(model, Model) else {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    pre = getattr(data, "preprocessor", None)
    meta = {
        "format": FORMAT,
        "model": arch,
        "descend_model": isinstance(model, Model),
        "task": task,
        "loss": loss,
        "n_features": getattr(data, "n_features", None),
        "classes": getattr(data, "classes", None),
        "feature_names": getattr(data, "feature_names", None),
        "target_name": getattr(data, "target_name", None),
        "preprocessor": pre.to_dict() if pre is not None and hasattr(pre, "to_dict") else None,
    }
    vocabulary = getattr(data, "vocabulary", None)  # a language model's tokens: what sampling decodes
    if vocabulary is not None:
        meta["vocabulary"] = vocabulary.to_dict()
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # device-free
    atomic_write(path / "model.safetensors", save(weights))
    atomic_write(path / "model.json", (json.dumps(jsonable(meta), indent=2) + "\n").encode())
    return path


class SavedModel:
    """A loaded model: ``predict`` gives values (regression) or labels (classification), ``predict_proba``
    class probabilities. Inputs are raw rows when the preprocessing was saved, else feature tensors."""

    def __init__(self, model: nn.Module, meta: dict[str, Any], preprocessor: Any = None) -> None:
        self.model = model.eval()
        self.meta = meta
        self.task: str = meta["task"]
        self.classes: list[Any] | None = meta.get("classes")
        self.preprocessor = preprocessor

    def _features(self, X: Any) -> Tensor:
        if self.preprocessor is not None and not isinstance(X, Tensor):
            X = self.preprocessor.transform(X)
        dtype = next(self.model.parameters()).dtype
        return torch.as_tensor(X).to(dtype)

    @torch.no_grad()
    def output(self, X: Any) -> Tensor:
        """The model's raw output (values, or logits for classification)."""
        return self.model(self._features(X))

    def predict_proba(self, X: Any) -> Tensor:
        if self.task == "regression":
            raise ModelFolderError("predict_proba: the model is a regression model; use predict")
        out = self.output(X)
        if self.task == "binary":
            p = torch.sigmoid(out.reshape(-1))
            return torch.stack([1 - p, p], dim=1)
        return torch.softmax(out, dim=-1)

    def predict(self, X: Any) -> Any:
        out = self.output(X)
        if self.task == "regression":
            return out.squeeze(-1) if out.dim() == 2 and out.shape[1] == 1 else out
        idx = (out.reshape(-1) > 0).long() if self.task == "binary" else out.argmax(dim=-1)
        if self.preprocessor is not None and hasattr(self.preprocessor, "decode"):
            return self.preprocessor.decode(idx)
        return idx


def _folder(path: Path) -> Path:
    for candidate in (path, path / "model"):
        have = [(candidate / name).is_file() for name in _FILES]
        if all(have):
            return candidate
        if any(have):
            missing = _FILES[have.index(False)]
            raise ModelFolderError(
                f"{candidate / missing}: missing (the folder holds {_FILES[have.index(True)]}); a saved model is "
                "both files, written together"
            )
    raise ModelFolderError(
        f"load: {str(path)!r} holds no saved model; expected a run folder (with model/) or a folder with "
        "model.json and model.safetensors"
    )


_FILES = ("model.json", "model.safetensors")
_TASKS = ("regression", "binary", "multiclass")


def _short(e: BaseException, width: int = 90) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def _read_meta(path: Path) -> dict[str, Any]:
    """``model.json``, checked against its schema: every field :func:`load` and :class:`SavedModel` read."""
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ModelFolderError(f"{path}: not UTF-8 text (byte {e.start}); the file is damaged") from None
    except json.JSONDecodeError as e:
        raise ModelFolderError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); the file is damaged "
            "(truncated or edited)"
        ) from None
    if not isinstance(meta, dict):
        raise ModelFolderError(f"{path}: holds a JSON {type(meta).__name__}, not the object descend writes")
    if meta.get("format") != FORMAT:
        raise ModelFolderError(f"{path}: format is {meta.get('format')!r}; this descend reads format {FORMAT}")

    def bad(key: str, expected: str) -> ModelFolderError:
        shown = repr(meta.get(key))
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return ModelFolderError(f"{path}: {key!r} is {shown}; expected {expected}")

    arch = meta.get("model")
    if not isinstance(arch, dict) or not isinstance(arch.get("class"), str):
        raise bad("model", "an object with the model's 'class' and sizes")
    if meta.get("task") not in _TASKS:
        raise bad("task", "one of " + ", ".join(_TASKS))
    if not isinstance(meta.get("descend_model"), bool):
        raise bad("descend_model", "true or false")
    checks: dict[str, tuple[type | tuple[type, ...], str]] = {
        "classes": (list, "a list of class labels or null"),
        "feature_names": (list, "a list of names or null"),
        "preprocessor": (dict, "the saved preprocessing (an object) or null"),
        "loss": (str, "a loss name or null"),
        "target_name": ((str, list), "the target column name(s) or null"),
    }
    for key, (kind, expected) in checks.items():
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise bad(key, expected)
    n = meta.get("n_features")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise bad("n_features", "a positive integer or null")
    return meta


def _read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of each tensor in ``model.safetensors``, from its header (no weights are read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
            kinds = {k: f.get_slice(k).get_dtype() for k in shapes}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFolderError(
            f"{path}: not a readable safetensors file ({_short(e)}); the file is damaged or of another format"
        ) from None
    # batch norm counts its batches in an integer buffer; every other tensor is a floating-point weight
    odd = [k for k, t in kinds.items() if t not in ("F16", "BF16", "F32", "F64")
           and not (t == "I64" and k.endswith("num_batches_tracked"))]
    if odd:
        raise ModelFolderError(f"{path}: tensor {odd[0]!r} holds {kinds[odd[0]]}, not floating-point weights")
    return shapes


def _rebuild(meta: dict[str, Any], path: Path) -> nn.Module:
    """The model ``model.json`` describes: checked on the meta device (sizes, memory), then allocated, unfilled."""
    config = dict(meta["model"])
    shift, scale = config.pop("output_shift", None), config.pop("output_scale", None)
    try:
        with torch.device("meta"):
            skeleton = from_config(config)
    except (ConfigError, TypeError, ValueError) as e:
        raise ModelFolderError(f"{path}: 'model' does not describe a model ({_short(e)})") from None
    if not skeleton.built:
        raise ModelFolderError(f"{path}: 'model' has no in_features/out_features, so it cannot be rebuilt")
    try:
        check_size(skeleton, what=f"{path}'s {skeleton.__class__.__name__}")
    except ConfigError as e:
        raise ModelFolderError(str(e).removeprefix("model: ")) from None
    model = skeleton.to_empty(device="cpu")
    if scale is not None:
        try:
            model.set_output_scale(shift, scale)
        except (ConfigError, TypeError, ValueError, RuntimeError) as e:
            raise ModelFolderError(f"{path}: 'model' has an invalid output scale ({_short(e)})") from None
    return model


def _check_shapes(model: nn.Module, shapes: dict[str, tuple[int, ...]], weights: Path) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    name = type(model).__name__
    for k, shape in want.items():
        if k not in shapes:
            raise ModelFolderError(f"{weights}: no tensor {k!r}, which the {name} of model.json has")
        if shapes[k] != shape:
            raise ModelFolderError(
                f"{weights}: tensor {k!r} has shape {list(shapes[k])} but the {name} of model.json needs "
                f"{list(shape)}; the two files are not from the same model"
            )
    extra = [k for k in shapes if k not in want]
    if extra:
        raise ModelFolderError(f"{weights}: tensor {extra[0]!r} is not part of the {name} of model.json")


def _outputs(meta: dict[str, Any]) -> tuple[int | None, str]:
    """The number of outputs the saved task needs, and why (None: not known)."""
    task, classes, target = meta["task"], meta.get("classes"), meta.get("target_name")
    if task == "binary":
        return 1, "a binary task has 1 output (a logit)"
    if task == "multiclass":
        return (len(classes), f"a multiclass task has one output per class ({len(classes)})") if classes else (None, "")
    if target is None:
        return None, ""
    k = len(target) if isinstance(target, list) else 1
    return k, f"a regression task has one output per target column ({k})"


def _check_task(meta: dict[str, Any], model: nn.Module, pre: Any, path: Path) -> None:
    """The task, classes and features of ``model.json`` agree with each other and with the model's sizes."""
    task, classes = meta["task"], meta.get("classes")
    if task != "regression" and classes is not None and len(classes) < 2:
        raise ModelFolderError(f"{path}: {task} task with {len(classes)} class(es); classification needs two or more")
    if task == "binary" and classes is not None and len(classes) != 2:
        raise ModelFolderError(f"{path}: binary task with {len(classes)} classes; a binary task has 2")
    out = getattr(model, "out_features", None)
    need, why = _outputs(meta)
    if out is not None and need is not None and out != need:
        raise ModelFolderError(f"{path}: task {task!r} does not fit the model's {out} output(s): {why}")
    inputs = getattr(model, "in_features", None)
    n = meta.get("n_features")
    if getattr(pre, "kind", None) == "array":  # examples of several axes: their shape, not a column count
        if inputs is not None and pre.shape_ and isinstance(model, Model):
            try:
                channels = model.in_features_for(tuple(pre.shape_))
            except DescendError as e:
                raise ModelFolderError(f"{path}: {e}") from None
            if channels != inputs:
                raise ModelFolderError(f"{path}: the preprocessing makes examples of shape {tuple(pre.shape_)}, "
                                       f"which the model (in_features={inputs}) does not take")  # fmt: skip
        n = None

    def takes(width: int) -> int:  # a CNN1d takes a table's columns as one channel
        return model.in_features_for((width,)) if isinstance(model, Model) else width

    if inputs is not None and n is not None and takes(n) != inputs:
        raise ModelFolderError(f"{path}: n_features is {n} but the model takes {inputs} inputs")
    if pre is None:
        return
    width = len(pre.feature_names_)
    if getattr(pre, "kind", None) != "array" and inputs is not None and takes(width) != inputs:
        raise ModelFolderError(f"{path}: the preprocessor makes {width} features but the model takes {inputs}")
    target = pre.target_
    if target is not None and target.task != task:
        raise ModelFolderError(f"{path}: task is {task!r} but the preprocessor's target is {target.task!r}")
    if target is not None and classes is not None and list(target.classes) != list(classes):
        raise ModelFolderError(f"{path}: 'classes' differ from the preprocessor's target classes")


def _preprocessor(meta: dict[str, Any], path: Path) -> Any:
    if meta.get("preprocessor") is None:
        return None
    from descend.data import Preprocessor
    from descend.data.arrays import ArrayPreprocessor

    try:
        if meta["preprocessor"].get("kind") == ArrayPreprocessor.kind:
            return ArrayPreprocessor.from_dict(meta["preprocessor"])
        return Preprocessor.from_dict(meta["preprocessor"])
    except DataError as e:
        raise ModelFolderError(f"{path}: preprocessor: {e}") from None


def load(path: str | os.PathLike[str], *, model: nn.Module | None = None) -> SavedModel:
    """Load a saved model from a run folder or a model folder, ready to predict.

    Models of descend are rebuilt from ``model.json``; for any other ``nn.Module`` pass an instance of the same
    architecture as ``model``. Both files are checked before a weight is read: ``model.json`` against its schema,
    the tensors' names and shapes against the model it describes (and the memory it needs), the task and classes
    against the model's outputs and the saved preprocessing. A damaged or inconsistent folder raises one
    :class:`~descend.errors.ModelFolderError` naming the file and what is wrong.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = _folder(Path(path))
    json_path, weights = folder / "model.json", folder / "model.safetensors"
    meta = _read_meta(json_path)
    shapes = _read_shapes(weights)
    if model is None:
        if not meta["descend_model"]:
            raise ModelFolderError(
                f"load: the model in {str(folder)!r} is a {meta['model']['class']}, not one of descend's models; "
                "pass model=<an instance of that class> to load its weights"
            )
        model = _rebuild(meta, json_path)
    _check_shapes(model, shapes, weights)
    pre = _preprocessor(meta, json_path)
    _check_task(meta, model, pre, json_path)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFolderError(f"{weights}: cannot be read ({_short(e)}); the file is damaged") from None
    model.load_state_dict(state)
    return SavedModel(model, meta, pre)
