"""``descend predict``: the rows of a table through a saved model and its preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from descend.cli._output import Out, from_descend, output_options, shown_warnings
from descend.cli._train import DATA, BadInput

__all__ = ["model_path", "predict"]

ENCODING = click.option("--encoding", default=None, help="Text encoding of a CSV/TSV DATA, e.g. latin-1 or "
                        "cp1252. Default: UTF-8 (UTF-16 by its mark).")  # fmt: skip


@click.command()
@click.argument("model_folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("data", type=DATA)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file to write (default: print the CSV; with --json, the predictions go in the JSON).")
@click.option("--proba", is_flag=True, help="Add one probability column per class (classification).")
@ENCODING
@output_options
def predict(model_folder: Path, data: Path, out: Path | None, proba: bool, encoding: str | None, quiet: bool,
            as_json: bool) -> None:
    """Predict the rows of DATA with the model saved in MODEL_FOLDER (a run folder, its model/ folder, or a
    search's study folder: its best trial), applying the saved preprocessing; write the rows with a prediction
    column."""
    import pandas as pd

    import descend
    from descend.data.read import read_with_origin

    o = Out(quiet=quiet, as_json=as_json)
    if out is not None and _same_file(out, data):
        raise BadInput(f"--out {out} is DATA itself: the predictions would overwrite the rows they come from; "
                       "choose another file")
    saved = descend.load(model_path(model_folder))
    if proba and saved.task == "regression":
        raise BadInput(f"--proba: the model in {model_folder} is a regression model; it has no class probabilities")
    if saved.preprocessor is None:
        raise BadInput(f"{model_folder}: the model was saved without its preprocessing, so it cannot read a table; "
                       "predict from Python with feature tensors")
    with shown_warnings(o, from_descend):
        if getattr(saved.preprocessor, "kind", None) == "array":  # images, signals: a row per example
            frame, X = _examples(saved.preprocessor, data)
        else:
            frame, origin = read_with_origin(data, encoding=encoding)
            X = saved.preprocessor.transform_frame(frame, origin)  # errors name the file
        predictions = saved.predict(X)
        added: dict[str, Any] = {"prediction": list(predictions.tolist() if hasattr(predictions, "tolist")
                                                    else predictions)}
        if proba:
            p = saved.predict_proba(X)
            for j, label in enumerate(saved.classes or range(p.shape[1])):
                added[f"p_{label}"] = p[:, j].numpy()
        # One concat, not a column insert per class: a wide table read from a file is one block per column.
        kept = frame.drop(columns=[c for c in added if c in frame.columns])
        result = pd.concat([kept, pd.DataFrame(added, index=frame.index)], axis=1)
        del frame, kept
        if out is not None:
            _write_csv(result, out)
    summary: dict[str, Any] = {"rows": len(result), "out": str(out) if out else None, "task": saved.task}
    if out is not None:
        o.line(f"{len(result)} predictions written to {out}")
    elif as_json:  # no file to hold them: the predictions (and probabilities) go in the JSON on stdout
        summary["predictions"] = added["prediction"]
        for key, values in added.items():
            if key != "prediction":
                summary.setdefault("probabilities", {})[key.removeprefix("p_")] = [float(v) for v in values]
    else:
        click.echo(result.to_csv(index=False), nl=False)
    o.result(summary)


def _examples(pre: Any, data: Path) -> tuple[Any, Any]:
    """For a model trained on examples of several axes: a frame naming each example (its file in an image folder,
    else its row) and the standardised examples."""
    import pandas as pd
    import torch

    from descend.data.arrays import read_arrays

    if data.is_dir() and pre.image is not None:
        from descend.data.images import read_image_folder

        X, _, files = read_image_folder(data, size=pre.image["size"], mode=pre.image["mode"], labelled=False)
        frame = pd.DataFrame({"file": files})
    else:
        X, _, _ = read_arrays(data)
        frame = pd.DataFrame({"row": range(1, len(X) + 1)})
    return frame, pre.apply(torch.as_tensor(X), str(data))


def model_path(folder: Path) -> Path:
    """The folder a model is loaded from: ``folder``, or the best trial's run of the study in it."""
    if (folder / "study.json").is_file():
        from descend.tune.study import best_run

        return best_run(folder)
    return folder


def _same_file(out: Path, data: Path) -> bool:
    """Whether writing ``out`` would overwrite ``data`` (the same path, or a link to the same file)."""
    try:
        return out.resolve() == data.resolve() or (out.exists() and data.exists() and out.samefile(data))
    except OSError:
        return False


def _write_csv(frame: Any, out: Path) -> None:
    """Write ``frame`` to ``out`` through a temporary file beside it, so a failed write leaves no torn file."""
    import os
    import tempfile

    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: the folder {out.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            frame.to_csv(f, index=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
