"""Every ``descend`` subcommand through click's CliRunner: exit codes, output, and the files written, checked
against the library (the saved model, the run folder's own numbers, closed forms)."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner, Result

import descend
from descend import losses
from descend.cli.main import cli
from descend.data import load_dataset, prepare

HOSTILE = "<script>alert(1)</script>"


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    frame = load_dataset("iris").frame.copy()
    frame = frame.rename(columns={frame.columns[0]: HOSTILE})
    frame.to_csv(folder / "iris.csv", index=False)
    frame.drop(columns=["species"]).head(7).to_csv(folder / "new.csv", index=False)
    frame.drop(columns=["species", HOSTILE]).head(3).to_csv(folder / "short.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def run(work: Path) -> Path:
    """One run trained by ``descend train --json`` with a cosine schedule and sharpness tracking."""
    out = work / "run"
    r = invoke("train", work / "iris.csv", "--target", "species", "--model", "mlp:16,8", "--optimizer", "momentum",
               "--lr", "0.05", "--schedule", "cosine", "--epochs", "5", "--batch-size", "40", "--health-every", "2",
               "--sharpness-every", "4", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)  # --json: stdout is exactly one JSON object
    assert summary["run_dir"] == str(out) and summary["epochs"] == 5 and summary["steps"] == 15
    assert summary["report"] == str(out / "report.html")
    return out


def test_train_writes_the_run_folder(run: Path) -> None:
    for name in ("config.json", "metrics.csv", "events.jsonl", "summary.json", "command.json", "schedule.csv",
                 "steps.csv", "health.jsonl", "curvature.jsonl", "report.html", "model/model.safetensors"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    args = config["arguments"]
    assert args["optimizer"] == "momentum" and args["batch_size"] == 40 and args["epochs"] == 5
    assert args["model"] == "mlp:16,8" and config["resolved"]["model"]["hidden"] == [16, 8]
    assert config["data"]["n_train"] == 120
    # The schedule as recorded is the cosine over the 15 steps: lr_t = 0.05 (1 + cos(pi t / 15)) / 2.
    rows = pd.read_csv(run / "schedule.csv")
    assert list(rows["step"]) == list(range(15))
    expected = [0.05 * (1 + math.cos(math.pi * t / 15)) / 2 for t in range(15)]
    assert rows["lr"].tolist() == pytest.approx(expected, rel=1e-12)
    # ...and it is what the optimizer used: metrics.csv's lr is the rate after each epoch's last step.
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["lr"].tolist() == pytest.approx([0.05 * (1 + math.cos(math.pi * s / 15)) / 2
                                                    for s in metrics["step"]], rel=1e-9, abs=1e-15)
    curvature = [json.loads(line) for line in (run / "curvature.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curvature] == [4, 8, 12]
    command = json.loads((run / "command.json").read_text())
    assert command["target"] == "species" and command["data"].endswith("iris.csv")
    page = (run / "report.html").read_text()
    # curves, learning rate, gradient norms, sharpness; the model's quality on the validation rows (confusion
    # matrix, ROC and precision-recall, calibration, permutation importance)
    assert page.count('<img class="plot"') == 8 and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_train_prints_progress_and_a_summary(work: Path, tmp_path: Path) -> None:
    r = invoke("train", work / "iris.csv", "--target", "species", "--epochs", "3", "--out", tmp_path / "r",
               "--no-diagnostics")
    assert r.exit_code == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].endswith("120 training rows, 30 validation rows, 4 features, task multiclass; model mlp, "
                             "adam, batch 32, up to 3 epochs")
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1", "2", "3"]  # a line an epoch
    assert "stopped: max_epochs after 3 epochs (12 steps" in r.stdout
    assert lines[-1] == f"report: {tmp_path / 'r' / 'report.html'}"
    assert not (tmp_path / "r" / "health.jsonl").exists()  # --no-diagnostics
    assert not (tmp_path / "r" / "curvature.jsonl").exists()


def test_quiet_prints_nothing(run: Path, work: Path, tmp_path: Path) -> None:
    r = invoke("train", work / "iris.csv", "--target", "species", "--epochs", "2", "--out", tmp_path / "q",
               "--quiet", "--no-diagnostics")
    assert r.exit_code == 0 and r.output == "" and (tmp_path / "q" / "summary.json").is_file()
    # Other subcommands: each does its work (the file it writes) and prints nothing with --quiet, something without.
    commands: list[tuple[list[str | Path], Path]] = [
        (["report", run, "--out", tmp_path / "r.html"], tmp_path / "r.html"),
        (["predict", run, work / "new.csv", "--out", tmp_path / "p.csv"], tmp_path / "p.csv"),
        (["landscape", "quadratic", "--optimizers", "sgd", "--out", tmp_path / "l.html"], tmp_path / "l.html"),
    ]
    for args, written in commands:
        loud = invoke(*args)
        assert loud.exit_code == 0 and loud.stdout != "", args
        written.unlink()
        quiet = invoke(*args, "--quiet")
        assert quiet.exit_code == 0 and quiet.output == "", (args, quiet.output)
        assert written.is_file(), args
    assert invoke("runs", work).stdout != "" and invoke("runs", work, "--quiet").output == ""


def _on_a_terminal(args: list[str | Path], env: dict[str, str]) -> str:
    """What the installed command prints when stdout and stderr are a terminal (a pseudo-terminal)."""
    import os
    import pty

    exe = shutil.which("descend", path=str(Path(sys.executable).parent))
    assert exe is not None
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([exe, *map(str, args)], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                                env=env)
    finally:
        os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def test_no_color_on_a_terminal(work: Path, tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    args: list[str | Path] = ["train", work / "iris.csv", "--target", "species", "--epochs", "2", "--no-diagnostics"]
    ansi = re.compile(r"\x1b\[[0-9;]*m")  # colour and style (SGR) codes; the live display's cursor moves are not
    # On a terminal the report line is bold (so the check below can fail)...
    coloured = _on_a_terminal([*args, "--out", tmp_path / "a"], env)
    assert ansi.search(coloured) and "report:" in coloured
    # ...and with NO_COLOR set (any value, https://no-color.org) there is not one colour or style code, for train
    # (its live progress display included) and runs.
    plain = _on_a_terminal([*args, "--out", tmp_path / "b"], {**env, "NO_COLOR": "1"})
    assert "report:" in plain and not ansi.search(plain)
    listing = _on_a_terminal(["runs", tmp_path], {**env, "NO_COLOR": "1"})
    assert "complete" in listing and "\x1b" not in listing
    assert ansi.search(_on_a_terminal(["runs", tmp_path], env))


def test_train_prints_its_findings_and_quiet_hides_them(tmp_path: Path) -> None:
    """A provoked over-fit (a wide MLP on 40 training rows, 150 full-batch epochs): train prints each finding of
    the run folder's events, as the library states it; --quiet prints nothing though the finding is recorded."""
    from descend.inspect.findings import Finding

    load_dataset("breast_cancer").frame.head(80).to_csv(tmp_path / "bc.csv", index=False)
    args: list[str | Path] = ["train", tmp_path / "bc.csv", "--target", "diagnosis", "--model", "mlp:256,256",
                              "--lr", "1e-3", "--validation", "0.5", "--no-early-stopping", "--batch-size", "full",
                              "--epochs", "150"]

    def recorded(folder: Path) -> list[dict[str, object]]:
        events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
        return [{k: v for k, v in e.items() if k not in ("time", "event")} for e in events if e["event"] == "finding"]

    r = invoke(*args, "--out", tmp_path / "loud")
    assert r.exit_code == 0, r.output
    findings = recorded(tmp_path / "loud")
    assert "over_fitting" in [f["rule"] for f in findings]
    printed = [line for line in r.stdout.splitlines() if line.startswith("finding: ")]
    assert printed == [f"finding: {Finding(**f)}" for f in findings]  # type: ignore[arg-type]
    over = next(line for line in printed if line.startswith("finding: over_fitting"))
    best = next(f for f in findings if f["rule"] == "over_fitting")["evidence"]
    assert isinstance(best, dict) and f"lowest at epoch {best['best_epoch']} ({best['best_val_loss']:.4g})" in over
    quiet = invoke(*args, "--out", tmp_path / "quiet", "--quiet")
    assert quiet.exit_code == 0 and quiet.output == ""
    assert recorded(tmp_path / "quiet") == findings  # the same run, the same finding: only the printing is gone


