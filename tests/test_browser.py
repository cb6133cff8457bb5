"""The reports in a real browser: headless Chromium (Debian's ``chromium`` package, installed by ``.ci/run``).

For the report of a classification run (the demo), a regression run, a run that diverged and was recovered by the
divergence guard, and a comparison: a screenshot that is not blank and shows the plots' colours;
no console messages (errors, uncaught exceptions, refused loads); every plot decoded by the browser (a test-only
harness page reads ``naturalWidth`` of each ``<img>`` through an iframe); no script element; and a column named
``<script>alert(1)</script>`` shown as text.

With ``DESCEND_DOCS_SCREENSHOTS=1`` the screenshots of the three run reports are also copied to ``docs/`` (the
pictures the documentation shows): ``DESCEND_DOCS_SCREENSHOTS=1 pytest tests/test_browser.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from click.testing import CliRunner

from descend.cli.main import cli
from descend.data import load_dataset

HOSTILE = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium; .ci/run installs it)"
)

HARNESS = """<!DOCTYPE html><html><body><iframe id="f" src="{url}" width="1200" height="900"></iframe>
<pre id="out">pending</pre><script>
window.addEventListener("load", function () {{
  var d = document.getElementById("f").contentDocument;
  var imgs = Array.prototype.slice.call(d.querySelectorAll("img"));
  document.getElementById("out").textContent = JSON.stringify({{
    images: imgs.map(function (i) {{ return [i.complete, i.naturalWidth, i.naturalHeight]; }}),
    scripts: d.querySelectorAll("script").length,
    headings: Array.prototype.map.call(d.querySelectorAll("h2"), function (h) {{ return h.textContent; }}),
    tags: Array.prototype.map.call(d.querySelectorAll(".tags span"), function (s) {{ return s.textContent; }})
  }});
}});
</script></body></html>
"""


def chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def inspect_page(tmp: Path, report: Path) -> dict[str, object]:
    """What the browser made of the report: images (complete, width, height), scripts, headings, tags."""
    harness = tmp / f"harness-{report.parent.name}.html"
    harness.write_text(HARNESS.format(url=report.resolve().as_uri()))
    done = chromium(tmp, harness.as_uri(), "--allow-file-access-from-files", "--dump-dom")
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
    assert found is not None and found.group(1) != "pending", done.stdout[-2000:]
    import html

    return dict(json.loads(html.unescape(found.group(1))))


DOCS = Path(__file__).resolve().parent.parent / "docs"


def screenshot(tmp: Path, report: Path, height: int = 3000) -> tuple[np.ndarray, str]:
    png = tmp / f"{report.parent.name}.png"
    done = chromium(tmp, report.resolve().as_uri(), f"--window-size=1200,{height}", f"--screenshot={png}")
    assert png.is_file(), done.stderr[-2000:]
    if os.environ.get("DESCEND_DOCS_SCREENSHOTS") and report.parent.name in SHOTS:
        shutil.copyfile(png, DOCS / SHOTS[report.parent.name])
    return matplotlib.image.imread(png)[..., :3], done.stderr


#: the run reports whose screenshots the documentation shows, by run folder
SHOTS = {"demo": "report-classification.png", "regression": "report-regression.png",
         "recovered": "report-recovered.png"}


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_console_messages_are_caught(tmp_path: Path) -> None:
    """The "no console messages" checks below mean something: on a page that logs an error and throws, the same
    screenshot run and the same filter find both."""
    page = tmp_path / "noisy" / "report.html"
    page.parent.mkdir()
    page.write_text('<!DOCTYPE html><html><body><p>noisy</p><script>console.error("descend-console-probe-1");'
                    'throw new Error("descend-console-probe-2");</script></body></html>')
    _, stderr = screenshot(tmp_path, page)
    found = console_messages(stderr)
    assert any("descend-console-probe-1" in line for line in found), stderr[-3000:]
    assert any("descend-console-probe-2" in line for line in found), stderr[-3000:]


def check_screenshot(pixels: np.ndarray) -> None:
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    not_white = np.any(pixels < 0.95, axis=2).mean()
    assert not_white > 0.05, f"only {not_white:.1%} of the screenshot is not white"
    # The plots' blue lines (#1f77b4) are drawn: a blank or image-less page has none of that colour.
    blue = np.all(np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.08, axis=2).sum()
    assert blue > 200, f"{blue} pixels of the plots' blue"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("browser")
    runner = CliRunner()
    demo = runner.invoke(cli, ["demo", "--epochs", "6", "--out", str(tmp / "demo"), "--quiet"])
    assert demo.exit_code == 0, demo.output
    surface = runner.invoke(cli, ["landscape", str(tmp / "demo"), "--points", "5", "--rows", "200", "--quiet"])
    assert surface.exit_code == 0, surface.output
    path = runner.invoke(cli, ["landscape", str(tmp / "demo"), "--trajectory", "--points", "7", "--rows", "200",
                               "--quiet"])  # fmt: skip
    assert path.exit_code == 0, path.output
    frame = load_dataset("iris").frame.rename(columns={"sepal length (cm)": HOSTILE})
    frame.to_csv(tmp / "iris.csv", index=False)
    cmp = runner.invoke(cli, ["compare", str(tmp / "iris.csv"), "--target", "species", "--optimizers",
                              "sgd,momentum,adam", "--lrs", "0.05", "--seeds", "2", "--epochs", "3", "--model", "mlp:8",
                              "--out", str(tmp / "cmp"), "--quiet"])
    assert cmp.exit_code == 0, cmp.output
    diabetes = load_dataset("diabetes")
    diabetes.frame.to_csv(tmp / "diabetes.csv", index=False)
    for name, flags in (("regression", ["--epochs", "25"]),
                        # SGD at lr 3 blows up in the first epoch; the guard rolls back twice and the run recovers.
                        ("recovered", ["--optimizer", "sgd", "--lr", "3", "--epochs", "25"])):
        done = runner.invoke(cli, ["train", str(tmp / "diabetes.csv"), "--target", diabetes.target, "--model",
                                   "mlp:32", "--out", str(tmp / name), "--quiet", *flags])
        assert done.exit_code == 0, done.output
    return {"demo": tmp / "demo" / "report.html", "compare": tmp / "cmp" / "report.html", "tmp": tmp,
            "regression": tmp / "regression" / "report.html", "recovered": tmp / "recovered" / "report.html"}


def test_demo_report_in_chromium(reports: dict[str, Path]) -> None:
    tmp, report = reports["tmp"], reports["demo"]
    run = report.parent
    # Curves, gradients (health.jsonl), curvature (sharpness at step 250), loss surface, the run's path over the
    # loss surface in its principal plane; Adam's constant rate is a sentence; quality: confusion matrix, ROC and
    # precision-recall, calibration, permutation importance.
    assert (run / "health.jsonl").is_file() and (run / "curvature.jsonl").is_file()
    assert (run / "trajectory.json").is_file()
    check_run_report(tmp, report, 9, ["Summary", "Learning curves", "Learning rate", "Gradients", "Curvature",
                                      "Loss surface", "Path over the loss surface", "Model quality", "Findings",
                                      "Events", "Configuration", "Environment"])


def check_run_report(tmp: Path, report: Path, n_images: int, headings: list[str]) -> None:
    seen = inspect_page(tmp, report)
    assert seen["scripts"] == 0
    images = seen["images"]
    assert isinstance(images, list) and len(images) == n_images, images
    assert all(complete and width >= 500 and height >= 250 for complete, width, height in images), images
    assert seen["headings"] == headings
    pixels, stderr = screenshot(tmp, report, height=4400)
    check_screenshot(pixels)
    assert console_messages(stderr) == []


def test_regression_report_in_chromium(reports: dict[str, Path]) -> None:
    # Curves (a panel per metric), gradients; quality: predicted/residuals/histogram, permutation importance.
    check_run_report(reports["tmp"], reports["regression"], 4, [
        "Summary", "Learning curves", "Learning rate", "Gradients", "Model quality", "Findings", "Events",
        "Configuration", "Environment"])


def test_recovered_report_in_chromium(reports: dict[str, Path]) -> None:
    # The learning rate as run (cut twice by rollbacks) is a plot here.
    report = reports["recovered"]
    check_run_report(reports["tmp"], report, 5, [
        "Summary", "Learning curves", "Learning rate", "Gradients", "Model quality", "Findings", "Events",
        "Configuration", "Environment"])
    assert "the divergence guard recovered it (2 rollback(s)" in report.read_text()


def test_comparison_report_in_chromium(reports: dict[str, Path]) -> None:
    tmp, report = reports["tmp"], reports["compare"]
    seen = inspect_page(tmp, report)
    assert seen["scripts"] == 0
    images = seen["images"]
    assert isinstance(images, list) and len(images) == 2
    assert all(complete and width >= 600 for complete, width, _ in images), images
    tags = seen["tags"]
    assert isinstance(tags, list) and tags[0] == HOSTILE  # the column name shown as text, not run
    pixels, stderr = screenshot(tmp, report)
    check_screenshot(pixels)
    assert console_messages(stderr) == []
