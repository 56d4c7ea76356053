"""The de-duplication window on the real broker: re-delivery inside it re-emits the decision, decisions expire
mid-stream (tombstones in the changelog), and a restarted router recovers the budget aggregates intact.

Run: scripts/kafka.sh start && .venv/bin/python -m pytest tests/integration/test_stream_dedup_window.py -v
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from streams.service.app import app_id
from streams.config import load_config
from streams.kafka import read_to_end

from stream_harness import assert_accounting, assert_budgets, assert_state_matches, outcomes, produce, \
    random_queries, require_environment, router_process, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 60.0


@pytest.fixture(autouse=True)
def _environment() -> None:
    require_environment()


def tombstones(config, deadline_s: float, expected: int) -> int:  # noqa: ANN001
    """Deleted decision records in the decisions changelog, once ``expected`` are there (or the deadline passes)."""
    topic = f"{app_id(config)}-decisions-changelog"
    deadline = time.monotonic() + deadline_s
    while True:
        count = sum(1 for message in read_to_end(config.kafka.confluent(), topic) if message.value() is None)
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(2.0)


def messages(config, ids: int, count: int, deadline_s: float = 180.0):  # noqa: ANN001, ANN201
    """The outcomes once ``count`` routed and unserved messages (re-emissions included) are out."""
    deadline = time.monotonic() + deadline_s
    while True:
        tally = outcomes(config, ids)
        if len(tally.routed_messages) + len(tally.unserved_messages) >= count or time.monotonic() > deadline:
            return tally
        time.sleep(1.0)


def test_redelivery_inside_the_window_expiry_after_it_and_aggregates_across_a_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path, partitions=2, n_expected=200)
    data = yaml.safe_load(path.read_text())
    data["router"]["dedup_window_s"] = WINDOW_S
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, {})
    router = router_process(path, tmp_path / "router.log").start()
    try:
        router.wait_ready()
        first = random_queries(60, "w", seed=5)
        ids = produce(config, first)
        tally = outcomes(config, len(ids))
        assert_accounting(tally, ids)
        charged = assert_budgets(config, tally)
        assert_state_matches(router.state(), charged)
        decided = {m["query"]["id"]: m for m in tally.routed_messages}

        produce(config, first)  # delivered again inside the window: the same decisions, no new charge
        again = messages(config, len(ids), 2 * len(ids))
        assert len(again.routed_messages) + len(again.unserved_messages) == 2 * len(ids)
        for message in again.routed_messages:
            assert message == decided[message["query"]["id"]]
        assert_state_matches(router.state(), charged)

        deleted = tombstones(config, deadline_s=3 * WINDOW_S, expected=len(ids))
        assert deleted >= len(ids), f"only {deleted} of {len(ids)} decisions deleted after {3 * WINDOW_S:.0f}s"

        router.stop()
        router = router_process(path, tmp_path / "router2.log", "restarted router").start()
        router.wait_ready()
        assert_state_matches(router.state(), charged)  # the aggregates hold the charges of deleted decisions

        produce(config, first[:10])  # after the window: decided anew, charged again
        later = messages(config, len(ids), 2 * len(ids) + 10)
        assert len(later.routed_messages) + len(later.unserved_messages) == 2 * len(ids) + 10
        new = [m for m in later.routed_messages if m != decided.get(m["query"]["id"])]
        assert new and {m["query"]["id"] for m in new} <= {q.id for q in first[:10]}
        recharged = sum(m["reserved_cost"] for m in new)
        spent = sum(b["spent"] for b in router.state()["budgets"].values())
        assert spent == pytest.approx(sum(charged.values()) + recharged, rel=1e-9)
    finally:
        router.stop()
