"""Start-up stays light: ``import descend`` and ``descend --help`` (and each command's ``--help``) import no
heavy module; torch, numpy, pandas, matplotlib and scikit-learn come when a command needs them."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "pandas", "matplotlib", "sklearn", "scipy", "pyarrow", "rich", "PIL", "optuna")
PROBE = """
import sys
{body}
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _heavy_after(body: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [m for m in r.stdout.strip().split(",") if m]


def test_import_descend_is_light() -> None:
    assert _heavy_after("import descend, descend.errors, descend.train.options") == []


@pytest.mark.parametrize("command", ["", "train", "lr-find", "predict", "evaluate", "compare", "landscape", "demo"])
def test_help_is_light(command: str) -> None:
    body = ("from click.testing import CliRunner\nfrom descend.cli.main import cli\n"
            f"r = CliRunner().invoke(cli, {[w for w in (command, '--help') if w]!r})\n"
            "assert r.exit_code == 0, r.output")  # fmt: skip
    assert _heavy_after(body) == []


def test_the_lazy_names_still_arrive() -> None:
    import descend
    import descend.train

    assert callable(descend.fit) and callable(descend.load) and callable(descend.evaluate)
    assert descend.optim.Adam is not None and descend.train.EarlyStopping is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        descend.train.nope  # noqa: B018
