"""A router applies the budget share of the weights version it follows, acknowledges new versions for idle
partitions, and never routes a partition with weights older than its state already used."""

from __future__ import annotations

import json

import numpy as np

from streams.service.router import Router, TopicNames

from schemas import QueryEvent
from streams.service.messages import Record

from test_stream_router import FakeEngine, prepare, record, reserved


class Versioned:
    """Weights of a given version with per-partition shares (m0, m1)."""

    models = ["m0", "m1"]
    gamma = [0.0, 0.0]

    def __init__(self, version: int, shares: list[list[float]] | None, period: int = 0,
                 partition_spent: list[list[float]] | None = None) -> None:
        self.version, self.shares, self.period, self.partition_spent = version, shares, period, partition_spent


def router(current: list[Versioned], reserve_factor: float = 1.0) -> Router:
    topics = TopicNames("obs", "unserved", "dlq", {"m0": "routed.m0", "m1": "routed.m1"}, "queries")
    r = Router(FakeEngine(), np.array([4.0, 8.0]), 2, topics, lambda: current[0], reserve_factor=reserve_factor)
    r.on_assigned({0, 1})
    return r


def test_a_partition_spends_within_the_share_of_its_version_beyond_the_fixed_half() -> None:
    current = [Versioned(3, [[4.0, 8.0], [0.0, 0.0]])]
    r, decisions = router(current), {}
    emitted, observed = r.decide(prepare([record(f"q{i}", offset=i) for i in range(7)]), decisions, {})
    assert [m.topic for m in emitted] == ["routed.m1"] * 4 + ["routed.m0"] * 3
    assert reserved(r) == {"0/m1": 8.0, "0/m0": 3.0}  # 4 x 2.0 and 3 x 1.0: beyond B/P = (2, 4)
    assert {json.loads(m.value)["weights_version"] for m in observed} == {3}
    assert {d["weights_version"] for d in decisions.values()} == {3}


def test_idle_partitions_acknowledge_a_new_version_once() -> None:
    current = [Versioned(2, [[1.0, 1.0], [3.0, 7.0]])]
    r = router(current)
    moved, events = r.acknowledge({0, 1}, {}, {})
    assert moved == [0, 1]
    acks = [json.loads(e.value) for e in events]
    assert [(a["partition"], a["weights_version"], a["rows"]) for a in acks] == [(0, 2, []), (1, 2, [])]
    assert r.acknowledge({0, 1}, {}, {}) == ([], [])
    assert r.budgets.snapshot(1, 0)["weights_version"] == 2
    assert r.budgets.ledger(1).limits.tolist() == [3.0, 7.0]


def test_a_router_whose_weights_lag_the_state_does_not_route_that_partition() -> None:
    current = [Versioned(5, None)]
    r, decisions = router(current), {}
    r.decide(prepare([record("q1", partition=1)]), decisions, {})
    aggregates = {"1/budget": r.budgets.snapshot(1, 1)}
    restarted = router([Versioned(4, None)])  # another process, its watcher still at v4
    assert restarted.behind(restarted.weights(), decisions, aggregates) == [1]
    lost_aggregate = router([Versioned(4, None)])  # the version is recovered from the decision records too
    assert lost_aggregate.behind(lost_aggregate.weights(), decisions, {}) == [1]
    assert router([Versioned(5, None)]).behind(Versioned(5, None), decisions, aggregates) == []


def test_shares_beyond_the_budgets_are_not_followed() -> None:
    current = [Versioned(2, [[4.0, 8.0], [1.0, 0.0]])]  # m0: 5.0 in all, the budget is 4.0
    r = router(current)
    r.acknowledge({0, 1}, {}, {})
    assert r.budgets.ledger(0).limits.tolist() == [2.0, 4.0]  # B/P kept


def test_shares_apply_only_in_the_budget_period_they_were_solved_in() -> None:
    current = [Versioned(2, [[3.0, 6.0], [1.0, 2.0]], period=7)]
    r = router(current)
    r.budgets.current(0, 7)
    r.follow(current[0], 0)
    assert r.budgets.ledger(0).limits.tolist() == [3.0, 6.0]  # the version's share, in its own period
    r.budgets.current(0, 8)  # the partition's clock crossed into period 8: the closed period's shares do not apply
    r.follow(current[0], 0)
    assert r.budgets.ledger(0).limits.tolist() == [2.0, 4.0]
    r.budgets.current(1, 6)  # a partition still in period 6 keeps its limits under period-7 shares
    r.budgets.ledger(1).limits = np.array([0.5, 0.5])
    r.follow(current[0], 1)
    assert r.budgets.ledger(1).limits.tolist() == [0.5, 0.5]


