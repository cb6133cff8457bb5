"""The Python blocks of docs/training.md run as written, and print what the page says they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "training.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(PAGE), "exec"), {"__name__": "docs"})
    return out.getvalue()


@pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning", "ignore::descend.data.DataWarning")
def test_every_block_runs_and_prints_what_the_page_claims() -> None:
    assert len(BLOCKS) == 6
    variants, auto, regression, loader, callback, compiled = (run(b).split("\n") for b in BLOCKS)
    rows = [line.split() for line in variants if line]
    assert [r[0] for r in rows] == ["full", "1", "32"]
    per_epoch = [1, 455, 15]  # steps per epoch over 455 training rows: full batch, one row, ceil(455 / 32)
    assert [int(r[2]) for r in rows] == [int(r[1]) * k for r, k in zip(rows, per_epoch)]
    assert all(float(r[3]) >= 0.93 for r in rows)  # 20 epochs: full batch has taken only 20 steps
    r2 = float(regression[0].split()[0])
    assert r2 >= 0.45
    assert auto[0].startswith("True")
    assert loader[0].split()[0] == "True" and float(loader[0].split()[1]) > 0
    assert callback[0] == "target_accuracy True"
    assert compiled[0] == "same True True"
