"""Run ``descend`` in this process with one function wrapped to kill, interrupt or pause the process at its n-th
call: the tests' way to stop a run at an exact point of its life (tests/test_kill_resume.py).

Environment: ``HARNESS_TARGET`` ("module:Attr.path"), ``HARNESS_NTH`` (1-based call), ``HARNESS_WHEN``
("before" the call, "after" it, or "torn": for ``atomic_write``, the temporary file written and never renamed),
``HARNESS_MATCH`` (only calls whose arguments' text holds it count), ``HARNESS_ACTION`` ("kill": SIGKILL,
"interrupt": SIGINT, as Ctrl-C sends, or "pause": create ``HARNESS_SYNC``/paused and wait for ``.../go``).
The command line follows: ``python interrupt_harness.py train data.csv ...``.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def _stop(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt at the next instruction
        time.sleep(1)
    else:
        sync = Path(os.environ["HARNESS_SYNC"])
        (sync / "paused").write_text(str(os.getpid()))
        while not (sync / "go").exists():
            time.sleep(0.02)


def _install() -> None:
    target = os.environ.get("HARNESS_TARGET")
    if not target:
        return
    module_name, path = target.split(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    nth, when = int(os.environ.get("HARNESS_NTH", "1")), os.environ.get("HARNESS_WHEN", "before")
    match, action = os.environ.get("HARNESS_MATCH", ""), os.environ.get("HARNESS_ACTION", "kill")
    calls = [0]

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if match and match not in " ".join(str(a) for a in (*args, *kwargs.values())):
            return original(*args, **kwargs)
        calls[0] += 1
        if calls[0] != nth:
            return original(*args, **kwargs)
        if when == "before":
            _stop(action)
            return original(*args, **kwargs)
        if when == "torn":  # atomic_write(path, data): the temporary file is whole, the rename never happens
            path_arg, data = args[0], args[1]
            Path(path_arg).with_name(f".{Path(path_arg).name}.{os.getpid()}.tmp").write_bytes(data)
            _stop(action)
            return original(*args, **kwargs)
        result = original(*args, **kwargs)
        _stop(action)
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    _install()
    from descend.cli.main import main

    sys.argv = ["descend", *sys.argv[1:]]
    main()
