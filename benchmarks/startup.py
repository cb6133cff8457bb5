"""Start-up time of ``import descend`` and of the command line's ``--help``, against the bare interpreter and
``import torch`` (what an import of descend cost when it brought torch).

Each command runs ``--runs`` times in a fresh process (warm file cache, so "cold-ish": no process state is
shared), interleaved in rounds so a busy spell of the machine hits every command alike; the table gives the median
and the spread (min-max) of the wall time.

    flock /tmp/descend-bench.lock .venv/bin/python benchmarks/startup.py --runs 10
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "descend")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import descend": [sys.executable, "-c", "import descend"],
    "descend --help": [EXE, "--help"],
    "descend train --help": [EXE, "train", "--help"],
    "import torch (peer)": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    assert shutil.which(EXE), f"{EXE} is not installed"
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    print(f"{os.cpu_count()} cores {platform.machine()}, Python {platform.python_version()}, load "
          f"{os.getloadavg()[0]:.2f}; median of {args.runs} runs\n")  # fmt: skip
    print("| command | median s | min-max s |\n|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.3f} | {min(ts):.3f}-{max(ts):.3f} |")


if __name__ == "__main__":
    main()
