"""PORT's decisions, shared by the offline evaluator and the stream service.

All costs are divided by ``cost_scale`` when ``normalize_costs`` is on (alpha is then
unitless); budgets and remaining budgets are given in dollars and scaled here.
"""

from __future__ import annotations

import math

import numpy as np

from router_core.dual import DualSolution, solve_dual
from router_core.estimator import Estimates
from router_core.params import PortParams
from router_core.rule import SKIP, budget_aware_choices, paper_choices, scores


class PortDecider:
    """Observation-phase and learned-rule choices, and the dual solve, for one set of models."""

    def __init__(self, params: PortParams, cost_scale: float) -> None:
        self.params = params
        self.cost_scale = cost_scale if params.normalize_costs else 1.0

    def observation_count(self, n_expected: int | None = None) -> int:
        """ceil(eps * N): how many queries the observation phase takes."""
        n = self.params.n_expected if n_expected is None else n_expected
        return max(1, math.ceil(self.params.eps * n))

    def random_choices(self, size: int, n_models: int, rng: np.random.Generator) -> np.ndarray:
        """The paper's observation phase: uniform over {skip, model 1..M}."""
        return rng.integers(-1, n_models, size=size)

    def solve(self, observed: Estimates, budgets: np.ndarray, eps: float | None = None) -> DualSolution:
        """Learn gamma on observed estimates; ``budgets`` in dollars, ``eps`` the sample's share of them."""
        share = self.params.eps if eps is None else eps
        return solve_dual(observed.quality, observed.cost / self.cost_scale, budgets / self.cost_scale,
                          share, self.params.alpha, self.params.dual_solver, self.params.skip_option)

    def learned_choices(self, est: Estimates, gamma: np.ndarray,
                        remaining: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Choices (``SKIP`` where declined) and their scores under weights ``gamma``."""
        score = scores(est.quality, est.cost / self.cost_scale, gamma, self.params.alpha)
        if self.params.budget_aware:
            return budget_aware_choices(score, est.cost, remaining, self.params.skip_option)
        choices = paper_choices(score)
        chosen = score[np.arange(len(score)), choices]
        if self.params.skip_option:
            declined = chosen <= 0
            choices = np.where(declined, SKIP, choices)
            chosen = np.where(declined, np.nan, chosen)
        return choices, chosen
