"""Budget shares move to where the traffic is: every query on input partition 0 of 2, and that partition
reserves more than B_i / P of a model's budget once the idle partition 1 has acknowledged a version that
lowered its share, while the reserved total over both partitions never exceeds B_i. Queries partition 0 hands
over (docs/STREAMS.md) are routed by partition 1 and marked so; no other query is routed there. And a handover
on its own: operator weights that give partition 0 no share send its every query to partition 1.

No worker runs, so nothing settles: every reservation stays held, the strictest case for the bound.
Run: scripts/kafka.sh start && .venv/bin/python -m pytest tests/integration/test_stream_share_reassignment.py -v
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from schemas import RoutingWeights
from streams import kafka
from streams.config import load_config
from streams.service.weights import WEIGHTS_KEY
from streams.topics import QUERIES, WEIGHTS

import stream_harness as h
from kafka_io import read_all, send

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def send_to_partition_zero(config_path: Path, count: int, rate: float) -> list[str]:
    """Produce ``count`` random queries to partition 0 of the queries topic at ``rate`` per second."""
    config = load_config(config_path, {})
    producer = kafka.producer(config.kafka.confluent())
    queries = h.random_queries(count, "hot", seed=5)
    started = time.monotonic()
    for i, query in enumerate(queries):
        producer.produce(config.topics.name(QUERIES), key=query.id.encode(), value=query.model_dump_json().encode(),
                         partition=0)
        producer.poll(0)
        time.sleep(max(started + (i + 1) / rate - time.monotonic(), 0.0))
    assert producer.flush(30) == 0
    return [q.id for q in queries]


def newest_weights(config_path: Path) -> RoutingWeights:
    """The newest record of the weights topic."""
    config = load_config(config_path, {})
    consumer = kafka.consumer(config.kafka.confluent(), "unused-test-weights", **{"enable.partition.eof": True})
    kafka.assign(consumer, config.topics.name(WEIGHTS), {0: None})
    newest, deadline = None, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if newest is not None:
                    return newest
                continue
            newest = RoutingWeights.model_validate_json(message.value())
    finally:
        consumer.close()
    raise AssertionError("no weights on the topic within 60 s")


def test_all_traffic_on_one_partition_spends_beyond_its_fixed_share_within_the_budget(tmp_path: Path) -> None:
    h.require_environment()
    path = h.write_config(tmp_path, partitions=2, n_expected=400, budget_scale=0.1)
    config = load_config(path, {})
    router = h.router_process(path, tmp_path / "router.log").start()
    try:
        router.wait_ready()
        ids = send_to_partition_zero(path, 400, rate=40.0)
        tally = h.outcomes(config, len(ids), timeout=300)
        h.assert_accounting(tally, ids)
        h.assert_budgets(config, tally)  # reserved per model over both partitions <= B_i
        handed = [m for m in tally.routed_messages if m["partition"] != 0]
        assert all(m["partition"] == 1 and m["query"].get("handed_over_from") == 0 for m in handed), handed[:3]
        totals: dict[str, float] = {}  # what partition 0 itself reserved
        for m in h.first_decisions(tally).values():
            if m["partition"] == 0:
                totals[m["model"]] = totals.get(m["model"], 0.0) + m["reserved_cost"]
        beyond = {m: dollars / (config.model(m).budget / 2) for m, dollars in totals.items()
                  if dollars > config.model(m).budget / 2 * (1 + 1e-9)}
        assert beyond, f"partition 0 never reserved more than B_i / 2 of any model: {totals}"
        versions = {m["weights_version"] for m in tally.routed_messages if m["phase"] == "learned"}
        assert len(versions) >= 2, versions
        weights = newest_weights(path)
        assert weights.shares is not None and weights.share_acks is not None
        assert weights.share_acks[1] >= 1, f"the idle partition never acknowledged a version: {weights.share_acks}"
        for i, model in enumerate(weights.models):  # the published shares themselves stay within the budget
            assert sum(row[i] for row in weights.shares) <= config.model(model).budget * (1 + 1e-9)
        state = router.state()
        for model, budget in state["budgets"].items():
            assert budget["spent"] <= budget["limit"] * (1 + 1e-9), (model, budget)
    finally:
        router.stop()


def test_queries_whose_partition_has_no_share_are_handed_over_to_the_partition_that_has(tmp_path: Path) -> None:
    """Operator weights give partition 1 every dollar and partition 0 none (no re-solve moves them): each query
    that lands on partition 0 goes back to the queries topic on partition 1, marked, and is routed there once."""
    h.require_environment()
    path = h.write_config(tmp_path, partitions=2, n_expected=200, budget_scale=20.0)  # room for every query
    data = yaml.safe_load(path.read_text())
    data["port"]["resolve_every"] = 0  # the operator's weights stay the newest
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, {})
    names = [m.name for m in config.models]
    budgets = [m.budget for m in config.models]
    weights = RoutingWeights(version=1, models=names, gamma=[1e-6] * len(names), alpha=1e-4, eps=0.025,
                             solver="operator", objective=1.0, cost_scale=1.0, sample_size=5, created_at=time.time(),
                             shares=[[0.0] * len(names), budgets], partition_spent=[[0.0] * len(names)] * 2)
    send(config, config.topics.name(WEIGHTS), WEIGHTS_KEY, weights.model_dump_json().encode())
    router = h.router_process(path, tmp_path / "router.log").start()
    try:
        router.wait_ready()
        ids = h.produce(config, h.random_queries(30, "handover", seed=21))
        tally = h.outcomes(config, len(ids))
        h.assert_accounting(tally, ids)
        h.assert_budgets(config, tally)
        inputs = [(m.partition, json.loads(m.value)) for m in read_all(config, config.topics.name(QUERIES))]
        upstream_on_zero = {q["id"] for p, q in inputs if p == 0 and q.get("handed_over_from") is None}
        handed = {q["id"] for p, q in inputs if p == 1 and q.get("handed_over_from") == 0}
        assert upstream_on_zero and handed == upstream_on_zero, (sorted(upstream_on_zero), sorted(handed))
        assert not any(p == 0 and q.get("handed_over_from") is not None for p, q in inputs), "handed over to 0"
        assert {m["partition"] for m in tally.routed_messages} == {1}
        assert {m["query"]["id"] for m in tally.routed_messages if m["query"].get("handed_over_from") == 0} == handed
        assert tally.unserved == 0
    finally:
        router.stop()
