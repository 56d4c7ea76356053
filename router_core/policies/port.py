"""PORT as a policy: the paper-faithful variant and the product's improved default.

Both run ``router_core.controller.PortController``, the control loop the stream service runs.
"""

from __future__ import annotations

import numpy as np

from router_core.controller import PortController
from router_core.params import PortParams
from router_core.policies.base import Policy, Stream, register

PAPER_SETTINGS = dict(dual_solver="lbfgsb", skip_option=False, budget_aware=False, normalize_costs=False,
                      resolve_every=0, observation="random")


class PortPolicy(Policy):
    """Observation phase, one dual solve, then the learned rule (optionally re-solved)."""

    def __init__(self, params: PortParams) -> None:
        self.params = params

    def start(self, stream: Stream, rng: np.random.Generator) -> None:
        super().start(stream, rng)
        self.controller = PortController(self.params, stream.cost_scale, stream.budgets, stream.size,
                                         history=stream.history_estimates)

    def restart_period(self, budgets: np.ndarray, n_expected: int) -> None:
        """The controller's boundary, as the service's optimizer runs it."""
        self.controller.restart_period(budgets, n_expected)

    def choose(self, j: int, remaining: np.ndarray) -> int:
        if self.controller.due():
            self.controller.solve(remaining)
        est = self.stream.estimates.rows(j, j + 1)
        choice = int(self.controller.choices(est, remaining, self.rng)[0][0])
        self.controller.record(est.quality[0], est.cost[0])
        return choice


@register("port")
def product_port(params: PortParams) -> Policy:
    """The product's PORT: the switches as configured (defaults: the best measured combination)."""
    return PortPolicy(params)


@register("port-paper")
def paper_port(params: PortParams) -> Policy:
    """PORT as the reference code runs it: random phase, L-BFGS-B, plain argmax, dollar costs."""
    return PortPolicy(params.model_copy(update=PAPER_SETTINGS))
