"""bench-parity measures each answer's delay in the stream, in queries, and the offline evaluator settles with it."""

from __future__ import annotations

import numpy as np

from router_core.evaluation.replay import replay
from streams.tools.outcomes import OutcomeTally
from streams.tools.parity import RecordedChoices, answer_delays

from test_replay import hand_stream


def test_delays_count_the_queries_decided_before_each_completion_and_interpolate_the_rest() -> None:
    tally = OutcomeTally()
    tally.routed_messages = [{"query": {"id": "a"}, "routed_at": 1.0}, {"query": {"id": "c"}, "routed_at": 3.0},
                             {"query": {"id": "a"}, "routed_at": 1.0}]  # a re-emission counts once
    tally.unserved_messages = [{"query_id": "b", "decided_at": 2.0}, {"query_id": "d", "decided_at": 4.0},
                               {"query_id": "e", "decided_at": 5.0}]
    tally.completions = {"a": {"completed_at": 4.5}, "c": {"completed_at": 3.5}}
    # a: b, c, d decided after it and before its completion (3); c: none (at least 1); b between: 2
    assert answer_delays(tally, ("a", "b", "c", "d", "e")).tolist() == [3, 2, 1, 1, 1]
    assert answer_delays(OutcomeTally(), ("a", "b")).tolist() == [32, 32]


def test_replay_with_one_delay_per_query_equals_the_fixed_delay_when_they_agree() -> None:
    stream = hand_stream()
    choices = np.zeros(stream.size, dtype=np.int64)
    fixed = replay(RecordedChoices(choices), stream, np.random.default_rng(0), "reserve", in_flight=2)
    each = replay(RecordedChoices(choices), stream, np.random.default_rng(0), "reserve",
                  in_flight=np.full(stream.size, 2))
    assert fixed.performance == each.performance and np.array_equal(fixed.served, each.served)
    assert np.array_equal(fixed.spent, each.spent)
