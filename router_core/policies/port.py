"""PORT as a policy: the paper-faithful variant and the product's improved default."""

from __future__ import annotations

import numpy as np

from router_core.params import PortParams
from router_core.policies.base import Policy, Stream, register
from router_core.port import PortDecider

PAPER_SETTINGS = dict(dual_solver="lbfgsb", skip_option=False, budget_aware=False, normalize_costs=False,
                      resolve_every=0, observation="random")


class PortPolicy(Policy):
    """Observation phase, one dual solve, then the learned rule (optionally re-solved)."""

    def __init__(self, params: PortParams) -> None:
        self.params = params

    def start(self, stream: Stream, rng: np.random.Generator) -> None:
        super().start(stream, rng)
        self.decider = PortDecider(self.params, stream.cost_scale)
        self.n_observe = self.decider.observation_count(stream.size)
        self.gamma: np.ndarray | None = None
        self.prior: np.ndarray | None = None
        if self.params.observation == "history-prior":
            history = stream.history_estimates
            self.prior = self.decider.solve(history, stream.budgets, eps=len(history) / stream.size).gamma

    def choose(self, j: int, remaining: np.ndarray) -> int:
        est = self.stream.estimates.rows(j, j + 1)
        if j < self.n_observe:
            if self.prior is None:
                return int(self.decider.random_choices(1, self.stream.n_models, self.rng)[0])
            return int(self.decider.learned_choices(est, self.prior, remaining)[0][0])
        if self.gamma is None:
            observed = self.stream.estimates.rows(0, self.n_observe)
            self.gamma = self.decider.solve(observed, self.stream.budgets).gamma
        elif self._resolve_due(j):
            seen = self.stream.estimates.rows(0, j)
            self.gamma = self.decider.solve(seen, remaining, eps=j / (self.stream.size - j)).gamma
        return int(self.decider.learned_choices(est, self.gamma, remaining)[0][0])

    def _resolve_due(self, j: int) -> bool:
        every = self.params.resolve_every
        return every > 0 and j > self.n_observe and (j - self.n_observe) % every == 0


@register("port")
def product_port(params: PortParams) -> Policy:
    """The product's PORT: the switches as configured (defaults: the best measured combination)."""
    return PortPolicy(params)


@register("port-paper")
def paper_port(params: PortParams) -> Policy:
    """PORT as the reference code runs it: random phase, L-BFGS-B, plain argmax, dollar costs."""
    return PortPolicy(params.model_copy(update=PAPER_SETTINGS))
