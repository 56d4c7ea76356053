"""Budget periods: period arithmetic, ledgers across a boundary, recovery across a crash at each point around a
boundary, and the optimizer's restart at a new period."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from pydantic import ValidationError

from router_core.estimator import Estimates
from router_core.evaluation.replay import replay
from router_core.params import BudgetParams, PortParams
from router_core.policies import Policy, Stream, create_policy
from router_core.policies.port import PortPolicy
from router_core.periods import BudgetPeriods, forecast_volume
from schemas import ObservationEvent, ObservedDecision, RoutingWeights
from streams.service import router as router_module
from streams.service.budget_state import aggregate_key
from streams.service.messages import Record
from streams.service.router import Router
from streams.service.weights import Optimizer

from tests.unit.routing_fixtures import random_stream
from test_optimizer_schedule import Engine
from test_stream_router import completion, prepare, record, router

LENGTH = 60.0
ORIGIN = 1_000.0


class Clock:
    """The routers' clock, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(ORIGIN + 10 * LENGTH + 1.0)  # in period 10
    monkeypatch.setattr(router_module.time, "time", fake)
    return fake


def periodic(budgets: tuple[float, float] = (4.0, 8.0), kept: int = 24) -> Router:
    r = router(budgets)
    r.periods = BudgetPeriods(LENGTH, ORIGIN)
    r.budgets.periods_kept = kept
    return r


def decide(r: Router, decisions: dict, ids: list[str], first_offset: int) -> list[str]:
    emitted, _ = r.decide(prepare([record(q, offset=first_offset + i) for i, q in enumerate(ids)]), decisions, {})
    return [m.topic for m in emitted]


def settle(r: Router, decisions: dict, query_id: str, cost: float, offset: int) -> None:
    r.reconcile(Record("completions", 0, offset, query_id.encode(), completion(query_id, cost)), decisions)


def state(r: Router) -> dict[int, dict[str, dict[str, float]]]:
    """Per period, the non-zero reserved and settled dollars of partition 0 per model."""
    return {period: {m: {k: v for k, v in sums.items() if k != "limit" and v} for m, sums in models.items()
                     if sums["reserved"] or sums["settled"]}
            for period, models in r.budgets.report([0]).items()}


# -- period arithmetic ----------------------------------------------------------------------------
def test_a_moment_belongs_to_the_period_that_contains_it_on_a_grid_from_the_origin() -> None:
    grid = BudgetPeriods(LENGTH, ORIGIN)
    assert [grid.index(t) for t in (ORIGIN, ORIGIN + 59.999, ORIGIN + 60.0, ORIGIN - 0.001)] == [0, 0, 1, -1]
    assert (grid.start(3), grid.end(3)) == (ORIGIN + 180.0, ORIGIN + 240.0)
    assert grid.index(grid.start(7)) == 7 and grid.index(grid.end(7) - 1e-6) == 7
    off = BudgetPeriods()
    assert off.index(0.0) == off.index(4e9) == 0 and off.end(0) == float("inf")
    assert BudgetParams(period="1h", period_origin=5.0).grid() == BudgetPeriods(3600.0, 5.0)


@pytest.mark.parametrize("text,seconds", [("none", None), (None, None), (30, 30.0), ("90s", 90.0), ("15m", 900.0),
                                          ("1.5h", 5400.0), ("1d", 86_400.0), (" 2 h ", 7200.0)])
def test_budget_period_takes_none_seconds_or_a_duration(text: object, seconds: float | None) -> None:
    assert BudgetParams(period=text).period == seconds


@pytest.mark.parametrize("text", ["soon", "1w", "0", 0, -5, "-1h", True, "inf"])
def test_budget_period_rejects_what_is_not_a_positive_duration(text: object) -> None:
    with pytest.raises(ValidationError, match="period"):
        BudgetParams(period=text)


def test_the_volume_forecast_is_the_closed_periods_rate_times_the_length() -> None:
    assert forecast_volume(500, 1000.0, 1060.0, 60.0, fallback=10) == 500  # a whole period
    assert forecast_volume(100, 1030.0, 1060.0, 60.0, fallback=10) == 200  # started mid-period: its rate
    assert forecast_volume(100, 1000.0, 1120.0, 60.0, fallback=10) == 50  # an empty period in between
    assert forecast_volume(0, 1000.0, 1060.0, 60.0, fallback=10) == 10
    assert forecast_volume(5, 1060.0, 1060.0, 60.0, fallback=10) == 10  # no span: no rate


