"""A folder of images, one subfolder per class, read with Pillow into N x C x H x W float arrays.

Every image is converted to one colour mode (``"L"``, one channel, when every image is grayscale; else ``"RGB"``)
and resized to ``size`` (H, W; bilinear), then scaled to [0, 1]. Class names are the subfolders' names, sorted.
Files Pillow cannot read are refused by name, not skipped: a silently smaller dataset is a wrong one.
:func:`~descend.data.arrays.prepare_arrays` standardises the channels with the training images' statistics.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for label in ("cat", "dog"):
    ...     (root / label).mkdir()
    ...     Image.fromarray(np.full((10, 12), 200, np.uint8)).save(root / label / "a.png")
    >>> X, y, files = read_image_folder(root, size=(8, 8))
    >>> X.shape, y.tolist(), files[0]
    ((2, 1, 8, 8), ['cat', 'dog'], 'cat/a.png')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from descend.data.errors import DataFileError, EmptyTableError, TargetError

__all__ = ["IMAGE_SIZE", "IMAGE_SUFFIXES", "image_settings", "read_image_folder"]

#: the size (H, W) images are resized to unless another is stated
IMAGE_SIZE = (32, 32)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GRAY = ("1", "L", "LA", "I", "I;16", "F")


def _files(folder: Path, labelled: bool) -> list[Path]:
    if not folder.is_dir():
        raise DataFileError(f"{folder}: not a folder; expected a folder of images with one subfolder per class")
    if labelled:
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        files = [f for c in classes for f in sorted(c.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise EmptyTableError(f"{folder} is a directory with no images in class subfolders (found "
                                  f"{len(classes)} subfolder(s)); expected a table file, or a folder with one "
                                  f"subfolder per class holding {', '.join(IMAGE_SUFFIXES)} files")  # fmt: skip
        with_images = {f.parent.name for f in files}
        if len(with_images) < 2:
            raise TargetError(f"{folder}: images of one class only ({', '.join(sorted(with_images))}); "
                              "classification needs two or more class subfolders with images")  # fmt: skip
        return files
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EmptyTableError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _open(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataFileError(f"{path}: cannot be read as an image ({type(e).__name__}: {e}); fix or remove it") from None
    return image


def image_settings(folder: Path, size: Any = None, files: list[Path] | None = None) -> dict[str, Any]:
    """The size and colour mode the images of ``folder`` (or ``files``) are read with (saved with a model trained
    on them)."""
    modes = set()
    for f in files if files is not None else _files(folder, labelled=False):
        from PIL import Image

        try:
            with Image.open(f) as image:
                modes.add(image.mode)
        except Exception:  # unreadable: read_image_folder names it
            continue
    mode = "L" if modes and modes <= set(_GRAY) else "RGB"
    return {"size": _size(size), "mode": mode}


def _size(size: Any) -> list[int]:
    """[H, W] from a pair, one int (a square) or None (the default)."""
    if size is None:
        return list(IMAGE_SIZE)
    return [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]


def read_image_folder(folder: Path, *, size: Any = None, mode: str | None = None,
                      labelled: bool = True) -> tuple[np.ndarray, np.ndarray | None, list[str]]:  # fmt: skip
    """``(X, class names, file names)``: X float32 N x C x H x W in [0, 1]; with ``labelled=False`` every image
    under ``folder`` and no classes."""
    from PIL import Image

    files = _files(folder, labelled)
    settings: dict[str, Any] = (image_settings(folder, size, files) if mode is None
                                else {"size": _size(size), "mode": mode})  # fmt: skip
    h, w = (int(v) for v in settings["size"])
    channels = 1 if settings["mode"] == "L" else 3
    X = np.empty((len(files), channels, h, w), dtype=np.float32)
    for i, f in enumerate(files):
        image = _open(f).convert(settings["mode"]).resize((w, h), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        X[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    labels = np.array([f.parent.name for f in files]) if labelled else None
    return X, labels, [f.relative_to(folder).as_posix() for f in files]
