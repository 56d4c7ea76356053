"""The commands that start routers and workers (bench-parity, bench-stream, bench-recovery, demo, chaos) turn SIGTERM
into an exit that runs their ``finally`` blocks, so the processes they started are stopped with them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from streams.tools.processes import REPO

SCRIPT = """
import pathlib, sys, time
from streams.tools.processes import exit_on_sigterm
exit_on_sigterm()
try:
    print("ready", flush=True)
    time.sleep(120)
finally:
    pathlib.Path(sys.argv[1]).write_text("children stopped")
"""


def test_sigterm_runs_the_finally_blocks_and_exits_143(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        child.kill()
        child.wait()
    assert marker.read_text() == "children stopped"