# -- ledgers across a boundary --------------------------------------------------------------------
def test_a_budget_exhausted_in_one_period_routes_again_in_the_next(clock: Clock) -> None:
    r, decisions = periodic(), {}
    # partition 0's share per period: m1 4.0 (two queries at 2.0), m0 2.0 (two at 1.0), then none
    assert decide(r, decisions, [f"a{i}" for i in range(5)], 0) == ["routed.m1"] * 2 + ["routed.m0"] * 2 + ["unserved"]
    clock.now += LENGTH
    assert decide(r, decisions, ["b0", "b1"], 5) == ["routed.m1"] * 2
    assert {decisions[f"0/{q}"]["period"] for q in ("a0", "a3")} == {10} and decisions["0/b0"]["period"] == 11
    assert state(r) == {10: {"m1": {"reserved": 4.0}, "m0": {"reserved": 2.0}}, 11: {"m1": {"reserved": 4.0}}}
    limits = r.budgets.report([0])
    assert limits[10]["m1"]["limit"] == limits[11]["m1"]["limit"] == 4.0, "each period's limit is the share"


def test_a_completion_after_the_boundary_settles_in_its_decisions_period(clock: Clock) -> None:
    r, decisions = periodic(), {}
    decide(r, decisions, ["a0", "a1"], 0)
    clock.now += LENGTH
    decide(r, decisions, ["b0"], 2)
    settle(r, decisions, "a0", 0.5, 0)
    assert state(r) == {10: {"m1": {"reserved": 2.0, "settled": 0.5}}, 11: {"m1": {"reserved": 2.0}}}
    assert np.allclose(r.budgets.ledger(0).remaining(), [2.0, 2.0]), "the closed period's release is not spendable"


def test_periods_never_go_back_for_a_partition(clock: Clock) -> None:
    r, decisions = periodic(), {}
    clock.now += LENGTH
    decide(r, decisions, ["b0"], 0)
    clock.now -= LENGTH  # a router whose clock lags takes the partition over
    decide(r, decisions, ["a0"], 1)
    assert decisions["0/a0"]["period"] == 11 and state(r) == {11: {"m1": {"reserved": 4.0}}}


def test_only_the_last_periods_kept_are_kept_and_a_completion_of_an_older_one_changes_no_budget(clock: Clock) -> None:
    r, decisions = periodic(kept=2), {}
    for i in range(4):
        decide(r, decisions, [f"q{i}"], i)
        clock.now += LENGTH
    decide(r, decisions, ["q4"], 4)
    assert sorted(r.budgets.report([0])) == [12, 13, 14]
    settle(r, decisions, "q0", 1.0, 0)  # period 10: no longer kept
    assert sorted(r.budgets.report([0])) == [12, 13, 14] and r.budgets.applied(0, 0)
    assert r.budgets.snapshot(0, 5)["closed"].keys() == {"12", "13"}


def test_with_periods_off_everything_is_period_zero() -> None:
    r, decisions = router(), {}
    decide(r, decisions, ["q0"], 0)
    snapshot = r.budgets.snapshot(0, 1)
    assert decisions["0/q0"]["period"] == 0 and snapshot["period"] == 0 and snapshot["closed"] == {}


# -- recovery across a boundary ------------------------------------------------------------------
STEPS = ["a: decide a0 a1", "save 2", "boundary: decide b0 b1", "save 4", "complete a0 (period 10)", "save 4",
         "complete b1 (period 11)", "save 4"]


def run_steps(r: Router, decisions: dict, aggregates: dict, crash_after: int, saves: bool) -> None:
    """The scenario up to step ``crash_after``; aggregates written at the 'save' steps when ``saves``."""
    for step in STEPS[:crash_after + 1]:
        if step.startswith("save"):
            if saves:
                aggregates[aggregate_key(0)] = json.loads(json.dumps(r.budgets.snapshot(0, int(step.split()[1]))))
        elif step.startswith("a:"):
            decide(r, decisions, ["a0", "a1"], 0)
        elif step.startswith("boundary"):
            router_module.time.time.now += LENGTH  # type: ignore[attr-defined]
            decide(r, decisions, ["b0", "b1"], 2)
        elif step.startswith("complete a0"):
            settle(r, decisions, "a0", 0.5, 0)
        else:
            settle(r, decisions, "b1", 1.5, 1)


