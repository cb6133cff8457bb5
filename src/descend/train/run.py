"""The run folder: everything needed to understand, reproduce or resume one run.

::

    run/
      config.json        every argument of fit, the seed, the data's sizes, library versions
      metrics.csv        one row per epoch: loss, val_loss, metrics, lr, grad_norm, time
      steps.csv          one row per step (when asked: ``Recorder(steps=True)``)
      events.jsonl       one JSON object per line: start, resume, checkpoint, early_stop, warnings, end
      checkpoints/       step-<step>.pt, written atomically (temporary file, then os.replace)
      model/             model.safetensors (weights) + model.json (architecture, task, preprocessing)
      summary.json       written last: its presence marks the run complete

Every file that is replaced rather than appended is written to a temporary file and renamed over the old one, so
a killed process leaves the previous version whole.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from descend.errors import ConfigError, ModelFolderError

__all__ = ["RunFolder", "atomic_write", "environment", "jsonable"]

CHECKPOINT_FORMAT = 1


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: numbers, strings, lists and dicts pass; non-finite floats become strings;
    anything else becomes its ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def environment() -> dict[str, str]:
    """Versions of Python, the libraries that decide the numbers, and the machine."""
    from importlib.metadata import PackageNotFoundError, version

    from descend import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "descend": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: installed(name) for name in ("numpy", "pandas", "pyarrow", "scikit-learn", "safetensors")},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": str(torch.get_num_threads()),
    }


class RunFolder:
    """Reads and writes one run's folder. Create with :meth:`create` (new run) or :meth:`open` (resume)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoints = path / "checkpoints"
        self._columns: list[str] | None = None

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> RunFolder:
        p = Path(path)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise ConfigError(
                f"run_dir: {str(p)!r} already exists and is not an empty folder; choose a new folder, or pass "
                f"resume={str(p)!r} to continue the run in it"
            )
        p.mkdir(parents=True, exist_ok=True)
        (p / "checkpoints").mkdir(exist_ok=True)
        return cls(p)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        p = Path(path)
        if not (p / "config.json").is_file():
            raise ModelFolderError(f"resume: {str(p)!r} is not a run folder (it has no config.json)")
        if (p / "summary.json").is_file():
            raise ConfigError(f"resume: the run in {str(p)!r} is complete; there is nothing to resume")
        return cls(p)

    # config, summary, events
    def write_json(self, name: str, value: dict[str, Any]) -> None:
        atomic_write(self.path / name, (json.dumps(jsonable(value), indent=2) + "\n").encode())

    def read_json(self, name: str) -> dict[str, Any]:
        return dict(json.loads((self.path / name).read_text()))

    def log_event(self, kind: str, **data: Any) -> None:
        record = {"time": round(time.time(), 3), "event": kind, **data}
        with open(self.path / "events.jsonl", "a") as f:
            f.write(json.dumps(jsonable(record)) + "\n")

    def events(self) -> list[dict[str, Any]]:
        path = self.path / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # metrics
    def append_metrics(self, row: dict[str, float]) -> None:
        path = self.path / "metrics.csv"
        new = self._columns is None or not path.exists()
        if self._columns is None:
            self._columns = list(row)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def rewrite_metrics(self, history: Iterable[dict[str, float]]) -> None:
        """Replace metrics.csv with ``history`` (on resume: drop rows written after the checkpoint)."""
        rows = list(history)
        self._columns = None
        path = self.path / "metrics.csv"
        path.unlink(missing_ok=True)
        for row in rows:
            self.append_metrics(row)

    def append_steps(self, rows: list[tuple[int, int, float, float]]) -> None:
        path = self.path / "steps.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "epoch", "loss", "lr"])
            writer.writerows(rows)

    # checkpoints
    def save_checkpoint(self, payload: dict[str, Any], keep: int | None) -> Path:
        import io

        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
        path = self.checkpoints / f"step-{payload['step']:08d}.pt"
        atomic_write(path, buffer.getvalue())
        if keep is not None:
            for old in self.list_checkpoints()[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def list_checkpoints(self) -> list[Path]:
        """Whole checkpoints, oldest first (temporary files of an interrupted write are ignored)."""
        return sorted(self.checkpoints.glob("step-*.pt"))

    def latest_checkpoint(self) -> dict[str, Any] | None:
        found = self.list_checkpoints()
        if not found:
            return None
        state = torch.load(found[-1], weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ModelFolderError(f"resume: {str(found[-1])!r} has checkpoint format {state.get('format')!r}")
        return dict(state)
