"""The report's views of a model trained on images or signals: misclassified validation examples, the confusion
matrix, and a CNN's first-layer filters.

The run folder holds the saved model and the config (data path, seed, validation share); the validation split is
made again exactly as training made it (:func:`~descend.data.arrays.prepare_arrays` is seeded), so the views show
the examples the run was validated on. A run whose data cannot be read again gets a line saying so instead.
Labels are the user's class names: they are escaped in the page and drawn as plain text (no mathtext) in figures.

Example:
    >>> from descend.models import CNN
    >>> w = first_conv(CNN(1, 2, channels=(4,)))
    >>> tuple(w.shape), len(plot_filters(w).axes)
    ((4, 1, 3, 3), 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from descend.report.html import Page

__all__ = ["add_image_views", "plot_filters", "plot_misclassified"]

#: misclassified examples shown at most
SHOWN = 24


def _grid(n: int, width: float, height: float) -> tuple[Figure, list[Any]]:
    """A figure of ``n`` small panels, at most 8 a row, each ``width`` x ``height`` inches."""
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(width * cols, height * rows))
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def plot_misclassified(X: np.ndarray, true: list[str], predicted: list[str]) -> Figure | None:
    """A grid of examples (N x C x H x W images, or N x C x L signals) titled ``true -> predicted``."""
    n = min(len(X), SHOWN)
    if n == 0:
        return None
    fig, axes = _grid(n, 1.3, 1.5)
    for i, ax in enumerate(axes):
        x = X[i]
        if x.ndim == 3:
            image = x[0] if x.shape[0] != 3 else np.clip(x.transpose(1, 2, 0), 0, None)
            if x.shape[0] == 3:
                image = image / (image.max() or 1.0)
            ax.imshow(image, cmap="gray" if x.shape[0] != 3 else None)
        else:
            ax.plot(x.reshape(-1, x.shape[-1]).T, linewidth=0.8)
        ax.set_title(f"{true[i]} \u2192 {predicted[i]}", fontsize=7, parse_math=False)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def first_conv(model: torch.nn.Module) -> torch.Tensor | None:
    """The weight of the first convolution in ``model`` (out x in x kernel...), or None."""
    for layer in model.modules():
        if isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d)):
            return layer.weight.detach()
    return None


def plot_filters(weight: torch.Tensor) -> Figure:
    """Each first-layer filter: an image (2-D; RGB when it reads three channels) or a curve (1-D)."""
    w = weight.float().numpy()
    n = min(len(w), 32)
    fig, axes = _grid(n, 1.1, 1.1)
    for i, ax in enumerate(axes):
        f = w[i]
        if f.ndim == 3:
            if f.shape[0] == 3:
                f = (f - f.min()) / ((f.max() - f.min()) or 1.0)
                ax.imshow(f.transpose(1, 2, 0))
            else:
                ax.imshow(f.mean(0), cmap="coolwarm")
        else:
            ax.plot(f.T, linewidth=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _validation(run: Any) -> tuple[Any, Any, Any] | None:
    """(saved model, prepared data, raw validation examples) for a run trained on examples of several axes."""
    from descend.data.arrays import is_array_source, prepare_arrays, read_arrays
    from descend.errors import ModelFolderError
    from descend.train.saved import load

    if not (run.path / "model" / "model.json").is_file():
        return None
    try:
        saved = load(run.path)
    except ModelFolderError:  # a model descend cannot rebuild (the user's own module): nothing to show here
        return None
    if getattr(saved.preprocessor, "kind", None) != "array" or saved.task == "regression":
        return None
    args = run.config.get("arguments", {})
    source = Path(str(args.get("data")))
    if not is_array_source(source):
        return saved, None, None
    validation = args.get("validation")
    image = saved.preprocessor.image
    data = prepare_arrays(source, target=args.get("target"), validation=0.2 if validation is None else validation,
                          seed=int(run.config.get("seed", 0)), image_size=image["size"] if image else None)  # fmt: skip
    raw, _, _ = read_arrays(source, image_size=image["size"] if image else None)
    return saved, data, raw[data.index_val.numpy()]


def add_image_views(page: Page, run: Any) -> None:
    """Append the views to ``page`` when the run's model was trained on images or signals; else nothing."""
    found = _validation(run)
    if found is None:
        return
    saved, data, raw = found
    page.heading("Examples", "examples")
    if data is None:
        page.paragraph(f"The training data ({run.config.get('arguments', {}).get('data')}) cannot be read from "
                       "here, so the misclassified examples are not shown.", css="sub")  # fmt: skip
    elif len(data.X_val):
        with torch.no_grad():
            out = saved.model(data.X_val.to(next(saved.model.parameters()).dtype))
        pred = (out.reshape(-1) > 0).long() if saved.task == "binary" else out.argmax(-1)
        true = data.y_val.long()
        names = [str(c) for c in data.classes]
        wrong = (pred != true).nonzero().reshape(-1).numpy()
        page.figure(plot_misclassified(raw[wrong], [names[i] for i in true[wrong]], [names[i] for i in pred[wrong]]),
                    f"{len(wrong)} of {len(true)} validation examples misclassified (true \u2192 predicted); the "
                    f"first {min(len(wrong), SHOWN)} shown.", "misclassified validation examples")  # fmt: skip
        matrix = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(matrix, (true.numpy(), pred.numpy()), 1)
        page.paragraph("Confusion matrix on the validation examples: one row per true class, one column per "
                       "predicted class.")  # fmt: skip
        page.table(["true \\ predicted", *names], [(names[i], *row.tolist()) for i, row in enumerate(matrix)])
    weight = first_conv(saved.model)
    if weight is not None:
        page.figure(plot_filters(weight), f"The {len(weight)} filters of the first convolution "
                    f"({' x '.join(str(d) for d in weight.shape[1:])} each).", "first-layer filters")  # fmt: skip
