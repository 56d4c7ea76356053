"""PORT's controller: the observation phase, the solve schedule, the bounded sample, budget periods."""

from __future__ import annotations

import numpy as np

from router_core.controller import DecisionSample, PortController
from router_core.estimator import Estimates
from router_core.params import PortParams


def estimates(n: int, m: int = 3, seed: int = 0) -> Estimates:
    rng = np.random.default_rng(seed)
    return Estimates(rng.uniform(0, 1, (n, m)), rng.uniform(0.001, 0.01, (n, m)) * np.arange(1, m + 1))


def run(controller: PortController, est: Estimates) -> list[int]:
    """Route ``est`` one by one as the offline policy does; the decisions seen at each solve."""
    solves = []
    remaining = controller.budgets.copy()
    for j in range(len(est)):
        if controller.due():
            controller.solve(remaining)
            solves.append(controller.seen)
        choice = int(controller.choices(est.rows(j, j + 1), remaining, np.random.default_rng(j))[0][0])
        if choice >= 0:
            remaining[choice] -= est.cost[j, choice]
        controller.record(est.quality[j], est.cost[j])
    return solves


def test_first_solve_after_the_observation_phase_then_every_resolve_every() -> None:
    params = PortParams(eps=0.05, resolve_every=10, observation="random")
    controller = PortController(params, 0.005, np.full(3, 0.5), n_expected=100)
    assert controller.n_observe == 5
    assert run(controller, estimates(60)) == [5, 15, 25, 35, 45, 55]


def test_without_resolve_every_it_solves_once() -> None:
    controller = PortController(PortParams(resolve_every=0, observation="random"), 0.005, np.full(3, 0.5), 200)
    assert run(controller, estimates(100)) == [5]


def test_the_history_prior_routes_the_observation_phase() -> None:
    history = estimates(50, seed=1)
    controller = PortController(PortParams(observation="history-prior"), 0.005, np.full(3, 0.5), 100, history)
    assert controller.observing and controller.prior is not None
    choices, scores = controller.choices(estimates(4), np.full(3, 0.5), np.random.default_rng(0))
    assert np.all(np.isfinite(scores[choices >= 0])), "prior choices are scored (not random draws)"


def test_window_keeps_the_last_rows_and_reservoir_is_bounded() -> None:
    window, reservoir, everything = DecisionSample("window", 4, 0), DecisionSample("reservoir", 4, 0), \
        DecisionSample("all", 4, 0)
    for i in range(50):
        for sample in (window, reservoir, everything):
            sample.add(np.array([float(i)]), np.array([1.0]))
    assert window.estimates().quality[:, 0].tolist() == [46.0, 47.0, 48.0, 49.0]
    assert len(reservoir) == 4 and reservoir.count == 50
    assert set(reservoir.estimates().quality[:, 0]) <= set(map(float, range(50)))
    assert len(everything) == 50


def test_a_resolve_learns_from_the_window_only() -> None:
    params = PortParams(eps=0.05, resolve_every=10, resolve_window=10, observation="random")
    controller = PortController(params, 0.005, np.full(3, 0.5), n_expected=100)
    run(controller, estimates(45))
    assert len(controller.sample) == 10 and controller.seen == 45


def test_a_new_period_restarts_the_schedule_but_not_the_observation_phase() -> None:
    params = PortParams(eps=0.05, resolve_every=10, observation="history-prior")
    controller = PortController(params, 0.005, np.full(3, 0.5), 100, history=estimates(50, seed=1))
    run(controller, estimates(30))
    gamma = controller.gamma.copy()
    controller.restart_period(np.full(3, 0.25), n_expected=100)
    assert controller.seen == 0 and len(controller.sample) == 0 and controller.prior is None
    assert np.array_equal(controller.gamma, gamma), "the weights stay until the next re-solve"
    assert run(controller, estimates(25, seed=2)) == [10, 20]


def test_resolve_time_benchmark_solves_on_a_bounded_sample() -> None:
    from router_core.evaluation.resolve_time import resolve_times

    params = PortParams(resolve_window=50, observation="random")
    rows = resolve_times(estimates(40), np.full(3, 5.0), params, 0.005, (100, 1000), repeats=1)
    assert [(r.seen, r.sample_size) for r in rows] == [(100, 50), (1000, 50)]
    assert all(r.median_ms > 0 for r in rows)
