"""The examples in the docstrings of every module of descend run and print what they say.

Every module of the package is collected (``pkgutil.walk_packages``), so a new module is covered without editing
this file. A module whose docstrings hold no runnable example must be listed below with the reason, and the list
is checked both ways: a listed module that gains examples, or an unlisted one that loses them, fails.

The examples run with torch's global generator seeded (and restored afterwards), so examples that draw random
data without a seed give the same numbers on every run, and no other test sees a changed random state.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import descend

MODULES = ["descend", *sorted(name for _, name, _ in pkgutil.walk_packages(descend.__path__, "descend."))]

# Modules with no examples at all: re-export lists, error classes, internals, the CLI (tested in test_cli*.py).
NO_EXAMPLES = {
    "descend", "descend.errors",
    "descend.cli", "descend.cli._demo", "descend.cli._explore", "descend.cli._output", "descend.cli._params",
    "descend.cli._evaluate", "descend.cli._predict", "descend.cli._progress", "descend.cli._sample", "descend.cli._train",
    "descend.cli.main",
    "descend.data.columns", "descend.data.encode", "descend.data.errors", "descend.data.options",
    "descend.data.target",
    "descend.inspect", "descend.inspect._checks",
    "descend.optim", "descend.optim.base",
    "descend.report", "descend.report.html", "descend.report.landscape",
    "descend.report.record",
    "descend.train", "descend.train.loop", "descend.train.run", "descend.train.setup",
    "descend.tune",
}

# Modules whose every example is marked ``+SKIP`` in the source, and why: they need a run folder or a prepared
# data set on disk (report/run.py reads ``runs/digits``; report/comparison.py trains and writes ``runs/cmp``).
ALL_SKIPPED = {
    "descend.report.comparison": "trains several seeded runs of a prepared data set and writes a report folder",
    "descend.report.run": "reads an existing run folder (runs/digits)",
}

# Modules with an example that fails, and why. Marked as a strict expected failure, so the test reports it on
# every run and fails once the example is fixed (then remove the entry). The docstrings are not ours to edit here.
KNOWN_FAILURES = {
}


def _examples(name: str) -> tuple[list[doctest.DocTest], int, int]:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module, name)
    examples = [e for t in tests for e in t.examples]
    skipped = sum(bool(e.options.get(doctest.SKIP)) for e in examples)
    return tests, len(examples), skipped


@pytest.mark.parametrize("name", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[m])) if m in KNOWN_FAILURES else m
    for m in MODULES
])
@pytest.mark.filterwarnings("ignore:stopped after the maximum")  # examples that stop on an epoch limit on purpose
def test_docstring_examples(name: str) -> None:
    tests, n, skipped = _examples(name)
    if name in NO_EXAMPLES:
        assert n == 0, f"{name} now has {n} examples: remove it from NO_EXAMPLES"
        return
    if name in ALL_SKIPPED:
        assert n > 0 and skipped == n, f"{name}: {skipped} of {n} examples skipped; update ALL_SKIPPED"
        return
    assert n > 0, f"{name} has no docstring examples: add one, or list it in NO_EXAMPLES with the reason"
    assert skipped == 0, f"{name}: {skipped} of {n} examples marked +SKIP without being listed in ALL_SKIPPED"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    with torch.random.fork_rng(devices=[]):
        for test in tests:
            torch.manual_seed(0)
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted == n and result.failed == 0, f"{name}: {result.failed} of {n} examples failed"


def test_every_listed_module_exists() -> None:
    assert set(NO_EXAMPLES) | set(ALL_SKIPPED) | set(KNOWN_FAILURES) <= set(MODULES)
