"""Routing overhead per query, measured against the HNSW search alone in the same run.

Three paths over the same query embeddings, in batches:
- ``search``: the k-nearest-neighbour search only (the floor every method pays);
- ``port-paper``: search, neighbour means, the reference argmax rule;
- ``port``: search, neighbour means, the budget-aware rule with the skip option.
Embedding is excluded (measured on its own as queries per second). Weights are learned
once beforehand, as in serving; the periodic re-solve of the offline ``port`` policy is
timed separately (it runs off the per-query path).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from router_core.estimator import Estimator
from router_core.params import PortParams
from router_core.policies.port import PAPER_SETTINGS
from router_core.port import PortDecider


@dataclass(frozen=True)
class OverheadResult:
    """Median microseconds per query of each path, and the re-solve time."""

    batch_size: int
    n_queries: int
    per_query_us: dict[str, float]
    resolve_ms: float

    def ratio(self, path: str) -> float:
        """How many times the search alone ``path`` costs."""
        return self.per_query_us[path] / self.per_query_us["search"]


def _time_per_query(run: Callable[[np.ndarray], object], vectors: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(vectors), batch):
        run(vectors[start:start + batch])
    return (time.perf_counter() - started) / len(vectors) * 1e6


def measure_overhead(estimator: Estimator, vectors: np.ndarray, budgets: np.ndarray, params: PortParams,
                     cost_scale: float, batch: int = 256, repeats: int = 7) -> OverheadResult:
    """Time the three paths on ``vectors``; the paths alternate so drift hits all alike."""
    product = PortDecider(params, cost_scale)
    paper = PortDecider(params.model_copy(update=PAPER_SETTINGS), cost_scale)
    sample = estimator.estimate(vectors[: product.observation_count(len(vectors))])
    gamma_product = product.solve(sample, budgets).gamma
    gamma_paper = paper.solve(sample, budgets).gamma
    remaining = budgets.copy()
    paths: dict[str, Callable[[np.ndarray], object]] = {
        "search": lambda v: estimator.index.search(v, estimator.k),
        "port-paper": lambda v: paper.learned_choices(estimator.estimate(v), gamma_paper, remaining),
        "port": lambda v: product.learned_choices(estimator.estimate(v), gamma_product, remaining),
    }
    for run in paths.values():  # warm up
        run(vectors[:batch])
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            times[name].append(_time_per_query(run, vectors, batch))
    started = time.perf_counter()
    product.solve(estimator.estimate(vectors), budgets, eps=1.0)
    resolve_ms = (time.perf_counter() - started) * 1e3
    return OverheadResult(batch, len(vectors), {k: statistics.median(v) for k, v in times.items()}, resolve_ms)
