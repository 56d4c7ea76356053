"""The chaos soak's checks without Kafka: schedule, stall measure, budget-share invariant, double decisions."""

from __future__ import annotations

from pathlib import Path

from streams.tools.chaos import decisions_by_id, longest_stall, schedule, share_usage
from streams.config import load_config
from streams.tools.outcomes import OutcomeTally

REPO = Path(__file__).resolve().parents[2]


def test_the_schedule_is_reproducible_and_covers_every_fault() -> None:
    first = schedule(3, duration=75.0, routers=2, workers=11, observation_s=1.9)
    assert first == schedule(3, duration=75.0, routers=2, workers=11, observation_s=1.9)
    assert first != schedule(4, duration=75.0, routers=2, workers=11, observation_s=1.9)
    actions = sorted(f.action for f in first)
    assert actions == sorted(["sigkill-router"] * 3 + ["sigterm-router", "restart-broker", "pause-worker"])
    kills = sorted(f.at for f in first if f.action == "sigkill-router")
    assert kills[0] <= 1.9 and kills[-1] >= 0.9 * 75.0  # during the observation phase, near the end
    assert [f.at for f in first] == sorted(f.at for f in first)


def test_longest_stall_counts_only_time_with_a_query_waiting() -> None:
    produced = [0.0, 1.0, 2.0, 10.0]
    # decisions at 0.5, 1.5, 2.5 keep up; the last query waits from 10 to 14.
    assert longest_stall(produced, [0.5, 1.5, 2.5, 14.0]) == (4.0, 10.0)
    # nothing waits between 2.5 and 10: a quiet stream is not a stall
    assert longest_stall(produced, [0.5, 1.5, 2.5, 10.2])[0] == 0.5
    assert longest_stall(produced, [7.0, 7.1, 7.2, 10.1]) == (7.0, 0.0)


def routed(query_id: str, model: str, partition: int, reservation: float) -> dict:
    return {"query": {"id": query_id}, "model": model, "partition": partition, "estimated_cost": reservation / 2,
            "reserved_cost": reservation}


def test_share_usage_counts_actual_costs_and_the_reservations_still_held() -> None:
    config = load_config(REPO / "examples" / "config.yaml", {})
    model = config.models[0]
    share = model.budget
    tally = OutcomeTally()
    tally.routed_messages = [routed("a", model.name, 0, 0.6 * share), routed("b", model.name, 1, 0.6 * share)]
    assert share_usage(config, tally)[0] == 1  # two reservations over the budget
    tally.completions = {"a": {"cost": 0.3 * share}}  # a settled cheaper, freeing room for b
    overruns, used = share_usage(config, tally)
    assert overruns == 0 and abs(used - 0.9) < 1e-9
    tally.routed_messages.append(routed("a", model.name, 0, 0.6 * share))  # a re-emission is not a new charge
    assert share_usage(config, tally)[0] == 0
    tally.completions["b"] = {"cost": 0.75 * share}  # settled spend itself over the budget is found
    assert share_usage(config, tally)[0] == 1


def test_two_different_decisions_for_one_id_are_found() -> None:
    tally = OutcomeTally()
    tally.routed_messages = [routed("a", "m1", 0, 1.0), routed("a", "m1", 0, 1.0), routed("b", "m1", 0, 1.0),
                             routed("b", "m2", 0, 1.0)]
    tally.placements = {"a": {"routed:m1"}, "b": {"routed:m1", "routed:m2"}, "c": {"unserved"}}
    decided = decisions_by_id(tally)
    assert decided == {"a": {"routed:m1"}, "b": {"routed:m1", "routed:m2"}, "c": {"unserved"}}
