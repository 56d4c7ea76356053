"""PORT's control loop, shared by the offline ``port`` policy and the stream service.

One ``PortController`` holds what the algorithm keeps between decisions: the observation
phase (the first ``ceil(eps * N)`` decisions, routed at random or with a dual solved on the
history), the first solve on what was observed, and the periodic re-solve every
``resolve_every`` decisions on a bounded sample of the decisions seen (``DecisionSample``)
with the remaining budgets. Offline, one controller routes and solves. In the service the
routers use ``choices`` with the weights they follow (``follow``) and the optimizer, which
sees every decision, uses ``record``, ``due`` and ``solve``: the same schedule and the same
solve, so the two cannot differ.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from router_core.dual import DualSolution
from router_core.estimator import Estimates
from router_core.params import PortParams
from router_core.port import PortDecider


class DecisionSample:
    """The estimates a re-solve learns from: the last ``size`` decisions ('window'), a uniform
    reservoir of ``size`` ('reservoir'), or every decision ('all'). Memory is bounded except for 'all'."""

    def __init__(self, kind: str, size: int, seed: int = 0) -> None:
        self.kind = kind
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.rows: deque[tuple[np.ndarray, np.ndarray]] | list[tuple[np.ndarray, np.ndarray]]
        self.rows = deque(maxlen=size) if kind == "window" else []
        self.count = 0  # rows offered since the last clear

    def add(self, quality: np.ndarray, cost: np.ndarray) -> None:
        """Offer one decision's estimates (M,) each."""
        self.count += 1
        row = (np.asarray(quality, dtype=np.float64), np.asarray(cost, dtype=np.float64))
        if self.kind != "reservoir" or len(self.rows) < self.size:
            self.rows.append(row)
            return
        slot = int(self.rng.integers(0, self.count))  # Algorithm R: keep each row with probability size/count
        if slot < self.size:
            self.rows[slot] = row  # type: ignore[index]

    def estimates(self) -> Estimates:
        """The sample as (n, M) estimates."""
        return Estimates(np.array([q for q, _ in self.rows]), np.array([c for _, c in self.rows]))

    def clear(self) -> None:
        """Forget every row."""
        self.rows.clear()
        self.count = 0

    def __len__(self) -> int:
        return len(self.rows)


class PortController:
    """Observation phase, first solve, periodic re-solve on a bounded sample; the routing weights they yield.

    ``budgets`` are the period's budgets in dollars; ``n_expected`` the decisions expected in it;
    ``history`` the history's leave-one-out estimates (needed by the 'history-prior' observation).
    """

    def __init__(self, params: PortParams, cost_scale: float, budgets: np.ndarray, n_expected: int,
                 history: Estimates | None = None, seed: int = 0) -> None:
        self.params = params
        self.decider = PortDecider(params, cost_scale)
        self.history = history
        self.sample = DecisionSample(params.resolve_sample, params.resolve_window, seed)
        self.gamma: np.ndarray | None = None
        self.observed = False  # the observation phase is over (once per deployment, not per period)
        self.restart_period(budgets, n_expected)

    # -- periods ----------------------------------------------------------------------------
    def restart_period(self, budgets: np.ndarray, n_expected: int) -> None:
        """Start a budget period: new budgets and expected volume, an empty sample, the schedule from zero.
        The observation phase is not repeated once done: the current weights stay until the next re-solve."""
        self.budgets = np.asarray(budgets, dtype=np.float64)
        self.n_expected = n_expected
        self.n_observe = self.decider.observation_count(n_expected)
        self.seen = 0  # decisions recorded in this period
        self.start = 0 if self.observed else self.n_observe  # where the re-solve schedule counts from
        self.solved_at = self.start  # decisions seen at the last solve (or the schedule's start)
        self.sample.clear()
        self.prior = self._prior() if not self.observed else None

    def _prior(self) -> np.ndarray | None:
        if self.params.observation != "history-prior" or self.history is None or len(self.history) == 0:
            return None
        return self.decider.solve(self.history, self.budgets, eps=len(self.history) / self.n_expected).gamma

    # -- routing ----------------------------------------------------------------------------
    @property
    def observing(self) -> bool:
        """True while no weights were learned (the observation phase)."""
        return self.gamma is None

    def follow(self, gamma: np.ndarray | None) -> None:
        """Apply weights learned elsewhere (a router follows the optimizer's newest version)."""
        self.gamma = None if gamma is None else np.asarray(gamma, dtype=np.float64)
        self.observed = self.observed or gamma is not None

    def choices(self, est: Estimates, remaining: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Choices (``-1``: skip or declined) and scores (NaN in the random phase) for a batch."""
        if self.gamma is not None:
            return self.decider.learned_choices(est, self.gamma, remaining)
        if self.prior is not None:
            return self.decider.learned_choices(est, self.prior, remaining)
        return self.decider.random_choices(len(est), len(remaining), rng), np.full(len(est), np.nan)

    # -- learning ---------------------------------------------------------------------------
    def record(self, quality: np.ndarray, cost: np.ndarray) -> None:
        """Account for one decision's estimates (M,) each, in decision order."""
        self.sample.add(quality, cost)
        self.seen += 1

    def due(self) -> bool:
        """Whether a solve is due now: the first once ``ceil(eps * N)`` decisions were seen (if the
        phase was not done before), then once ``resolve_every`` decisions were seen since the last solve
        (checked after every decision offline: every ``resolve_every`` decisions; checked after a batch
        of decisions in the service: once after a batch that crosses the boundary)."""
        if self.gamma is None:
            return self.seen >= self.n_observe
        every = self.params.resolve_every
        return every > 0 and self.seen - self.solved_at >= every and len(self.sample) > 0

    def problem(self, remaining: np.ndarray) -> tuple[Estimates, np.ndarray, float | None]:
        """(sample, budgets, eps) of the solve due now: the first solve with the period's budgets at the
        observation share eps (None: the decider's), a re-solve with ``remaining`` at the sample's share of the
        decisions still expected in the period (at least one)."""
        observed = self.sample.estimates()
        if self.gamma is None:
            return observed, self.budgets, None
        horizon = max(self.n_expected - self.seen, 1)
        return observed, np.maximum(remaining, 0.0), len(observed) / horizon

    def apply(self, solution: DualSolution, seen: int) -> DualSolution:
        """Follow the weights of ``solution``, solved on what ``problem`` returned after ``seen`` decisions."""
        self.gamma = solution.gamma
        self.observed = True
        self.solved_at = seen
        return solution

    def solve(self, remaining: np.ndarray) -> DualSolution:
        """Solve the ``problem`` due now and ``apply`` its weights."""
        observed, budgets, eps = self.problem(remaining)
        return self.apply(self.decider.solve(observed, budgets, eps=eps), self.seen)
