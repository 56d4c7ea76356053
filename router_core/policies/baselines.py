"""Online baselines from the paper: random, greedy by performance or by budget left, and kNN twins."""

from __future__ import annotations

import numpy as np

from router_core.estimator import Estimates
from router_core.params import PortParams
from router_core.policies.base import Policy, Stream, register
from router_core.rule import SKIP


@register("random")
class RandomPolicy(Policy):
    """A model uniformly at random."""

    def __init__(self, params: PortParams) -> None:
        del params

    def choose(self, j: int, remaining: np.ndarray) -> int:
        return int(self.rng.integers(0, self.stream.n_models))


class _EstimatePolicy(Policy):
    """A baseline that reads either the ANN estimates or the exact-kNN ones."""

    exact: bool = False

    def __init__(self, params: PortParams) -> None:
        del params

    def estimates(self) -> Estimates:
        return self.stream.exact_estimates if self.exact else self.stream.estimates


class _GreedyPerf(_EstimatePolicy):
    """The model with the best estimated quality whose remaining budget covers its estimated cost."""

    def choose(self, j: int, remaining: np.ndarray) -> int:
        est = self.estimates()
        quality = np.where(est.cost[j] <= remaining, est.quality[j], -np.inf)
        best = int(quality.argmax())
        return best if np.isfinite(quality[best]) else SKIP


class _GreedyCost(_EstimatePolicy):
    """The model with the most estimated budget left (budget minus the estimated costs sent to it)."""

    def start(self, stream: Stream, rng: np.random.Generator) -> None:
        super().start(stream, rng)
        self.left = stream.budgets.astype(np.float64).copy()

    def choose(self, j: int, remaining: np.ndarray) -> int:
        best = int(self.left.argmax())
        self.left[best] -= self.estimates().cost[j, best]
        return best


@register("greedy-perf")
class GreedyPerf(_GreedyPerf):
    """Greedy-Perf on the HNSW estimates."""


@register("knn-perf")
class KnnPerf(_GreedyPerf):
    """Greedy-Perf on exact k-nearest-neighbour estimates."""

    exact = True


@register("greedy-cost")
class GreedyCost(_GreedyCost):
    """Greedy-Cost on the HNSW estimates."""


@register("knn-cost")
class KnnCost(_GreedyCost):
    """Greedy-Cost on exact k-nearest-neighbour estimates."""

    exact = True
