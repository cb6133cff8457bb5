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
      .descend.lock      while a process owns the folder: its pid (held with an OS file lock)

Every file that is replaced rather than appended is written to a temporary file and renamed over the old one, so
a killed process leaves the previous version whole.

A folder's life, and what each kill leaves behind:

=============== ================================================= =============================================
state           what is in it                                     ``create`` (``--out``) / ``open`` (resume)
=============== ================================================= =============================================
empty           nothing (or only the lock file)                   starts the run / starts it from the beginning
unstarted       the lock file, config.json (written before the   starts the run again / starts it from the
                range test or anything long), partial records     beginning, records truncated
unfinished      one or more checkpoints                           refused (resume, or ``overwrite``) / continues
                                                                  from the newest whole checkpoint
complete        summary.json                                      refused (``overwrite``) / refused
=============== ================================================= =============================================

A process owns a folder while it holds an exclusive OS lock on ``.descend.lock`` (``fcntl.flock``: released by
the kernel when the process dies, even by SIGKILL, so a dead owner never blocks a resume). A second process on the
same folder is refused before it touches anything, and a refused run removes only what it created itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shutil
import time
import warnings
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from descend import __version__
from descend.errors import ConfigError, ModelFolderError
from descend.train.devices import cpu_state

__all__ = ["RunFolder", "RunWarning", "atomic_write", "environment", "jsonable"]

CHECKPOINT_FORMAT = 1
LOCK = ".descend.lock"


