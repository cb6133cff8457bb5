"""The progress a person sees while training: rich's live display on a terminal (captured by rich itself: a Console
forced to be a terminal, recording what it drew), and one plain line per epoch when the output is not a terminal."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import descend
from descend.cli._output import Out
from descend.cli._progress import EchoProgress, Header, progress_callbacks
from descend.cli.main import cli
from descend.data import load_dataset
from descend.train import ProgressBar


def _diverging_run(callbacks: list[object], epochs: int = 3) -> descend.train.FitResult:
    d = load_dataset("diabetes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # SGD at lr 3 on the standardised diabetes target blows up in the first epoch; the guard rolls back twice.
        return descend.fit("mlp:32", d.frame, target=d.target, optimizer="sgd", lr=3.0, epochs=epochs, seed=0,
                           progress=False, callbacks=callbacks)


def test_live_display_through_richs_capture() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, record=True, width=140)
    result = _diverging_run([ProgressBar(console=console, refresh=0.0)])
    assert result.guard["rollbacks"] == 2
    text = console.export_text()
    # Both bars with their counts and the time left; the rate, loss, learning rate and validation metric.
    assert re.search(r"epoch .* 3/3 +eta 0:00:00", text), text[-800:]
    assert re.search(r"step .* 12/12 +eta", text)
    assert re.search(r"\d+ steps/s +loss [\d.e+-]+ +lr 0\.03", text)
    assert re.search(r"val_loss [\d.]+  val_r2 -?[\d.]+", text)
    # The rollbacks as they happened, each once, with the rate the guard cut to.
    rollbacks = re.findall(r"rollback at step (\d+) \((\w+)\): back to step 0, learning rate now ([\d.]+)", text)
    assert [(r[0], r[2]) for r in rollbacks] == [("4", "0.3"), ("9", "0.03")]
    # A terminal display: cursor movement and colour codes went to the file.
    raw = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in raw


def test_the_display_gives_back_the_event_log() -> None:
    events: list[str] = []

    class Watch(descend.train.Callback):
        def on_fit_start(self, state: descend.train.TrainState) -> None:
            inner = state.log_event
            state.log_event = lambda kind, **data: (events.append(kind), inner(kind, **data))[1]

    bar = ProgressBar(console=Console(file=io.StringIO(), force_terminal=True))
    _diverging_run([Watch(), bar], epochs=1)
    assert events.count("guard_rollback") == 2  # the display passes every event on


def test_silent_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    _diverging_run([ProgressBar()], epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and "steps/s" not in captured.err


def test_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    tmp = tmp_path
    d = load_dataset("diabetes")
    d.frame.to_csv(tmp / "d.csv", index=False)
    result = CliRunner().invoke(cli, ["train", str(tmp / "d.csv"), "--target", d.target, "--model", "mlp:8",
                                      "--epochs", "3", "--out", str(tmp / "run")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]  # one line per epoch
    assert all(re.fullmatch(r"epoch +\d+  loss [\d.]+  val_loss [\d.]+  val_r2 -?[\d.]+", line) for line in lines), lines
    assert "\x1b[" not in result.output and "steps/s" not in result.output


def test_which_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    assert progress_callbacks(Out(quiet=True), terminal=True) == []
    assert progress_callbacks(Out(as_json=True), terminal=True) == []
    plain = progress_callbacks(Out(), terminal=False)
    assert [type(c) for c in plain] == [EchoProgress]
    live = progress_callbacks(Out(), terminal=True)
    assert [type(c) for c in live] == [Header, ProgressBar]
    assert not live[1].console.no_color  # type: ignore[attr-defined]
    monkeypatch.setenv("NO_COLOR", "1")
    bar = progress_callbacks(Out(), terminal=True)[1]
    assert bar.console.no_color  # type: ignore[attr-defined]
