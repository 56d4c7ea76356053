"""Estimator, dual solvers, budget ledger, rule and budget splits on small hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from router_core.budget import BudgetLedger, within_reservation
from router_core.dual import dual_objective, solve_lbfgsb, solve_lp
from router_core.errors import ConfigurationError
from router_core.estimator import neighbour_means
from router_core.evaluation.splits import split_budget, split_weights
from router_core.rule import SKIP, budget_aware_choices


def test_neighbour_means_average_the_labelled_rows():
    quality = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cost = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    est = neighbour_means(np.array([[0, 1], [1, 2]]), quality, cost)
    np.testing.assert_allclose(est.quality, [[0.5, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(est.cost, [[2.0, 3.0], [4.0, 5.0]])


def test_lp_dual_on_a_case_solved_by_hand():
    # One model, two queries of quality 1 and cost 1, budget 1 for a sample share eps=1:
    # F(g) = g + 2 max(0, 1 - g), minimized at g = 1 with F = 1.
    solution = solve_lp(np.ones((2, 1)), np.ones((2, 1)), np.array([1.0]), eps=1.0, alpha=1.0)
    assert solution.gamma == pytest.approx([1.0])
    assert solution.objective == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_lp_is_never_worse_than_lbfgsb(seed):
    rng = np.random.default_rng(seed)
    quality, cost = rng.random((40, 4)), rng.uniform(0.1, 2.0, (40, 4))
    budgets = rng.uniform(5, 20, 4)
    exact = solve_lp(quality, cost, budgets, eps=0.5, alpha=1.0, skip=False)
    paper = solve_lbfgsb(quality, cost, budgets, eps=0.5, alpha=1.0)
    f_exact = dual_objective(exact.gamma, quality, cost, budgets, 0.5, 1.0)
    assert f_exact == pytest.approx(exact.objective, rel=1e-6)
    assert f_exact <= paper.objective + 1e-9
    assert np.all((paper.gamma >= 0) & (paper.gamma <= 1))


def test_lp_without_skip_stays_bounded_when_a_budget_is_spent():
    solution = solve_lp(np.ones((3, 2)), np.ones((3, 2)), np.array([0.0, 1.0]), eps=1.0, alpha=1.0, skip=False)
    assert np.all(np.isfinite(solution.gamma))


def test_ledger_never_goes_over_a_limit():
    ledger = BudgetLedger(np.array([1.0, 2.0]), reserve_factor=2.0)
    assert ledger.reserve(0, 0.3) == 0.6  # the reservation is 2 x the estimate
    assert ledger.reserve(0, 0.25) is None  # 0.5 more does not fit
    assert not ledger.charge(0, 0.5)
    assert within_reservation(0.55, 0.6) and not within_reservation(0.61, 0.6)
    ledger.settle(0, 0.6, 0.55)  # the answer within its reservation replaces it
    np.testing.assert_allclose(ledger.spent, [0.55, 0.0])
    np.testing.assert_allclose(ledger.remaining(), [0.45, 2.0])
    with pytest.raises(ValueError, match="at least 1"):
        BudgetLedger(np.array([1.0]), reserve_factor=0.5)


def test_budget_aware_rule_spends_within_the_batch():
    score = np.array([[3.0, 1.0], [3.0, 1.0], [3.0, -1.0]])
    cost = np.ones((3, 2))
    choices, chosen = budget_aware_choices(score, cost, np.array([1.0, 1.0]), skip=True)
    # The first query takes model 0's whole budget; the second falls back to model 1;
    # the third declines (model 0 is spent, model 1 scores below zero).
    assert choices.tolist() == [0, 1, SKIP]
    assert np.isnan(chosen[2])


@pytest.mark.parametrize("split", ["weighted", "cost", "perf", "uniform", "extreme", "extreme:2", "random"])
def test_every_split_sums_to_the_total(split):
    quality, cost = np.array([0.5, 0.7, 0.9]), np.array([1e-4, 1e-3, 5e-3])
    budgets = split_budget(split, 10.0, quality, cost, np.random.default_rng(0))
    assert budgets.sum() == pytest.approx(10.0)
    assert np.all(budgets > 0)


def test_split_weights_follow_the_protocol():
    quality, cost = np.array([0.5, 0.8, 0.9]), np.array([1e-4, 1e-3, 4e-3])
    np.testing.assert_allclose(split_weights("weighted", quality, cost, None), np.sqrt(quality / cost))
    np.testing.assert_allclose(split_weights("perf", quality, cost, None), quality)
    extreme = split_weights("extreme:1", quality, cost, None)
    assert extreme.tolist() == [12.5 / 2, 12.5 / 2, 50.0]  # the lowest-weighted model is the dearest one
    assert np.all((split_weights("random", quality, cost, np.random.default_rng(1)) >= 5))


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="unknown budget split 'even'"):
        split_weights("even", np.ones(2), np.ones(2), None)