@pytest.mark.parametrize("saves", [True, False])
@pytest.mark.parametrize("crash_after", range(len(STEPS)))
def test_recovery_after_a_crash_at_each_point_across_a_boundary_is_the_state_before(
        clock: Clock, crash_after: int, saves: bool) -> None:
    """Aggregates (each written as JSON, like the changelog) plus the redo of the decision records beyond their
    watermarks give every period's sums as they were before the crash, whichever aggregate was written last."""
    r, decisions, aggregates = periodic((40.0, 80.0)), {}, {}
    run_steps(r, decisions, aggregates, crash_after, saves)
    before = state(r)
    fresh = periodic((40.0, 80.0))
    fresh.on_assigned({0})
    fresh.rebuild(decisions, aggregates)
    assert state(fresh) == before
    current = r.budgets.periods.get(0)
    assert fresh.budgets.periods.get(0) == current
    # a completion delivered again after the restart changes nothing; the current period goes on
    if crash_after >= 4:
        settle(fresh, decisions, "a0", 0.5, 0)
        assert state(fresh) == before
    if current is not None:
        assert np.allclose(fresh.budgets.ledger(0).remaining(), r.budgets.ledger(0).remaining())


def test_an_aggregate_written_before_periods_recovers_into_the_current_period() -> None:
    r = router((40.0, 80.0))
    old = {"reserved": {"m1": 2.0}, "settled": {"m0": 1.0}, "queries_next": 1, "completions_next": 0}
    r.on_assigned({0})
    r.rebuild({}, {aggregate_key(0): old})
    decide(r, {}, ["q1"], 1)
    assert state(r) == {0: {"m1": {"reserved": 4.0}, "m0": {"settled": 1.0}}}


# -- the optimizer across a boundary -------------------------------------------------------------
class Watcher:
    caught_up = threading.Event()

    def latest(self) -> None:
        return None


def observation(i: int, period: int, at: float, spent: float) -> bytes:
    row = ObservedDecision(id=f"q{i}", quality=[0.5, 0.6], cost=[0.01, 0.02])
    return ObservationEvent(partition=0, observed_at=at, phase="learned", partition_spent=[spent, spent], period=period,
                            rows=[row]).model_dump_json().encode()


def optimizer(budget: BudgetParams) -> Optimizer:
    Watcher.caught_up.set()
    opt = Optimizer(Engine(), np.array([1.0, 1.0]), {}, "obs", "weights", Watcher(), 2, budget)  # type: ignore[arg-type]
    opt.resume(0)
    return opt


def test_the_optimizer_restarts_the_schedule_at_a_new_period_with_the_forecast_volume() -> None:
    budget = BudgetParams(period=LENGTH, period_origin=ORIGIN)
    opt = optimizer(budget)
    start = ORIGIN + 5 * LENGTH
    due = [offset for offset in range(30) if opt.on_observation(offset, observation(offset, 5, start + 30 + offset,
                                                                                     0.01 * offset))
           and opt.controller.solve(opt.remaining()) is not None]
    assert due == [4, 14, 24] and opt.controller.n_expected == Engine.port.n_expected
    assert np.allclose(opt.remaining(), 0.71)
    # first observation of period 6: 30 decisions in the 30 s from the first one to the boundary -> 60 per period
    assert not opt.on_observation(30, observation(30, 6, start + LENGTH + 1, 0.02))
    assert opt.period == 6 and opt.controller.n_expected == 60 and opt.controller.seen == 1
    assert not opt.controller.observing, "the observation phase is not repeated"
    assert np.allclose(opt.remaining(), 0.98), "the closed period's spend no longer counts"
    opt.on_observation(31, observation(31, 5, start + 59, 0.5))  # a late decision of the closed period
    assert np.allclose(opt.remaining(), 0.98)
    due = [offset for offset in range(32, 60) if opt.on_observation(offset, observation(offset, 6, start + 70, 0.02))
           and opt.controller.solve(opt.remaining()) is not None]
    assert due == [39, 49, 59], "re-solves every resolve_every decisions of the new period, from its start"


def test_the_configured_period_volume_wins_over_the_forecast() -> None:
    opt = optimizer(BudgetParams(period=LENGTH, period_origin=ORIGIN, period_queries=400))
    assert opt.controller.n_expected == 400 and opt.target == 20
    opt.on_observation(0, observation(0, 5, ORIGIN + 5 * LENGTH, 0.0))
    opt.on_observation(1, observation(1, 6, ORIGIN + 6 * LENGTH, 0.0))
    assert opt.period == 6 and opt.controller.n_expected == 400


# -- offline: the evaluator runs a stream as K periods through the same controller hook -----------
class Scripted(Policy):
    """Routes by a fixed list, and records the period boundaries it is told of."""

    def __init__(self, plan: list[int]) -> None:
        self.plan = plan
        self.restarts: list[tuple[list[float], int]] = []

    def restart_period(self, budgets: np.ndarray, n_expected: int) -> None:
        self.restarts.append((budgets.tolist(), n_expected))

    def choose(self, j: int, remaining: np.ndarray) -> int:
        return self.plan[j]


