"""The stream service under faults, against the real broker: kill -9, two routers, broker restart.

Run: scripts/kafka.sh start && .venv/bin/python -m pytest tests/integration/test_stream_faults.py -v
(the broker test restarts the broker through scripts/kafka.sh, so it needs the broker that
script started; it skips, or fails under CI=true, otherwise).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from streams.config import load_config

import stream_harness as h

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _environment() -> None:
    h.require_environment()


def assert_one_model_per_query(tally) -> None:  # noqa: ANN001 (OutcomeTally)
    """A query re-emitted after a crash goes to the same model with the same decision."""
    models: dict[str, set[str]] = {}
    for message in tally.routed_messages:
        models.setdefault(message["query"]["id"], set()).add(message["model"])
    double = {qid: m for qid, m in models.items() if len(m) > 1}
    assert not double, f"routed to two models: {dict(list(double.items())[:5])}"


def test_kill_9_mid_stream_then_restart(tmp_path: Path) -> None:
    path = h.write_config(tmp_path, partitions=2, n_expected=200, budget_scale=3.0)
    config = load_config(path, {})
    router = h.router_process(path, tmp_path / "router.log").start()
    try:
        router.wait_ready()
        queries = h.random_queries(600, "k", seed=4)
        producer = threading.Thread(target=h.produce, args=(config, queries, 150.0))
        producer.start()
        time.sleep(2.0)  # mid-stream: about a third produced
        router.stop(signal.SIGKILL)
        producer.join()
        router = h.router_process(path, tmp_path / "router2.log", "restarted router").start()
        router.wait_ready()
        tally = h.outcomes(config, len(queries))
        produced = [q.id for q in queries]
        h.assert_accounting(tally, produced)
        assert_one_model_per_query(tally)
        reserved = h.assert_budgets(config, tally)
        h.assert_state_matches(router.state(), reserved)
        assert len(tally.routed_messages) >= len(h.first_decisions(tally))
    finally:
        router.stop()


def test_two_routers_share_four_partitions(tmp_path: Path) -> None:
    path = h.write_config(tmp_path, partitions=4, n_expected=200)
    config = load_config(path, {})
    routers = [h.router_process(path, tmp_path / f"router{i}.log", f"router {i}").start() for i in range(2)]
    try:
        for router in routers:
            router.wait_ready()
        time.sleep(5)  # let the group settle on two members
        queries = h.random_queries(400, "s", seed=5)
        produced = h.produce(config, queries)
        tally = h.outcomes(config, len(produced))
        h.assert_accounting(tally, produced)
        reserved = h.assert_budgets(config, tally)
        states = [router.state() for router in routers]
        held = [set(state["partitions"]) for state in states]
        assert all(held) and not held[0] & held[1], f"partitions held: {held}"
        decided_by = [sum(state["sent"].values()) for state in states]
        assert all(decided_by), f"messages sent per router: {decided_by}"
        combined = {m: sum(s["budgets"][m]["spent"] for s in states) for m in states[0]["budgets"]}
        h.assert_state_matches({"budgets": {m: {"spent": v} for m, v in combined.items()}}, reserved)
    finally:
        for router in routers:
            router.stop()


def kafka_script(command: str, *extra: str) -> None:
    """Run scripts/kafka.sh for the broker at h.BOOTSTRAP."""
    env = {**os.environ, "KAFKA_PORT": h.BOOTSTRAP.rsplit(":", 1)[-1]}
    subprocess.run([str(h.REPO / "scripts" / "kafka.sh"), command, *extra], check=True, env=env, timeout=180)


def test_broker_stop_and_start_the_router_resumes(tmp_path: Path) -> None:
    pid_file = Path(os.environ.get("KAFKA_DATA_DIR", h.REPO / ".kafka")) / "kafka.pid"
    h.require(pid_file.exists() and h.BOOTSTRAP.startswith("127.0.0.1:"),
            f"the broker at {h.BOOTSTRAP} was not started by scripts/kafka.sh ({pid_file} missing), "
            f"so this test cannot restart it")
    _, config, router = h.start_router(tmp_path)
    try:
        before = h.routed_wave(config, 100, "r1", seed=6)
        kafka_script("stop")
        time.sleep(3)
        kafka_script("start", "--keep")
        after = h.produce(config, h.random_queries(100, "r2", seed=7))
        tally = h.outcomes(config, len(before) + len(after), timeout=240)
        h.assert_accounting(tally, before + after)
        assert router.process is not None and router.process.poll() is None, "the router died with the broker"
        h.assert_budgets(config, tally)
    finally:
        router.stop()


def test_backlog_produced_while_the_router_is_down_is_routed_after_restart(tmp_path: Path) -> None:
    """A graceful restart with a backlog (what every deploy does): the backlog is routed, nothing lost."""
    path, config, router = h.start_router(tmp_path)
    try:
        first = h.routed_wave(config, 40, "g1", seed=8)
        router.stop()
        second = h.produce(config, h.random_queries(40, "g2", seed=9))
        router = h.router_process(path, tmp_path / "router2.log", "restarted router").start()
        router.wait_ready()
        tally = h.outcomes(config, len(first) + len(second), timeout=30.0)  # the backlog is routed within 30 s
        h.assert_accounting(tally, first + second)
        h.assert_state_matches(router.state(), h.assert_budgets(config, tally))
    finally:
        router.stop()
