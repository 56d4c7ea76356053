"""bench-parity measures each answer's delay in the stream, in queries, and the offline evaluator settles with it;
repeated runs of a setting are judged on their mean, beside how far offline ``port`` moves by itself."""

from __future__ import annotations

import numpy as np

from router_core.evaluation.replay import replay
from streams.tools.outcomes import OutcomeTally
from router_core.params import PortParams
from router_core.policies import create_policy
from streams.tools.parity import RecordedChoices, answer_delays, offline_jitter, setting_means

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


def row(seed: int, offline: float, stream: float, jitter: tuple[float, float]) -> dict:
    return {"split": "weighted", "budget_factor": 1.0, "seed": seed, "offline_performance": offline,
            "stream_performance": stream, "ratio": stream / offline, "offline_jitter_min": jitter[0],
            "offline_jitter_max": jitter[1]}


def test_a_setting_is_judged_on_the_ratio_of_its_mean_performances() -> None:
    means = setting_means([row(42, 100.0, 90.0, (98, 101)), row(42, 102.0, 106.0, (99, 104)),
                           row(43, 50.0, 49.0, (49, 50))])
    first = means[("weighted", 1.0, 42)]
    assert (first["offline"], first["stream"]) == (101.0, 98.0)
    assert first["ratio"] == 98.0 / 101.0
    assert (first["low"], first["high"]) == (0.9, 106.0 / 102.0)
    assert (first["jitter_low"], first["jitter_high"]) == (98, 104)
    assert means[("weighted", 1.0, 43)]["ratio"] == 0.98


def test_offline_jitter_replays_port_one_query_and_one_re_solve_off() -> None:
    stream = hand_stream((3.0, 2.0))
    params = PortParams(n_expected=stream.size, eps=0.25, resolve_every=2)
    delays = np.full(stream.size, 2)
    jitter = offline_jitter(params, stream, 0, delays, 1.25)
    assert len(jitter) == 4  # answers one query later and sooner, re-solve every 1 and 3 decisions
    later = replay(create_policy("port", params), stream, np.random.default_rng(0), "reserve", in_flight=delays + 1,
                   reserve_factor=1.25)
    assert jitter[0] == later.performance
    assert len(offline_jitter(params.model_copy(update={"resolve_every": 1}), stream, 0, delays, 1.25)) == 3
    assert len(offline_jitter(params.model_copy(update={"resolve_every": 0}), stream, 0, delays, 1.25)) == 2
