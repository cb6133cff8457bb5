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

from descend.errors import ModelFolderError
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

    from descend.models import Model

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
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
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
        if (candidate / "model.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise ModelFolderError(
        f"load: {str(path)!r} holds no saved model; expected a run folder (with model/) or a folder with "
        "model.json and model.safetensors"
    )


def load(path: str | os.PathLike[str], *, model: nn.Module | None = None) -> SavedModel:
    """Load a saved model from a run folder or a model folder, ready to predict.

    Models of descend are rebuilt from ``model.json``; for any other ``nn.Module`` pass an instance of the same
    architecture as ``model``.
    """
    from safetensors.torch import load_file

    from descend.models import from_config

    folder = _folder(Path(path))
    meta = json.loads((folder / "model.json").read_text())
    if model is None:
        if not meta.get("descend_model"):
            raise ModelFolderError(
                f"load: the model in {str(folder)!r} is a {meta['model']['class']}, not one of descend's models; "
                "pass model=<an instance of that class> to load its weights"
            )
        model = from_config(meta["model"])
    model.load_state_dict(load_file(folder / "model.safetensors"))
    pre = None
    if meta.get("preprocessor") is not None:
        import descend.data

        cls = getattr(descend.data, "Preprocessor", None)
        if cls is not None:
            pre = cls.from_dict(meta["preprocessor"])
    return SavedModel(model, meta, pre)