def test_offline_periods_have_their_own_budgets_and_a_late_answer_settles_in_its_period() -> None:
    quality = np.ones((6, 2))
    cost = np.ones((6, 2))
    est = Estimates(quality, cost)
    stream = Stream(est, est, est, quality, cost, np.array([4.0, 2.0]), 1.0)
    policy = Scripted([0, 0, 0, 0, 0, 0])  # model 0 holds 2 queries per period (4.0 / 2)
    result = replay(policy, stream, np.random.default_rng(0), "reserve", in_flight=2, periods=2)
    assert policy.restarts == [([2.0, 1.0], 3), ([2.0, 1.0], 3)]
    assert result.served.tolist() == [True, True, False, True, True, False], "exhausted, then served again"
    # query 1 completes after the boundary (in flight 2): it settles in period 0, not in period 1
    assert [s.tolist() for s in result.period_spent] == [[2.0, 0.0], [2.0, 0.0]]
    assert result.spent.tolist() == [4.0, 0.0]


def test_offline_port_restarts_its_controller_at_each_period_and_stays_within_each_periods_budget() -> None:
    stream = random_stream(n=90, m=3, seed=4, budget_scale=0.6)
    restarts: list[tuple[int, int, bool]] = []

    class Spy(PortPolicy):
        def restart_period(self, budgets: np.ndarray, n_expected: int) -> None:
            super().restart_period(budgets, n_expected)
            restarts.append((self.controller.n_expected, self.controller.n_observe, self.controller.observing))

    params = PortParams(n_expected=90, eps=0.1, resolve_every=10, observation="random")
    result = replay(Spy(params), stream, np.random.default_rng(1), "reserve", in_flight=4, periods=3)
    # the observation phase (ceil(0.1 x 30) decisions) in the first period only
    assert restarts == [(30, 3, True), (30, 3, False), (30, 3, False)] and len(result.period_spent) == 3
    for spent in result.period_spent:
        assert np.all(spent <= stream.budgets / 3 * (1 + 1e-12))
    single = replay(create_policy("port", params), stream, np.random.default_rng(1), "reserve", in_flight=4)
    assert len(single.period_spent) == 1 and np.allclose(single.spent, single.period_spent[0])
    with pytest.raises(ValueError, match="periods"):
        replay(create_policy("port", params), stream, np.random.default_rng(1), periods=0)


def test_a_restarted_optimizer_resumes_the_periods_schedule_from_the_newest_weights(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.service import weights as weights_module

    def replayed(kafka_conf: dict, topic: str, start: int, stop: int):  # noqa: ANN202
        return ((offset, ObservationEvent.model_validate_json(observation(offset, 6, ORIGIN + 6 * LENGTH + 1, 0.1)))
                for offset in range(start, stop))

    monkeypatch.setattr(weights_module, "read_observations", replayed)
    latest = RoutingWeights(version=7, models=["a", "b"], gamma=[0.1, 0.2], alpha=1e-4, eps=0.05, solver="lp",
                            objective=1.0, cost_scale=1.0, sample_size=3, created_at=1.0, decisions_seen=3,
                            next_offset=40, partition_spent=[[0.1, 0.1]], period=6, period_expected=60,
                            period_first_at=ORIGIN + 6 * LENGTH + 1, schedule_start=0)

    class Published(Watcher):
        def latest(self) -> RoutingWeights:  # type: ignore[override]
            return latest

    Published.caught_up.set()
    opt = Optimizer(Engine(), np.array([1.0, 1.0]), {}, "obs", "weights", Published(), 2,  # type: ignore[arg-type]
                    BudgetParams(period=LENGTH, period_origin=ORIGIN))
    opt.resume(42)  # observations 40 and 41 were made after the weights
    assert (opt.period, opt.controller.n_expected, opt.controller.start, opt.controller.seen) == (6, 60, 0, 5)
    assert not opt.controller.observing and np.allclose(opt.remaining(), 0.9)
    due = [offset for offset in range(42, 60) if opt.on_observation(offset, observation(offset, 6, ORIGIN + 400, 0.2))
           and opt.controller.solve(opt.remaining()) is not None]
    assert due == [49, 59], "re-solves every resolve_every decisions after the newest weights' solve (at 3 seen)"


def test_the_example_configuration_has_no_periods_and_an_override_sets_one() -> None:
    from pathlib import Path

    from streams.config import load_config

    example = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"
    assert load_config(example, {}).budget.period is None
    budget = load_config(example, {"PORT_ROUTER__BUDGET__PERIOD": "15m",
                                   "PORT_ROUTER__BUDGET__PERIOD_QUERIES": "5000"}).budget
    assert (budget.period, budget.period_queries, budget.grid().index(1800.0)) == (900.0, 5000, 2)
