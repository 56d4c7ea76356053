"""The replay evaluator on a hand-computed case, and budget safety of every policy (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router_core.estimator import Estimates
from router_core.evaluation.replay import replay
from router_core.params import PortParams
from router_core.policies import REGISTRY, SKIP, Policy, Stream, create_policy
from tests.unit.routing_fixtures import random_stream


class Scripted(Policy):
    """Routes by a fixed list (a test double for the policy, not for the evaluator)."""

    def __init__(self, plan: list[int]) -> None:
        self.plan = plan

    def choose(self, j: int, remaining: np.ndarray) -> int:
        return self.plan[j]


def hand_stream(budgets: tuple[float, float] = (3.0, 1.0)) -> Stream:
    true_quality = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    true_cost = np.array([[2.0, 1.0], [2.0, 1.0], [2.0, 1.0], [2.0, 1.0]])
    est = Estimates(true_quality, np.array([[1.0, 1.0]] * 4))
    return Stream(est, est, est, true_quality, true_cost, np.array(budgets), 1.0)


def test_oracle_accounting_by_hand():
    # q0 -> model 0 (cost 2, quality 1): served, 1 left on model 0.
    # q1 -> model 0 (cost 2 > 1 left): lost.  q2 -> skip.  q3 -> model 1 (cost 1, quality 1): served.
    result = replay(Scripted([0, 0, SKIP, 1]), hand_stream(), np.random.default_rng(0), "oracle")
    assert (result.performance, result.cost, result.throughput) == (2.0, 3.0, 2)
    assert result.ppc == pytest.approx(2 / 3)
    assert result.served.tolist() == [True, False, False, True]


def test_reserve_accounting_by_hand():
    # Estimates are 1.0, true costs 2.0 on model 0 and 1.0 on model 1; reservations are 2 x the estimate.
    # q0 holds 2 of model 0's 3; q1's reservation (2) does not fit the 1 left: lost; q2 skips; q3 holds 2 of
    # model 1's 2. q0 (true cost 2) and q3 (1) complete within their reservations: served.
    result = replay(Scripted([0, 0, SKIP, 1]), hand_stream((3.0, 2.0)), np.random.default_rng(0), "reserve",
                    in_flight=2, reserve_factor=2.0)
    assert result.served.tolist() == [True, False, False, True]
    np.testing.assert_allclose(result.spent, [2.0, 1.0])


def test_reserving_the_estimate_alone_refuses_every_dearer_answer():
    # Reservations of 1.0 (the estimate): q0 and q1 hold 2 of model 0's 3, but their answers cost 2 > 1: the
    # worker refuses them and nothing is charged; q3's answer costs its reservation: served.
    result = replay(Scripted([0, 0, SKIP, 1]), hand_stream(), np.random.default_rng(0), "reserve", in_flight=2,
                    reserve_factor=1.0)
    assert result.served.tolist() == [False, False, False, True]
    np.testing.assert_allclose(result.spent, [0.0, 1.0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), budget_scale=st.floats(0.05, 3.0), factor=st.floats(1.0, 4.0))
def test_settled_spend_stays_within_budgets_when_every_answer_costs_more_than_its_estimate(seed, budget_scale, factor):
    stream = random_stream(n=60, m=3, seed=seed, budget_scale=budget_scale)
    overrun = np.random.default_rng(seed).uniform(1.01, 3.0, size=stream.true_cost.shape)
    stream = Stream(stream.estimates, stream.exact_estimates, stream.history_estimates, stream.true_quality,
                    stream.estimates.cost * overrun, stream.budgets, stream.cost_scale)
    for name in ("port", "greedy-perf", "opt-estimated"):
        result = replay(create_policy(name, PortParams(n_expected=60, eps=0.1)), stream, np.random.default_rng(seed),
                        "reserve", in_flight=4, reserve_factor=factor)
        assert np.all(result.spent <= stream.budgets * (1 + 1e-12)), name
        served = result.served
        assert np.all(stream.true_cost[served, result.choices[served]] <= factor * stream.estimates.cost[
            served, result.choices[served]] * (1 + 1e-12)), name


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), budget_scale=st.floats(0.05, 3.0),
       accounting=st.sampled_from(["oracle", "reserve"]))
def test_no_policy_ever_exceeds_a_budget(seed, budget_scale, accounting):
    stream = random_stream(n=60, m=3, seed=seed, budget_scale=budget_scale)
    params = PortParams(n_expected=60, eps=0.1, resolve_every=10)
    for name in sorted(REGISTRY):
        policy = create_policy(name, params)
        result = replay(policy, stream, np.random.default_rng(seed), accounting, in_flight=4)
        assert np.all(result.spent <= stream.budgets * (1 + 1e-12)), name
        assert result.throughput == int(result.served.sum())
        assert np.all(result.choices[result.served] >= 0)


def test_opt_reaches_its_lp_bound_on_integral_data():
    stream = random_stream(n=40, m=3, seed=3, budget_scale=0.5)
    policy = create_policy("opt", PortParams())
    result = replay(policy, stream, np.random.default_rng(0))
    assert result.performance <= policy.lp_bound + 1e-9
    assert result.performance >= policy.lp_bound - 3  # rounding down loses at most one query per model


def test_port_paper_uses_the_papers_settings():
    policy = create_policy("port-paper", PortParams())
    assert policy.params.dual_solver == "lbfgsb"
    assert not (policy.params.skip_option or policy.params.budget_aware or policy.params.normalize_costs)
