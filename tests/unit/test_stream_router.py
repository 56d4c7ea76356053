"""The router's decisions without Kafka: one decision per query id, budget shares, reconciliation.

A tiny fake engine stands in for router_core here only; the integration tests use the real one.
"""

from __future__ import annotations

import json

import numpy as np

from router_core.estimator import Estimates
from schemas import QueryEvent
from streams.service.messages import Record
from streams.service.prepare import Prepared, Preparer
from streams.service.router import Router, TopicNames


class FakeEngine:
    """Two models; model 0 costs 1.0 and model 1 costs 2.0 per query; always picks model 1 when it can."""

    models = ("m0", "m1")
    dimension = 2

    def estimate(self, embeddings: np.ndarray, texts=None, tasks=None) -> Estimates:  # noqa: ANN001
        n = len(embeddings)
        return Estimates(np.full((n, 2), 0.5), np.tile([1.0, 2.0], (n, 1)))

    def embed(self, texts):  # noqa: ANN001, ANN201
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

    def controller(self, budgets: np.ndarray, seed: int = 0) -> "FakeEngine":
        return self  # the engine's fixed rule stands in for PORT's controller

    def follow(self, gamma: np.ndarray | None) -> None:
        pass

    def choices(self, est: Estimates, remaining: np.ndarray, rng: np.random.Generator):  # noqa: ANN201
        choices = []
        left = remaining.copy()
        for row in range(len(est)):
            pick = next((m for m in (1, 0) if est.cost[row, m] <= left[m]), -1)
            if pick >= 0:
                left[pick] -= est.cost[row, pick]
            choices.append(pick)
        return np.array(choices), np.ones(len(est))


class Weights:
    version = 1
    models = ["m0", "m1"]
    gamma = [0.0, 0.0]
    shares = None


def router(budgets: tuple[float, float] = (4.0, 8.0), partitions: int = 2) -> Router:
    topics = TopicNames("obs", "unserved", "dlq", {"m0": "routed.m0", "m1": "routed.m1"}, "queries")
    return Router(FakeEngine(), np.array(budgets), partitions, topics, lambda: Weights())


def prepare(records: list[Record]) -> Prepared:
    """``records`` prepared as the service prepares them, with the fake engine."""
    return Preparer(FakeEngine(), "dlq").prepare(records)


def reserved(r: Router) -> dict[str, float]:
    """Non-zero reservations per "<partition>/<model>"."""
    return {f"{p}/{m}": float(v) for p, ledger in r.budgets.ledgers.items() for m, v in zip(r.models, ledger.reserved)
            if v}


def settled(r: Router) -> dict[str, float]:
    """Non-zero settled dollars per "<partition>/<model>"."""
    return {f"{p}/{m}": float(v) for p, ledger in r.budgets.ledgers.items() for m, v in zip(r.models, ledger.spent)
            if v}


def record(query_id: str, partition: int = 0, offset: int = 0, value: bytes | None = None) -> Record:
    if value is None:
        value = QueryEvent(id=query_id, embedding=[1.0, 0.0]).model_dump_json().encode()
    return Record("queries", partition, offset, query_id.encode(), value)


def test_budget_share_per_partition_is_never_exceeded() -> None:
    r, decisions = router(), {}
    emitted, _ = r.decide(prepare([record(f"q{i}", partition=0, offset=i) for i in range(6)]), decisions, {})
    topics = [m.topic for m in emitted]
    # partition 0 owns half of each budget: m1 4.0 (two queries), m0 2.0 (two queries), then none
    assert topics == ["routed.m1"] * 2 + ["routed.m0"] * 2 + ["unserved"] * 2
    assert reserved(r) == {"0/m1": 4.0, "0/m0": 2.0}
    assert json.loads(emitted[-1].value)["reason"] == "no-budget"


def test_a_redelivered_query_gets_its_decision_again_without_a_new_charge() -> None:
    r, decisions = router(), {}
    first, _ = r.decide(prepare([record("q1")]), decisions, {})
    again, _ = r.decide(prepare([record("q1"), record("q1")]), decisions, {})
    assert [m.value for m in again] == [first[0].value] * 2
    assert reserved(r) == {"0/m1": 2.0}


def test_reconcile_replaces_the_reservation_once_and_rebuild_agrees() -> None:
    r, decisions = router(), {}
    r.decide(prepare([record("q1", partition=1)]), decisions, {})
    for offset in (0, 0, 1):  # the same completion delivered again, then a second completion of the query
        assert r.reconcile(Record("completions", 1, offset, b"q1", completion("q1", 0.5, partition=1)), decisions) == []
    assert reserved(r) == {} and settled(r) == {"1/m1": 0.5}
    r.rebuild(decisions, {})
    assert reserved(r) == {} and settled(r) == {"1/m1": 0.5}


def completion(query_id: str, cost: float, partition: int = 0, model: str = "m1") -> bytes:
    return json.dumps({"query_id": query_id, "model": model, "partition": partition, "cost": cost,
                       "latency_s": 0.1, "worker": "w", "completed_at": 1.0}).encode()


def test_invalid_records_become_dead_letters_with_reasons() -> None:
    batch = prepare([record("a", value=b"nope"), record("b", value=b'{"id": "b", "embedding": [1, 2, 3]}'),
                     record("c", value=b'{"id": "c", "embedding": [0, 0]}'), record("d")])
    reasons = [json.loads(m.value)["reason"] for m in batch.dead]
    assert len(reasons) == 3 and "dimensions" in reasons[1] and "zeros" in reasons[2]
    assert [q.id for q in batch.queries] == ["d"]


class VectorEngine(FakeEngine):
    """Estimates that differ per query: quality is the embedding's first coordinate."""

    def estimate(self, embeddings: np.ndarray, texts=None, tasks=None) -> Estimates:  # noqa: ANN001
        return Estimates(np.repeat(embeddings[:, :1], 2, axis=1), np.tile([1.0, 2.0], (len(embeddings), 1)))


def test_a_prepared_batch_cut_to_some_records_is_what_preparing_them_gives() -> None:
    def query(i: int) -> Record:
        angle = 0.1 * i
        value = QueryEvent(id=f"q{i}", embedding=[float(np.cos(angle)), float(np.sin(angle))]).model_dump_json()
        return Record("queries", i % 2, i, f"q{i}".encode(), value.encode())

    batch = [query(i) for i in range(6)] + [Record("queries", 0, 6, b"bad", b"nope"), query(7),
                                            Record("queries", 1, 8, b"worse", b"{")]
    preparer = Preparer(VectorEngine(), "dlq")
    part = [batch[7], batch[8], batch[1], batch[4], batch[6]]  # another order, both kinds, some left out
    cut, fresh = preparer.prepare(batch).only(part), preparer.prepare(part)
    assert [q.id for q in cut.queries] == [q.id for q in fresh.queries] == ["q7", "q1", "q4"]
    assert cut.records == fresh.records and cut.dead_records == fresh.dead_records == [batch[8], batch[6]]
    assert cut.dead_reasons == fresh.dead_reasons and len(cut.dead) == 2
    assert cut.estimates is not None and fresh.estimates is not None
    np.testing.assert_allclose(cut.estimates.quality, fresh.estimates.quality)
    np.testing.assert_allclose(cut.estimates.cost, fresh.estimates.cost)
    assert preparer.prepare(batch).only([batch[6]]).estimates is None  # no query left: as preparing none