def test_sharpness_every_sets_the_curvature_cadence(work: Path, tmp_path: Path) -> None:
    """--sharpness-every N measures at the multiples of N; its default is fit's own cadence (the help says which),
    and the run measures exactly where ``descend.fit`` with its default diagnostics does."""
    from descend import models

    args: list[str | Path] = ["train", work / "iris.csv", "--target", "species", "--model", "mlp:8", "--batch-size",
                              "4", "--epochs", "35", "--no-early-stopping", "--quiet"]  # 30 x 35 = 1050 steps

    def curvature(folder: Path) -> list[dict[str, float]]:
        return [json.loads(line) for line in (folder / "curvature.jsonl").read_text().splitlines()]

    assert invoke(*args, "--sharpness-every", "500", "--out", tmp_path / "n").exit_code == 0
    assert json.loads((tmp_path / "n" / "summary.json").read_text())["steps"] == 1050
    assert [c["step"] for c in curvature(tmp_path / "n")] == [500, 1000]
    assert invoke(*args, "--sharpness-every", "300", "--out", tmp_path / "m").exit_code == 0
    assert [c["step"] for c in curvature(tmp_path / "m")] == [300, 600, 900]
    helped = re.search(r"--sharpness-every.*?\[default: (\d+)", invoke("train", "--help").stdout, re.S)
    assert helped is not None
    default = int(helped.group(1))
    assert invoke(*args, "--out", tmp_path / "d").exit_code == 0
    cli_default = curvature(tmp_path / "d")
    assert [c["step"] for c in cli_default] == list(range(default, 1051, default))
    # The oracle: descend.fit on the same rows and model, with its own default diagnostics.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = prepare(work / "iris.csv", target="species", validation=0.2, seed=0)
        descend.fit(models.get("mlp", hidden=(8,)), data, optimizer="adam", batch_size=4, epochs=35,
                    early_stopping=False, seed=0, run_dir=tmp_path / "lib", progress=False)
    library = curvature(tmp_path / "lib")
    assert [c["step"] for c in cli_default] == [c["step"] for c in library] != []
    key = "preconditioned_sharpness"  # Adam: its own edge, the plain one is not measured
    assert all("sharpness" not in c for c in cli_default)
    assert [c[key] for c in cli_default] == pytest.approx([c[key] for c in library], rel=1e-6)