def handed(message_value: bytes, partition: int, offset: int = 0) -> Record:
    """The handed-over query as the router of ``partition`` reads it back from the input topic."""
    value = json.loads(message_value)
    return record(value["id"], partition=partition, offset=offset, value=message_value)


def test_a_query_whose_model_another_partition_can_pay_for_is_handed_over_to_it() -> None:
    current = [Versioned(3, [[4.0, 0.0], [0.0, 8.0]], partition_spent=[[0.0, 0.0], [0.0, 0.0]])]
    r, decisions = router(current), {}
    emitted, observed = r.decide(prepare([record("q1", partition=0)]), decisions, {})
    assert [(m.topic, m.partition, m.label) for m in emitted] == [("queries", 1, ("handed-over", "1"))]
    assert json.loads(emitted[0].value)["handed_over_from"] == 0
    assert reserved(r) == {}  # partition 0 charged nothing
    assert [json.loads(m.value)["rows"] for m in observed] == [[]]  # and reports no decision for it
    assert decisions["0/q1"]["partition"] == 1 and decisions["0/q1"]["model"] is None
    again, _ = r.decide(prepare([record("q1", partition=0, offset=1)]), decisions, {})
    assert [(m.topic, m.partition, m.value) for m in again] == [("queries", 1, emitted[0].value)]  # redelivery
    landed, observed = r.decide(prepare([handed(emitted[0].value, partition=1, offset=5)]), decisions, {})
    assert [m.topic for m in landed] == ["routed.m1"]  # the model it wanted, within partition 1's share
    assert reserved(r) == {"1/m1": 2.0}
    assert [len(json.loads(m.value)["rows"]) for m in observed] == [1]


def test_a_handed_over_query_is_decided_where_it_lands() -> None:
    current = [Versioned(3, [[4.0, 0.0], [0.0, 8.0]], partition_spent=[[0.0, 0.0], [0.0, 0.0]])]
    r, decisions = router(current), {}
    value = QueryEvent(id="q1", embedding=[1.0, 0.0], handed_over_from=1).model_dump_json().encode()
    emitted, _ = r.decide(prepare([record("q1", partition=0, value=value)]), decisions, {})
    assert [m.topic for m in emitted] == ["routed.m0"]  # never handed over twice


def test_no_handover_when_the_other_partition_has_no_room_or_the_weights_say_nothing() -> None:
    for weights in (Versioned(3, [[4.0, 0.0], [0.0, 8.0]], partition_spent=[[0.0, 0.0], [0.0, 7.0]]),  # 1.0 < 2.0
                    Versioned(3, [[4.0, 0.0], [0.0, 8.0]]),  # no reported use: room unknown
                    Versioned(3, [[4.0, 0.0], [0.0, 8.0]], period=1, partition_spent=[[0.0, 0.0], [0.0, 0.0]])):  # B/P
        r, decisions = router([weights]), {}
        emitted, _ = r.decide(prepare([record("q1", partition=0)]), decisions, {})
        assert [(m.topic.startswith("routed."), m.partition) for m in emitted] == [(True, None)], vars(weights)


def test_a_batch_hands_over_no_more_than_the_room_it_saw() -> None:
    current = [Versioned(3, [[4.0, 0.0], [0.0, 8.0]], partition_spent=[[0.0, 0.0], [0.0, 4.0]])]  # room for two
    r, decisions = router(current), {}
    emitted, _ = r.decide(prepare([record(f"q{i}", partition=0, offset=i) for i in range(3)]), decisions, {})
    assert [(m.topic, m.partition) for m in emitted] == [("queries", 1), ("queries", 1), ("routed.m0", None)]


def test_a_query_whose_reservation_does_not_fit_here_is_handed_over() -> None:
    current = [Versioned(3, [[4.0, 2.2], [0.0, 5.8]], partition_spent=[[0.0, 0.0], [0.0, 0.0]])]
    r = router(current, reserve_factor=1.25)
    emitted, _ = r.decide(prepare([record("q1", partition=0)]), {}, {})  # m1 costs 2.0 <= 2.2, reserves 2.5 > 2.2
    assert [(m.topic, m.partition) for m in emitted] == [("queries", 1)]
