"""A short chaos soak (`port-router chaos`, one seed) against the real broker: router kills, a
SIGTERM, a broker restart and a paused worker, and nothing lost or decided twice.

The soak restarts the broker through scripts/kafka.sh, so it needs the broker that script
started; it skips, or fails under CI=true, otherwise. Longer soaks are run by hand
(docs/STREAMS.md, "Chaos soak").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stream_harness as h

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_short_chaos_soak_loses_nothing(tmp_path: Path) -> None:
    h.require_environment()
    pid_file = Path(os.environ.get("KAFKA_DATA_DIR", h.REPO / ".kafka")) / "kafka.pid"
    h.require(pid_file.exists() and h.BOOTSTRAP.startswith("127.0.0.1:"),
              f"the broker at {h.BOOTSTRAP} was not started by scripts/kafka.sh ({pid_file} missing), "
              f"so the soak cannot restart it")
    out = tmp_path / "chaos.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KAFKA_PORT": h.BOOTSTRAP.rsplit(":", 1)[-1],
           "PORT_ROUTER__KAFKA__BOOTSTRAP_SERVERS": h.BOOTSTRAP}
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "chaos", "--seeds", "7", "--queries", "800", "--rate", "40",
         "--json", str(out), "--log-dir", str(tmp_path / "logs")],
        cwd=h.REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert out.exists(), f"chaos wrote no report (exit {result.returncode}):\n{result.stdout[-3000:]}\n" \
                         f"{result.stderr[-3000:]}"
    (report,) = json.loads(out.read_text())
    summary = {k: report[k] for k in ("produced", "lost", "decided_twice", "budget_overruns", "longest_stall_s")}
    assert report["produced"] == 800, summary
    assert report["lost"] == 0 and report["decided_twice"] == 0, summary
    assert report["budget_overruns"] == 0, summary
    assert len(report["faults"]) == 6, report["faults"]
    assert report["routed"] + report["unserved"] + report["dlq"] == 800, summary
    assert result.returncode == 0, result.stdout[-3000:]