def test_predict_uses_the_saved_preprocessing(run: Path, work: Path, tmp_path: Path) -> None:
    r = invoke("predict", run, work / "new.csv")
    assert r.exit_code == 0, r.output
    printed = pd.read_csv(pd.io.common.StringIO(r.stdout))
    assert list(printed.columns) == [HOSTILE, "sepal width (cm)", "petal length (cm)", "petal width (cm)",
                                     "prediction"]
    expected = list(descend.load(run).predict(pd.read_csv(work / "new.csv")))
    assert printed["prediction"].tolist() == expected
    r = invoke("predict", run / "model", work / "new.csv", "--out", tmp_path / "p.csv", "--proba", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"rows": 7, "out": str(tmp_path / "p.csv"),
                                                         "task": "multiclass"}
    written = pd.read_csv(tmp_path / "p.csv")
    probs = written[["p_setosa", "p_versicolor", "p_virginica"]].to_numpy()
    assert probs.sum(axis=1) == pytest.approx([1.0] * 7, abs=1e-6)
    assert written["prediction"].tolist() == expected


def test_resume_continues_exactly(work: Path, tmp_path: Path) -> None:
    common = ["train", work / "iris.csv", "--target", "species", "--epochs", "4", "--no-early-stopping",
              "--no-diagnostics", "--quiet"]
    assert invoke(*common, "--out", tmp_path / "a").exit_code == 0
    full = pd.read_csv(tmp_path / "a" / "metrics.csv")
    # Make it an interrupted run: no summary, and only the checkpoint of epoch 3.
    (tmp_path / "a" / "summary.json").unlink()
    checkpoints = sorted((tmp_path / "a" / "checkpoints").glob("step-*.pt"))
    checkpoints[-1].unlink()
    r = invoke(*common, "--resume", tmp_path / "a")
    assert r.exit_code == 0, r.output
    resumed = pd.read_csv(tmp_path / "a" / "metrics.csv")
    for column in ("epoch", "step", "loss", "val_loss", "val_accuracy"):
        assert resumed[column].tolist() == full[column].tolist(), column
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["epochs"] == 4


