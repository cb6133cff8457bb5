"""Reading a run folder back for reports and listings: :class:`RunRecord`.

Besides the files ``fit`` writes (see :mod:`descend.train.run`), a report uses these when they are present:

====================== =====================================================================================
file                   what it holds
====================== =====================================================================================
``health.jsonl``       per-layer gradient norms on a cadence (:class:`descend.inspect.HealthMonitor`)
``curvature.jsonl``    sharpness against 2/lr on a cadence (:class:`descend.inspect.SharpnessMonitor`)
``steps.csv``          the loss of every step (``Recorder(steps=True)``)
``schedule.csv``       the learning rate of every step, sampled from the schedule (written by the command line)
``lr_find.csv``        the learning-rate range test of ``lr="auto"`` (sweep, step, lr, loss, smoothed); the
                       choice is the ``lr_find`` event (``lr``, ``low``, ``high``, ``reason``)
``lr_range.json``      a range test in one JSON object: ``lrs``, ``losses``, ``suggestion``
``command.json``       how the command line was asked to train: data file, target column, scaling, argv
``landscape.json``     1-D and 2-D filter-normalised loss slices around the trained weights
====================== =====================================================================================

A folder that is not a run raises :class:`~descend.errors.ModelFolderError`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descend.errors import ModelFolderError

__all__ = ["RunRecord", "find_runs", "range_test_record", "read_csv", "read_jsonl"]


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file with numbers parsed (empty list when the file is missing)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One dict per line of a JSON-lines file, skipping a torn last line (empty list when missing)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ModelFolderError(f"report: {str(path)!r} is not valid JSON ({e})") from e


@dataclass
class RunRecord:
    """Everything a report shows about one run, read from its folder."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    events: list[dict[str, Any]]
    health: list[dict[str, Any]] = field(default_factory=list)
    curvature: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    schedule: list[dict[str, Any]] = field(default_factory=list)
    lr_range: dict[str, Any] = field(default_factory=dict)
    command: dict[str, Any] = field(default_factory=dict)
    landscape: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunRecord:
        p = Path(path)
        if not p.is_dir():
            raise ModelFolderError(f"run: {str(p)!r} is not a folder; expected a run folder (with config.json)")
        if not (p / "config.json").is_file():
            raise ModelFolderError(f"run: {str(p)!r} is not a run folder (it has no config.json)")
        return cls(
            path=p,
            config=_json(p / "config.json"),
            summary=_json(p / "summary.json"),
            metrics=read_csv(p / "metrics.csv"),
            events=read_jsonl(p / "events.jsonl"),
            health=read_jsonl(p / "health.jsonl"),
            curvature=read_jsonl(p / "curvature.jsonl"),
            steps=read_csv(p / "steps.csv"),
            schedule=read_csv(p / "schedule.csv"),
            lr_range=_json(p / "lr_range.json"),
            command=_json(p / "command.json"),
            landscape=_json(p / "landscape.json"),
            model=_json(p / "model" / "model.json"),
        )

    def __post_init__(self) -> None:
        if not self.lr_range and (self.path / "lr_find.csv").is_file():
            self.lr_range = range_test_record(read_csv(self.path / "lr_find.csv"),
                                              next((e for e in self.events if e.get("event") == "lr_find"), {}))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        return self.summary.get("status") == "complete"

    @property
    def task(self) -> str:
        return str(self.config.get("resolved", {}).get("task", self.model.get("task", "?")))

    @property
    def final(self) -> dict[str, Any]:
        """The final (or best restored) epoch's row; the last row of metrics.csv for an unfinished run."""
        if self.summary.get("final"):
            return dict(self.summary["final"])
        return dict(self.metrics[-1]) if self.metrics else {}

    @property
    def data_source(self) -> str:
        return str(self.command.get("data") or self.config.get("data", {}).get("source", "?"))

    @property
    def model_description(self) -> str:
        m = self.config.get("arguments", {}).get("model")
        if isinstance(m, dict):
            extra = f", hidden {', '.join(str(h) for h in m['hidden'])}" if m.get("hidden") else ""
            return f"{m.get('class', '?')}{extra}"
        return str(m)

    @property
    def optimizer(self) -> str:
        return str(self.config.get("arguments", {}).get("optimizer", "?"))

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "finding"]

    def headline(self) -> dict[str, Any]:
        """Key figures for a listing: name, status, task, model, optimizer, epochs, final loss and metrics."""
        final = self.final
        row: dict[str, Any] = {
            "run": self.name,
            "status": "complete" if self.complete else "unfinished",
            "task": self.task,
            "model": self.model_description,
            "optimizer": self.optimizer,
            "epochs": self.summary.get("epochs", len(self.metrics)),
            "stop": self.summary.get("stop_reason", "-"),
        }
        for key in ("loss", "val_loss", "val_accuracy", "val_r2"):
            value = final.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                row[key] = float(value)
        return row


def range_test_record(rows: list[dict[str, Any]], choice: dict[str, Any]) -> dict[str, Any]:
    """A range test in the report's form: ``sweeps`` (one dict of lrs, losses, smoothed per sweep),
    ``suggestion``, ``low``, ``high``, ``reason``; from the rows of ``lr_find.csv`` and the choice."""
    sweeps: dict[Any, dict[str, list[float]]] = {}
    for r in rows:
        s = sweeps.setdefault(r.get("sweep", 0), {"lrs": [], "losses": [], "smoothed": []})
        s["lrs"].append(float(r["lr"]))
        s["losses"].append(float(r["loss"]))
        s["smoothed"].append(float(r.get("smoothed", math.nan)))
    return {"sweeps": list(sweeps.values()), "suggestion": choice.get("lr"), "low": choice.get("low"),
            "high": choice.get("high"), "reason": choice.get("reason", ""), "fallback": choice.get("fallback")}


def find_runs(root: str | os.PathLike[str]) -> list[RunRecord]:
    """Every run folder (a folder with config.json) at ``root`` or below it, by path."""
    base = Path(root)
    if not base.is_dir():
        raise ModelFolderError(f"runs: {str(base)!r} is not a folder; expected a folder holding run folders")
    found = sorted({c.parent for c in base.rglob("config.json")})
    return [RunRecord.read(p) for p in found if (p / "metrics.csv").exists() or (p / "summary.json").exists()]
