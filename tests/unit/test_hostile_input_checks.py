"""The router's and worker's defences against a hostile producer, without Kafka (issue 12).

The same defects are reproduced against the real broker in tests/integration/test_stream_hostile.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from schemas import QueryEvent, RoutedQuery, RoutingWeights
from streams.config import ModelSettings, ServiceConfig
from streams.service.messages import Record
from streams.service.prepare import unit_embedding
from streams.service.router import CostBound, Router, TopicNames, finite_or_none
from streams.service.weights import align_weights
from streams.worker import Worker

from test_stream_router import FakeEngine, Weights, prepare, record, reserved, settled


def router(factor: float = 10.0, cap: float = 0.0) -> Router:
    topics = TopicNames("obs", "unserved", "dlq", {"m0": "routed.m0", "m1": "routed.m1"}, "queries")
    return Router(FakeEngine(), np.array([4.0, 8.0]), 2, topics, lambda: Weights(),
                  cost_bound=CostBound(factor, cap))


def reasons(records: list[Record]) -> list[str]:
    return [json.loads(m.value)["reason"] for m in prepare(records).dead]


def test_a_query_whose_key_is_not_its_id_is_a_dead_letter() -> None:
    value = QueryEvent(id="q1", embedding=[1.0, 0.0]).model_dump_json().encode()
    found = reasons([Record("queries", 0, 0, b"other", value), Record("queries", 0, 1, None, value),
                               Record("queries", 0, 2, b"q1", value)])
    assert len(found) == 2 and "'other' is not the query id 'q1'" in found[0] and "no key" in found[1]


@pytest.mark.parametrize("vector", [[1e300, 1e300], [1e-300, 1e-300], [1e-40, 1e-40], [0.0, 0.0], [3e39, 0.0]])
def test_embeddings_without_a_float32_direction_are_dead_letters(vector: list[float]) -> None:
    value = QueryEvent(id="q", embedding=vector).model_dump_json().encode()
    assert "float32" in reasons([Record("queries", 0, 0, b"q", value)])[0]


def test_small_or_large_but_usable_embeddings_are_normalized() -> None:
    for vector in ([3e-5, 4e-5], [3e38, 4e38 / 1.5]):
        unit = unit_embedding(vector)
        assert isinstance(unit, np.ndarray) and unit.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(unit), 1.0, rtol=1e-6)


def completion(cost: float, query_id: str = "q1") -> bytes:
    return json.dumps({"query_id": query_id, "model": "m1", "partition": 0, "cost": cost, "latency_s": 0.1,
                       "worker": "w", "completed_at": 1.0}).encode()


def test_a_completion_beyond_the_plausible_bound_is_a_dead_letter_and_the_reservation_stays() -> None:
    r, decisions = router(factor=10.0, cap=0.5), {}
    r.decide(prepare([record("q1")]), decisions, {})  # reserves 2.0 on m1
    for cost in (1e6, 1e308, 20.000001):
        dead = r.reconcile(Record("completions", 0, 0, b"q1", completion(cost)), decisions)
        assert len(dead) == 1 and "plausible bound $20" in json.loads(dead[0].value)["reason"]
    assert reserved(r) == {"0/m1": 2.0} and decisions["0/q1"]["actual"] is None
    assert r.reconcile(Record("completions", 0, 0, b"q1", completion(20.0)), decisions) == []
    assert settled(r) == {"0/m1": 20.0}


def test_the_absolute_cap_admits_costs_above_a_tiny_estimate() -> None:
    assert CostBound(10.0, 0.5).limit(0.001) == 0.5 and CostBound(10.0, 0.5).limit(1.0) == 10.0


def test_non_finite_numbers_never_reach_json() -> None:
    assert finite_or_none(math.inf) is None and finite_or_none(math.nan) is None and finite_or_none(2.5) == 2.5


def weights(models: list[str], gamma: list[float], version: int = 1) -> RoutingWeights:
    return RoutingWeights(version=version, models=models, gamma=gamma, alpha=1e-4, eps=0.025, solver="s",
                          objective=1.0, cost_scale=1.0, sample_size=5, created_at=1.0)


def test_weights_in_another_model_order_are_reordered_by_name() -> None:
    aligned = align_weights(weights(["c", "a", "b"], [3.0, 1.0, 2.0]), ("a", "b", "c"))
    assert isinstance(aligned, RoutingWeights)
    assert (aligned.models, aligned.gamma) == (["a", "b", "c"], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("models", [["a", "b"], ["a", "b", "d"], ["a", "b", "c", "d"]])
def test_weights_for_another_set_of_models_are_rejected(models: list[str]) -> None:
    reason = align_weights(weights(models, [1.0] * len(models)), ("a", "b", "c"))
    assert isinstance(reason, str) and "the router has" in reason


def routed(model: str = "m", partition: int = 0) -> bytes:
    return RoutedQuery(query=QueryEvent(id="q1", text="2+2?"), model=model, partition=partition, phase="learned",
                       estimated_quality=0.5, estimated_cost=0.01, routed_at=1.0).model_dump_json().encode()


def worker() -> Worker:
    config = ServiceConfig(models=[ModelSettings(name="m", budget=1.0), ModelSettings(name="n", budget=1.0)],
                           history=["unused"])
    w = Worker(config, "m", backend=None, group_prefix="g")  # type: ignore[arg-type]
    w.partitions = 2
    return w


def test_the_worker_refuses_routed_messages_it_must_not_answer() -> None:
    w = worker()
    cases = {"invalid": (b"q1", b"{}"), "'n'": (b"q1", routed("n")), "partition 7": (b"q1", routed(partition=7)),
             "not the query id": (b"q2", routed())}
    for expected, (key, value) in cases.items():
        reason = w.check(Record(w.topic, 0, 0, key, value))
        assert isinstance(reason, str) and expected in reason, (expected, reason)
    assert isinstance(w.check(Record(w.topic, 0, 0, b"q1", routed(partition=1))), RoutedQuery)
    assert isinstance(w.check(Record("port.routed.n", 0, 0, b"q1", routed())), str)
