"""Reports: plots and the self-contained HTML page of a run, a comparison or a landscape.

- :func:`run_report`: ``report.html`` of a run folder (:mod:`descend.report.run`).
- :func:`compare` / :func:`comparison_report`: several settings over several seeds, one page.
- :func:`function_landscape` / :func:`run_landscape`: optimizer paths on test functions; loss-surface slices.
- :func:`run_trajectory`: a run's own path over the loss surface in its principal plane.
- :class:`RunRecord` / :func:`find_runs`: a run folder read back.
"""

from descend.report.comparison import Comparison, Setting, compare, comparison_report, read_comparison
from descend.report.landscape import function_landscape, run_landscape
from descend.report.record import RunRecord, find_runs
from descend.report.run import range_test_report, run_report
from descend.report.trajectory import run_trajectory

__all__ = [
    "Comparison",
    "RunRecord",
    "Setting",
    "compare",
    "comparison_report",
    "find_runs",
    "function_landscape",
    "range_test_report",
    "read_comparison",
    "run_landscape",
    "run_report",
    "run_trajectory",
]
