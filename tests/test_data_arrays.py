"""Examples of any shape (arrays, image folders) through fit, train, predict and evaluate: per-channel statistics of
the training rows, saved and reapplied; each bad input one clear error, exit 2 from the command line, nothing left
behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import descend
from descend.cli.main import cli
from descend.data.arrays import prepare_arrays
from descend.data.images import read_image_folder
from descend.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def images(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel 6x6 images; class 1 is brighter in channel 0. The channels have very different scales."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, 2, 6, 6)).astype(np.float32)
    y = np.arange(n) % 2
    X[:, 0] += 2.0 * y[:, None, None]
    X[:, 1] = 100 + 50 * X[:, 1]
    return X, y


def test_each_channel_is_standardised_with_the_training_rows_statistics() -> None:
    X, y = images()
    data = prepare_arrays((X, y), validation=0.25, seed=0)
    train = X[data.index_train.numpy()].astype(np.float64)
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    assert data.preprocessor.mean_ == pytest.approx(mean.tolist(), rel=1e-6)
    assert data.preprocessor.std_ == pytest.approx(std.tolist(), rel=1e-6)
    val = (X[data.index_val.numpy()] - mean[None, :, None, None]) / std[None, :, None, None]
    assert torch.allclose(data.X_val, torch.from_numpy(val.astype(np.float32)), atol=1e-5)
    assert data.task == "binary" and data.X_train.shape[1:] == (2, 6, 6)


def test_a_saved_model_reapplies_the_statistics(tmp_path: Path) -> None:
    X, y = images()
    descend.fit("cnn:4", (X, y), epochs=3, seed=0, progress=False, run_dir=tmp_path / "run")
    saved = descend.load(tmp_path / "run")
    data = prepare_arrays((X, y), validation=0.2, seed=0)
    raw = X[data.index_val.numpy()]
    assert torch.equal(saved.output(raw), saved.model(data.X_val))
    np.savez(tmp_path / "new.npz", X=raw, y=y[data.index_val.numpy()])
    cli_out = CliRunner().invoke(cli, ["predict", str(tmp_path / "run"), str(tmp_path / "new.npz"), "--json"])
    assert cli_out.exit_code == 0, cli_out.output
    assert json.loads(cli_out.output)["predictions"] == saved.predict(raw).tolist()
    scored = descend.evaluate(tmp_path / "run", tmp_path / "new.npz")
    assert scored.rows == len(raw) and scored.metrics["accuracy"] is not None


def test_train_predict_and_evaluate_from_the_command_line(tmp_path: Path) -> None:
    X, y = images(80)
    np.savez(tmp_path / "train.npz", X=X, y=y)
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "train.npz"), "--target", "y", "--model", "cnn:4",
                                 "--epochs", "2", "--out", str(run), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["evaluate", str(run), str(tmp_path / "train.npz"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rows"] == 80


def write_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (10, 12)) -> Path:
    rng = np.random.default_rng(0)
    for k, (label, n) in enumerate(classes.items()):
        (root / label).mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(rng.normal(60 + 120 * k, 20, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_an_image_folder_trains_and_predicts_by_file(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pics", {"dark": 12, "light": 12})
    X, _, files = read_image_folder(folder, size=(8, 8))
    assert X.shape == (24, 3, 8, 8) and X.min() >= 0 and X.max() <= 1 and files[0] == "dark/0.png"
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(folder), "--target", "label", "--model", "cnn:4", "--epochs", "8",
                                 "--out", str(run), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = descend.load(run)
    assert saved.preprocessor.image == {"size": [32, 32], "mode": "RGB"} and saved.classes == ["dark", "light"]
    r = CliRunner().invoke(cli, ["predict", str(run), str(folder / "light")])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "file,prediction" and lines[1].startswith("0.png,") and len(lines) == 13
    assert sum(line.endswith(",light") for line in lines[1:]) >= 10


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    np.savez(tmp_path / "rank.npz", X=np.zeros(5), y=np.zeros(5))
    np.savez(tmp_path / "lengths.npz", X=np.zeros((5, 2, 3, 3)), y=np.zeros(4))
    np.savez(tmp_path / "text.npz", X=np.array([[["a", "b"], ["c", "d"]]] * 4), y=np.zeros(4))
    write_folder(tmp_path / "one", {"cat": 3})
    broken = write_folder(tmp_path / "broken", {"cat": 2, "dog": 2})
    (broken / "dog" / "1.png").write_bytes(b"not an image")
    (tmp_path / "empty").mkdir()
    return {
        "wrong rank": (tmp_path / "rank.npz", r"has shape \(5,\); expected N examples of some shape"),
        "mismatched lengths": (tmp_path / "lengths.npz", r"X has 5 examples but y has shape \(4,\)"),
        "non-numeric": (tmp_path / "text.npz", r"has dtype <U1; expected numbers"),
        "one class": (tmp_path / "one", r"images of one class only \(cat\)"),
        "unreadable image": (tmp_path / "broken", r"dog/1\.png: cannot be read as an image"),
        "empty folder": (tmp_path / "empty", r"empty is a directory with no images in class subfolders \(found 0 subfolder"),
    }


CASES = ["wrong rank", "mismatched lengths", "non-numeric", "one class", "unreadable image", "empty folder"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_error(tmp_path: Path, case: str) -> None:
    path, message = bad_inputs(tmp_path)[case]
    with pytest.raises(DataError, match=message):
        prepare_arrays(path)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(path), "--target", "y", "--model", "cnn:4", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()


def test_the_report_shows_misclassified_images_the_confusion_matrix_and_filters(tmp_path: Path) -> None:
    from descend.report import run_report

    folder = write_folder(tmp_path / "pics", {"<i>dark": 10, "light & $x$": 10})
    run = tmp_path / "run"
    descend.fit("cnn:4", str(folder), target="label", epochs=1, seed=0, progress=False, run_dir=run)
    html = run_report(run).read_text()
    assert "Examples" in html and 'alt="first-layer filters"' in html and 'alt="misclassified' in html
    assert "&lt;i&gt;dark" in html and "<i>dark" not in html
    assert "Confusion matrix on the validation examples" in html
