"""A similarity-kernel estimate shrunk toward a prior, its parameters chosen by leave-one-out.

Quality of model i for a query with neighbours n (nearest first, cosine similarity s_n):

    d^_i = (sum_{n <= k} w_n q_ni + strength * prior_i) / (sum_{n <= k} w_n + strength),
    w_n  = exp((s_n - 1) / temperature)

so a neighbour identical to the query weighs 1 and ``strength`` counts as that many
identical neighbours holding the prior. ``strength`` = 0 is the kernel mean, a large
``strength`` the prior; a large ``temperature`` weighs the k neighbours alike. Cost is the
mean of the ``cost_k`` nearest, scaled by the prompt's length relative to theirs
(:func:`length_adjusted_cost`). ``k``, ``temperature`` and ``strength`` minimize the Brier
score, ``cost_k`` and ``length_power`` (where ``GRID`` offers a choice) the mean |log| cost
error, of the leave-one-out estimates of the history's own rows.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from router_core.estimator import Estimates, Estimator, QueryFeatures, ReferenceTable
from router_core.estimators.cost import length_adjusted_cost
from router_core.estimators.metrics import brier, log_cost_error
from router_core.estimators.prior import Prior
from router_core.index import AnnIndex
from router_core.neighbours import Neighbours, history_neighbours

GRID: dict[str, tuple[float, ...]] = {
    "k": (10, 20, 50, 100),
    "temperature": (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
    "strength": (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0),
    # Cost: the k = 20 mean scaled in proportion to the prompt's length. Leave-one-out over
    # cost_k in (5, 10, 20, 50) and length_power in (0, 0.25, ..., 1) picked k = 5-10 and
    # powers 0.5-0.75, with a lower cost MAPE but lower routing performance (docs/EVALUATION.md).
    "cost_k": (20,),
    "length_power": (1.0,),
}


def kernel_sums(neighbours: Neighbours, values: np.ndarray, k: int,
                temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-weighted sums of ``values`` (n, M) over the ``k`` nearest, (B, M), and the weights' sums (B,)."""
    weights = np.exp((neighbours.similarity[:, :k] - 1.0) / temperature)
    return np.einsum("bk,bkm->bm", weights, values[neighbours.labels[:, :k]]), weights.sum(axis=1)


def shrink(weighted: np.ndarray, weight: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """(weighted + strength * prior) / (weight + strength): the kernel mean pulled toward ``prior``."""
    return (weighted + strength * prior) / (weight + strength)[:, None]


class KernelShrink(Estimator):
    """Kernel mean over the nearest neighbours, shrunk toward the history's global mean."""

    name = "kernel-shrink"
    by_task = False

    @staticmethod
    def configuration(k: int) -> dict[str, Any]:
        del k  # the number of neighbours is tuned, from GRID
        return {"grid": {name: list(values) for name, values in GRID.items()}}

    @classmethod
    def tune(cls, table: ReferenceTable, index: AnnIndex, k: int) -> dict[str, Any]:
        del k
        deepest = min(max(GRID["k"] + GRID["cost_k"]), len(table) - 1)
        neighbours = history_neighbours(index, deepest)
        features = QueryFeatures.of_history(table)
        prior = Prior.fit(table.quality, table.tasks, cls.by_task).means(features, len(table))
        return {**tune_quality(neighbours, table.quality, prior), **tune_cost(neighbours, table, features)}

    def __init__(self, table: ReferenceTable, settings: dict[str, Any]) -> None:
        super().__init__(table, settings)
        self.prior = Prior.fit(table.quality, table.tasks, self.by_task)

    @property
    def neighbours_needed(self) -> int:
        return int(max(self.settings["k"], self.settings["cost_k"]))

    def estimate_from(self, neighbours: Neighbours, features: QueryFeatures) -> Estimates:
        s = self.settings
        weighted, weight = kernel_sums(neighbours, self.table.quality, int(s["k"]), float(s["temperature"]))
        prior = self.prior.means(features, len(weight))
        cost = length_adjusted_cost(neighbours, self.table.cost, self.table.lengths, features.lengths,
                                    int(s["cost_k"]), float(s["length_power"]))
        return Estimates(shrink(weighted, weight, prior, float(s["strength"])), cost)


class TaskKernelShrink(KernelShrink):
    """``kernel-shrink`` with a per-task prior for queries whose task label the history knows."""

    name = "kernel-shrink-task"
    by_task = True


def tune_quality(neighbours: Neighbours, quality: np.ndarray, prior: np.ndarray) -> dict[str, Any]:
    """k, temperature and strength of the lowest leave-one-out Brier score, and that score."""
    best: dict[str, Any] = {"loo_brier": np.inf}
    for k, temperature in itertools.product(_capped("k", neighbours), GRID["temperature"]):
        weighted, weight = kernel_sums(neighbours, quality, int(k), temperature)
        for strength in GRID["strength"]:
            score = brier(shrink(weighted, weight, prior, strength), quality)
            if score < best["loo_brier"]:
                best = {"k": int(k), "temperature": temperature, "strength": strength, "loo_brier": score}
    return best


def tune_cost(neighbours: Neighbours, table: ReferenceTable, features: QueryFeatures) -> dict[str, Any]:
    """cost_k and length_power of the lowest leave-one-out mean |log| cost error, and that error."""
    best: dict[str, Any] = {"loo_cost_error": np.inf}
    for cost_k, power in itertools.product(_capped("cost_k", neighbours), GRID["length_power"]):
        estimated = length_adjusted_cost(neighbours, table.cost, table.lengths, features.lengths, int(cost_k), power)
        error = log_cost_error(estimated, table.cost)
        if error < best["loo_cost_error"]:
            best = {"cost_k": int(cost_k), "length_power": power, "loo_cost_error": error}
    return best


def _capped(name: str, neighbours: Neighbours) -> list[int]:
    """The grid's neighbour counts, capped at the neighbours there are (a small history)."""
    return sorted({min(int(k), neighbours.labels.shape[1]) for k in GRID[name]})