def test_compare_reports_time_and_epochs_to_target(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    r = invoke("compare", work / "iris.csv", "--target", "species", "--optimizers", "sgd,adam", "--lrs", "0.05",
               "--seeds", "2", "--epochs", "3", "--model", "mlp:8", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    saved = json.loads((out / "comparison.json").read_text())
    assert result["target_loss"] == pytest.approx(saved["target_loss"])
    assert [row["setting"] for row in result["table"]] == ["sgd-lr0.05", "adam-lr0.05"]
    for row in result["table"]:
        runs = [r for r in saved["runs"] if r["label"] == row["setting"]]
        # Recount from the run folders: the epoch each seed first reached the target.
        firsts = []
        for run_ in runs:
            losses_ = pd.read_csv(out / run_["folder"] / "metrics.csv")["loss"].tolist()
            firsts.append(next((i + 1 for i, v in enumerate(losses_) if v <= saved["target_loss"]), None))
        hits = [f for f in firsts if f is not None]
        assert row["reached"] == f"{len(hits)}/2"
        assert row["epochs_to_target"] == (statistics.median(hits) if hits else None)
    assert (out / "report.html").is_file()
    listing = invoke("runs", out, "--json")
    assert listing.exit_code == 0
    assert sorted(r["run"] for r in json.loads(listing.stdout)["runs"]) == [
        "adam-lr0.05-seed0", "adam-lr0.05-seed1", "sgd-lr0.05-seed0", "sgd-lr0.05-seed1"]
    rebuilt = invoke("report", out)
    assert rebuilt.exit_code == 0 and rebuilt.stdout.strip() == f"report: {out / 'report.html'}"


def test_landscape_function(tmp_path: Path) -> None:
    r = invoke("landscape", "quadratic", "--optimizers", "sgd,momentum,adam", "--out", tmp_path / "q.html", "--json")
    assert r.exit_code == 0, r.output
    rows = {t["optimizer"]: t for t in json.loads(r.stdout)["trajectories"]}
    assert rows["sgd"]["y_sign_changes"] == rows["sgd"]["steps"] == 100  # the zig-zag
    assert rows["momentum"]["distance_to_minimum"] < rows["sgd"]["distance_to_minimum"] / 4
    assert rows["adam"]["distance_to_minimum"] < rows["sgd"]["distance_to_minimum"] / 4
    assert (tmp_path / "q.html").read_text().count('<img class="plot"') == 1
    r = invoke("landscape", "himmelblau", "--optimizers", "adam", "--steps", "50", "--lr", "0.1",
               "--out", tmp_path / "h.html")
    assert r.exit_code == 0 and r.stdout.startswith("adam      lr 0.1 ")


def test_landscape_of_a_run(run: Path, work: Path) -> None:
    r = invoke("landscape", run, "--points", "5", "--rows", "50", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    record = json.loads((run / "landscape.json").read_text())
    assert len(record["slice"]["alphas"]) == 9 and len(record["surface"]["loss"]) == 5
    assert record["slice"]["loss"][4] == pytest.approx(result["center"], rel=1e-6)  # alpha = 0
    # The centre is the training loss of the saved model on the run's first 50 training rows.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = prepare(work / "iris.csv", target="species", validation=0.2, seed=0)
    model = descend.load(run).model
    with torch.no_grad():
        expected = float(losses.get(None, "multiclass")(model(data.X_train[:50]), data.y_train[:50].long()))
    assert result["center"] == pytest.approx(expected, rel=1e-5)
    assert "Loss surface</h2>" in (run / "report.html").read_text()


def test_report_and_runs(run: Path, work: Path, tmp_path: Path) -> None:
    r = invoke("report", run, "--out", tmp_path / "again.html")
    assert r.exit_code == 0 and (tmp_path / "again.html").read_text().startswith("<!DOCTYPE html>")
    r = invoke("runs", work)
    assert r.exit_code == 0
    header, *rows = r.stdout.splitlines()
    assert header.split()[:4] == ["run", "status", "task", "model"]
    assert any(line.startswith("run ") and "complete" in line and "momentum" in line for line in rows)
    assert invoke("runs", tmp_path).stdout == f"no runs in {tmp_path}\n"


@pytest.mark.parametrize("command", ["train", "predict", "lr-find", "compare", "landscape", "report", "runs", "demo"])
def test_every_command_has_help(command: str) -> None:
    r = invoke(command, "--help")
    assert r.exit_code == 0 and r.stdout.startswith(f"Usage: descend {command}") and "--json" in r.stdout


def bad_invocations(w: Path, run: Path) -> list[tuple[list[str | Path], str]]:
    data, t = w / "iris.csv", ["--target", "species"]
    rows: list[tuple[list[str | Path], str]] = [
        (["train", w / "missing.csv", *t], "missing.csv"),
        (["train", data], "Missing option '--target'"),
        (["train", data, "--target", "specie"], "no target column 'specie' (did you mean 'species'?)"),
        (["train", data, *t, "--optimizer", "adamax"], "Invalid value for '--optimizer'"),
        (["train", data, *t, "--model", "transformer2d"], "unknown model 'transformer2d'"),
        (["train", data, *t, "--model", "mlp:64,x"], "invalid item 'x' in 'mlp:64,x'"),
        (["train", data, *t, "--model", "linear:3"], "invalid item '3' in 'linear:3'"),
        (["train", data, *t, "--lr", "-1"], "Invalid value for '--lr': lr='-1'; expected a number > 0 or auto"),
        (["train", data, *t, "--batch-size", "0"], "batch_size='0'; expected full or an int >= 1"),
        (["train", data, *t, "--validation", "1.5"], "Invalid value for '--validation'"),
        (["train", data, *t, "--epochs", "0"], "Invalid value for '--epochs'"),
        (["train", data, *t, "--schedule", "wavy"], "Invalid value for '--schedule'"),
        (["train", data, *t, "--loss", "mse"], "'mse' does not fit a multiclass task"),
        (["train", data, *t, "--early-stopping", "--validation", "0"], "early_stopping: needs a validation set"),
        (["train", data, *t, "--out", w], "is not empty and holds no descend run"),
        (["train", data, *t, "--resume", w], "is not a run folder"),
        (["train", data, *t, "--resume", run], "is complete; there is nothing to resume"),
        (["train", data, *t, "--out", w / "x", "--resume", run], "either --out"),
        (["train", data, *t, "--overwrite"], "--overwrite replaces the run in the --out folder; give --out"),
        (["train", data, *t, "--encoding", "nope", "--out", w / "x"], "unknown text encoding 'nope'"),
        (["train", data, *t, "--out", run], "holds a complete run; pass overwrite=True (--overwrite)"),
        (["train", data, *t, "--unknown"], "No such option '--unknown'"),
        (["predict", w, data], "holds no saved model"),
        (["predict", run, w / "short.csv"], "short.csv"),
        (["compare", data, *t, "--optimizers", "sgd,foo"], "unknown name 'foo'"),
        (["compare", data, *t, "--seeds", "0"], "Invalid value for '--seeds'"),
        (["compare", data, *t, "--lrs", "0.1,x"], "Invalid value for '--lrs': lr='x'"),
        (["landscape", "banana"], "'banana' is neither a test function"),
        (["landscape", "rosenbrock", "--optimizers", "sgd,sgd"], "repeats a name"),
        (["landscape", "rosenbrock", "--lr", "auto"], "--lr auto has no meaning"),
        (["report", w], "is not a run folder"),
        (["runs", w / "nowhere"], "is not a folder"),
        (["fly"], "No such command 'fly'"),
        (["demo", "--dataset", "mnist"], "Invalid value for '--dataset'"),
    ]
    rows += [(["lr-find", data, *t, "--epochs", "0"], "Invalid value for '--epochs'"),
             (["lr-find", data, *t, "--optimizer", "lbfgs"], "lr='auto' does not apply to LBFGS")]
    return rows


def _tables(work: Path, out: Path) -> dict[str, tuple[Path, str]]:
    """Four tables of the four kinds: multiclass, binary, regression in small units, regression in large units."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    cancer = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, 4, 5, -1]]
    cancer.to_csv(out / "cancer.csv", index=False)
    load_diabetes(as_frame=True).frame.to_csv(out / "diabetes.csv", index=False)
    g = np.random.default_rng(0)
    X = g.normal(size=(400, 4))
    houses = pd.DataFrame(X, columns=list("abcd"))
    houses["price"] = 1e5 * (X @ [1.0, -2.0, 0.5, 3.0]) + 3e5 + 1e4 * g.normal(size=400)
    houses.to_csv(out / "houses.csv", index=False)
    return {"iris": (work / "iris.csv", "species"), "cancer": (out / "cancer.csv", "target"),
            "diabetes": (out / "diabetes.csv", "target"), "houses": (out / "houses.csv", "price")}


@pytest.mark.parametrize("table", ["iris", "cancer", "diabetes", "houses"])
def test_lr_find_reports_the_rate_train_lr_auto_trains_at(work: Path, tmp_path: Path, table: str) -> None:
    data, target = _tables(work, tmp_path)[table]
    options = ["--target", target, "--optimizer", "sgd", "--model", "mlp:16", "--epochs", "3", "--seed", "3"]
    r = invoke("lr-find", data, *options, "--out", tmp_path / "lf.html", "--json")
    assert r.exit_code == 0, r.output
    found = json.loads(r.stdout)
    assert found["low"] <= found["lr"] <= found["high"]
    assert (tmp_path / "lf.html").read_text().count('<img class="plot"') == 1
    # train --lr auto: the same range test, so the same rate to the last digit; its sweeps in lr_find.csv,
    # its choice in the report and the summary.
    r = invoke("train", data, *options, "--lr", "auto", "--out", tmp_path / "auto", "--no-diagnostics", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert summary["lr"] == config["resolved"]["lr"] == found["lr"]
    assert (tmp_path / "auto" / "lr_find.csv").is_file()
    if table == "iris":
        page = (tmp_path / "auto" / "report.html").read_text()
        # curves and the range test (a constant rate is a sentence), and the four quality figures
        assert page.count('<img class="plot"') == 6 and "Range test" in page


def test_bad_invocations_exit_2_with_one_line(work: Path, run: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # default run folders would go to ./runs
    table = bad_invocations(work, run)
    assert len(table) >= 15
    for args, fragment in table:
        r = CliRunner().invoke(cli, [str(a) for a in args])
        assert r.exit_code == 2, (args, r.output)
        assert r.stdout == "", (args, r.stdout)
        lines = r.stderr.splitlines()
        assert len(lines) == 1, (args, r.stderr)
        assert lines[0].startswith(f"descend {args[0]}: error: ") or lines[0].startswith("descend: error: "), lines
        assert fragment in lines[0], (args, lines[0])
    assert not (work / "x").exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_internal_error_exits_1_with_traceback(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import descend.report

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(descend.report, "run_report", broken)
    r = CliRunner().invoke(cli, ["report", str(run)])
    assert r.exit_code == 1
    assert "Traceback" in r.stderr and r.stderr.splitlines()[-1].startswith("descend report: error: internal error")


def test_the_installed_command(work: Path) -> None:
    exe = shutil.which("descend", path=str(Path(sys.executable).parent))
    assert exe is not None
    r = subprocess.run([exe, "train", str(work / "nope.csv"), "--target", "y"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("descend train: error: ") and "nope.csv" in r.stderr
