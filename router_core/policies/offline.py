"""Reference policies that see more than an online router may: per-batch MILP and offline LPs."""

from __future__ import annotations

import numpy as np

from router_core.assignment import solve_assignment
from router_core.params import PortParams
from router_core.policies.base import Policy, Stream, register


@register("batchsplit")
class BatchSplit(Policy):
    """Per batch of queries, the 0/1 assignment on estimates within the remaining budget (MILP)."""

    batch_size = 256
    time_limit_s = 20.0

    def __init__(self, params: PortParams) -> None:
        del params

    def choose(self, j: int, remaining: np.ndarray) -> int:
        offset = j % self.batch_size
        if offset == 0:
            est = self.stream.estimates.rows(j, j + self.batch_size)
            self.plan = solve_assignment(est.quality, est.cost, remaining, integral=True,
                                         time_limit=self.time_limit_s).choices
        return int(self.plan[offset])


class _OfflinePlan(Policy):
    """Solve the LP relaxation over the whole stream once, round down, then follow the plan."""

    use_true_values: bool = False

    def __init__(self, params: PortParams) -> None:
        del params

    def start(self, stream: Stream, rng: np.random.Generator) -> None:
        super().start(stream, rng)
        if self.use_true_values:
            quality, cost = stream.true_quality, stream.true_cost
        else:
            quality, cost = stream.estimates.quality, stream.estimates.cost
        solved = solve_assignment(quality, cost, stream.budgets, integral=False)
        self.plan = solved.choices
        self.lp_bound = solved.objective

    def choose(self, j: int, remaining: np.ndarray) -> int:
        return int(self.plan[j])


@register("opt-estimated")
class OptEstimated(_OfflinePlan):
    """The approximate offline optimum: LP on the estimates, scored on true values."""


@register("opt")
class Opt(_OfflinePlan):
    """The offline optimum: LP on the true values (``lp_bound`` is the relaxation's value)."""

    use_true_values = True