class RunWarning(UserWarning):
    """Something in a run folder was repaired on resume (a corrupt checkpoint passed over)."""


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
    """Reads and writes one run's folder. Create with :meth:`create` (new run) or :meth:`open` (resume); both
    take ownership of the folder (see the module docstring), which :meth:`release` gives back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoints = path / "checkpoints"
        self._columns: list[str] | None = None
        self._lock: int | None = None
        self.created: list[Path] = []  # folders this process made for a new run (removed again by discard)
        self.fresh = True  # nothing of an earlier attempt to continue: the run starts from the beginning
        self.started = False  # set by fit when training begins (a new run refused before that is discarded)

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, overwrite: bool = False) -> RunFolder:
        """Own ``path`` for a new run: an empty or new folder, or one holding a run that trained nothing yet (or,
        with ``overwrite``, any run: its files are removed)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ConfigError(f"run_dir: {str(p)!r} is a file; expected a folder (new, empty, or a run folder)")
        made = [q for q in (p, *p.parents) if not q.exists()]
        p.mkdir(parents=True, exist_ok=True)
        run = cls(p)
        marked = run._acquire("run_dir")
        state = run.state(marked)
        if state == "foreign" or (state in ("unfinished", "complete") and not overwrite):
            run.release(remove_lock=not marked)
            what = {"foreign": "is not empty and holds no descend run",
                    "unfinished": "holds an unfinished run", "complete": "holds a complete run"}[state]  # fmt: skip
            how = ("choose a new folder" if state == "foreign" else
                   f"pass resume={str(p)!r} (--resume) to continue it, overwrite=True (--overwrite) to start anew, "
                   "or choose a new folder" if state == "unfinished" else
                   "pass overwrite=True (--overwrite) to replace it, or choose a new folder")  # fmt: skip
            raise ConfigError(f"run_dir: {str(p)!r} {what}; {how}")
        if state != "empty":
            run._clear()
        run.checkpoints.mkdir(exist_ok=True)
        run.created = made
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        """Own the run in ``path`` to resume it: from its newest checkpoint, or from the beginning when it trained
        nothing yet (a folder killed before its config or first checkpoint was written)."""
        p = Path(path)
        if not p.is_dir():
            raise ModelFolderError(f"resume: {str(p)!r} is not a run folder (no such folder)")
        run = cls(p)
        marked = run._acquire("resume")
        state = run.state(marked)
        if state in ("foreign", "complete"):
            run.release(remove_lock=not marked)
            if state == "complete":
                raise ConfigError(f"resume: the run in {str(p)!r} is complete; there is nothing to resume")
            raise ModelFolderError(f"resume: {str(p)!r} is not a run folder (it has no config.json)")
        run.remove_stray()
        run.checkpoints.mkdir(exist_ok=True)
        run.fresh = not (p / "config.json").is_file()
        return run

    def state(self, marked: bool = True) -> str:
        """``"empty"``, ``"unstarted"``, ``"unfinished"``, ``"complete"``, or ``"foreign"`` (files, but no run);
        ``marked``: whether the lock file was there before this process made it (a run's first trace)."""
        entries = {e.name for e in self.path.iterdir()} - {LOCK}
        if not entries:
            return "empty"
        if (self.path / "summary.json").is_file():
            return "complete"
        if self.list_checkpoints():
            return "unfinished"
        if (self.path / "config.json").is_file() or marked:
            return "unstarted"
        return "foreign"

    def _acquire(self, owner: str) -> bool:
        """Take the folder's lock, or raise; return whether the lock file was there before (a run's marker)."""
        path = self.path / LOCK
        marked = path.exists()
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock(fd)
            except BlockingIOError:
                os.close(fd)
                try:
                    pid = path.read_text().strip() or "?"
                except OSError:
                    pid = "?"
                raise ConfigError(f"{owner}: {str(self.path)!r} is in use by another descend process (pid {pid}); "
                                  "wait for it to end, or choose another folder") from None  # fmt: skip
            # The file may have been unlinked by its last owner between our open and our lock: then the lock
            # is on a dead inode, and another process may own a new file. Retry on the path as it is now.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd
        return marked

    def release(self, *, remove_lock: bool = True) -> None:
        """Give the folder back (the lock file goes: a folder left by a finished or refused process is clean)."""
        if self._lock is None:
            return
        if remove_lock:
            (self.path / LOCK).unlink(missing_ok=True)
        os.close(self._lock)  # closing releases the lock
        self._lock = None

    def _clear(self) -> None:
        for entry in self.path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def discard(self) -> None:
        """Undo a new run refused before it trained: remove its files, and the folders this process created."""
        self._clear()
        self.release()
        for folder in self.created:
            try:
                folder.rmdir()  # only if empty: something else may have been put there meanwhile
            except OSError:
                break

    def remove_stray(self) -> None:
        """Remove the temporary files of a writer that died (``.<name>.<pid>.tmp``, never renamed into place)."""
        for folder in (self.path, self.checkpoints, self.path / "model"):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    # config, summary, events
    def write_json(self, name: str, value: dict[str, Any]) -> None:
        atomic_write(self.path / name, (json.dumps(jsonable(value), indent=2) + "\n").encode())

    def read_json(self, name: str) -> dict[str, Any]:
        return dict(json.loads((self.path / name).read_text()))

    def log_event(self, kind: str, **data: Any) -> None:
        record = {"time": round(time.time(), 3), "event": kind, **data}
        with open(self.path / "events.jsonl", "a") as f:
            f.write(json.dumps(jsonable(record)) + "\n")

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

    def truncate_steps(self, step: int) -> None:
        """Keep the rows of steps.csv up to ``step`` (on resume: the replayed steps are written again)."""
        path = self.path / "steps.csv"
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = lines[:1] + [line for line in lines[1:] if line and line.split(",", 1)[0].isdigit()
                            and int(line.split(",", 1)[0]) <= step]  # fmt: skip
        atomic_write(path, ("\n".join(kept) + "\n").encode())

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
        buffer = io.BytesIO()
        # every tensor on the CPU: a run trained on one device resumes on another (restore moves them back)
        torch.save({"format": CHECKPOINT_FORMAT, **cpu_state(payload)}, buffer)
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
        """The newest checkpoint that loads (tensors and plain data only: ``weights_only``); a corrupt one is
        passed over with a :class:`RunWarning` naming it, for the one before. None when there is none."""
        found = self.list_checkpoints()
        problems = []
        for path in reversed(found):
            try:
                state = torch.load(path, weights_only=True, map_location="cpu")
                if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError(f"not a descend checkpoint of format {CHECKPOINT_FORMAT}")
            except Exception as e:  # truncated, zeroed, foreign or malicious: unpickling refused or failed
                why = " ".join(str(e).split())[:120]
                problems.append(f"{path.name} ({why})")
                warnings.warn(f"resume: checkpoint {str(path)!r} cannot be read ({why}); trying the one before",
                              RunWarning, stacklevel=2)  # fmt: skip
                continue
            return dict(state)
        if problems:
            raise ModelFolderError(f"resume: no checkpoint in {str(self.checkpoints)!r} can be read: "
                                   f"{'; '.join(problems)[:200]}; start anew with overwrite (--overwrite)")  # fmt: skip
        return None


def _lock(fd: int) -> None:
    """An exclusive, non-blocking lock on ``fd`` (BlockingIOError when another process holds it)."""
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt's lock on the file's first byte
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError as e:
            raise BlockingIOError(str(e)) from e
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
