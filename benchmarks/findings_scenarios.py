"""Run the findings scenarios of tests/test_findings_scenarios.py and print their outcomes as a markdown table.

Each row: the scenario, the rule it must raise (none: a healthy run), what the findings were (and the divergence
guard's rollbacks, if any), whether it passed and how long the run took. Below the table: recall over the provoked
failures and false alarms over the healthy runs.

    python benchmarks/findings_scenarios.py            # the markdown for docs/benchmarks.md
    python benchmarks/findings_scenarios.py --messages # and each finding's text
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_findings_scenarios import SCENARIOS, passed, run_scenario


def main(messages: bool = False) -> None:
    print("| scenario | expected | found | pass | seconds |")
    print("|---|---|---|---|---|")
    hits = provoked = false_alarms = healthy = 0
    notes = []
    for s in SCENARIOS:
        start = time.perf_counter()
        o = run_scenario(s)
        seconds = time.perf_counter() - start
        ok = passed(s, o)
        found = ", ".join(o.found) or "none"
        if o.rollbacks:
            found += f" ({o.rollbacks} guard rollback{'s' if o.rollbacks > 1 else ''})"
        if o.stop == "diverged":
            found += " (diverged)"
        if s.expected is None:
            healthy += 1
            false_alarms += not ok
        else:
            provoked += 1
            hits += ok
        print(f"| {s.name} | {s.expected or 'none'} | {found} | {'yes' if ok else 'NO'} | {seconds:.1f} |")
        notes += [f"- {s.name}: {m}" for m in o.messages] if messages else []
    print(f"\nRecall {hits}/{provoked} ({hits / provoked:.0%}); false alarms {false_alarms}/{healthy}.")
    if notes:
        print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main(messages="--messages" in sys.argv)
