"""The optimizer's solver process does not outlive its service process (a router killed with SIGKILL, as the
fault tests and operators do, leaves nobody to shut its pool down)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PARENT = """
import sys, time
from streams.service.solver import solver_pool
pool = solver_pool()
print(pool.submit(__import__("os").getpid).result(timeout=300), flush=True)
time.sleep(600)
"""


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_the_solver_process_exits_when_the_service_process_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.strip().isdigit(), f"the parent did not report its solver process: {line!r}"
        worker = int(line)
        assert worker != parent.pid and running(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 60
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running(worker), "the solver process outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
