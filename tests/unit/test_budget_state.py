"""The service's budget state: aggregates recovered across a crash at any point, and the de-duplication window."""

from __future__ import annotations

import numpy as np
import pytest

from streams.service.budget_state import DecisionExpiry, aggregate_key
from streams.service.messages import Record
from streams.service.router import Router

from test_stream_router import completion, prepare, record, reserved, router, settled


def route(r: Router, decisions: dict, ids: list[str], first_offset: int, partition: int = 0) -> None:
    batch = [record(query_id, partition=partition, offset=first_offset + i) for i, query_id in enumerate(ids)]
    r.decide(prepare(batch), decisions, {})


def recovered(decisions: dict, aggregates: dict, budgets: tuple[float, float] = (40.0, 80.0)) -> Router:
    """A new router (a restarted process) that recovers partition 0's state."""
    fresh = router(budgets)
    fresh.on_assigned({0})
    fresh.rebuild(decisions, aggregates)
    return fresh


@pytest.mark.parametrize("saved_through", [None, 2, 4])
def test_the_aggregate_plus_the_redo_of_later_decisions_is_the_state_before_the_crash(saved_through) -> None:
    """A crash after the decisions are written but before (or after) the aggregate of their batch is: recovery
    finds the same reservations and settlements either way."""
    r, decisions, aggregates = router((40.0, 80.0)), {}, {}
    route(r, decisions, ["q0", "q1"], 0)
    if saved_through is not None and saved_through >= 2:
        aggregates[aggregate_key(0)] = r.budgets.snapshot(0, 2)
    route(r, decisions, ["q2", "q3"], 2)
    r.reconcile(Record("completions", 0, 0, b"q0", completion("q0", 1.5)), decisions)
    if saved_through == 4:
        aggregates[aggregate_key(0)] = r.budgets.snapshot(0, 4)
    r.reconcile(Record("completions", 0, 1, b"q3", completion("q3", 0.25)), decisions)
    before = (reserved(r), settled(r))
    assert before == ({"0/m1": 4.0}, {"0/m1": 1.75})
    assert (reserved(after := recovered(decisions, aggregates)), settled(after)) == before
    # a completion delivered again after the restart is not counted twice
    after.reconcile(Record("completions", 0, 1, b"q3", completion("q3", 0.25)), decisions)
    assert (reserved(after), settled(after)) == before


def test_expired_decisions_are_deleted_and_their_charges_stay_in_the_aggregate() -> None:
    r, decisions, aggregates = router((40.0, 80.0)), {}, {}
    route(r, decisions, ["q0", "q1"], 0)
    aggregates[aggregate_key(0)] = r.budgets.snapshot(0, 2)
    decided = decisions["0/q0"]["decided_at"]
    expiry = DecisionExpiry(window_s=60.0)
    expiry.reset(decisions, None)
    assert expiry.expire(decisions, decided + 59.0, None) == 0 and len(decisions) == 2
    assert expiry.expire(decisions, decided + 61.0, {1}) == 0 and len(decisions) == 2  # partition 0 moved away
    expiry.reset(decisions, None)
    assert expiry.expire(decisions, decided + 61.0, {0}) == 2 and decisions == {}
    assert reserved(recovered(decisions, aggregates)) == {"0/m1": 4.0}


def test_a_redelivered_query_inside_the_window_is_re_emitted_and_after_it_is_decided_anew() -> None:
    r, decisions = router((40.0, 80.0)), {}
    first, _ = r.decide(prepare([record("q0")]), decisions, {})
    again, _ = r.decide(prepare([record("q0")]), decisions, {})
    assert again[0].value == first[0].value and reserved(r) == {"0/m1": 2.0}
    r.expiry.window_s = 0.0
    r.expiry.expire(decisions, decisions["0/q0"]["decided_at"], None)
    later, _ = r.decide(prepare([record("q0")]), decisions, {})
    assert later[0].value != first[0].value and reserved(r) == {"0/m1": 4.0}


def test_the_reservation_is_the_reserve_factor_times_the_estimate_and_fits_the_share() -> None:
    r = router((4.0, 8.0))
    r.budgets.reserve_factor = 2.0
    r.budgets.ledgers.clear()
    decisions: dict = {}
    emitted, _ = r.decide(prepare([record(f"q{i}", offset=i) for i in range(3)]), decisions, {})
    # partition 0's share: m1 4.0 holds one reservation of 2 x 2.0 (the second estimate fits what is left, its
    # reservation does not: no-budget); m0 2.0 one of 2 x 1.0
    assert [m.topic for m in emitted] == ["routed.m1", "unserved", "routed.m0"]
    assert reserved(r) == {"0/m1": 4.0, "0/m0": 2.0}
    assert np.all(r.budgets.ledger(0).remaining() >= 0)
