"""Routing overhead per query, measured against the HNSW search alone in the same run.

Three paths over the same query embeddings, in batches:
- ``search``: the nearest-neighbour search only, as deep as the estimator reads (the floor
  every method pays; with the paper's k too when the estimator reads more);
- ``port-paper``: search, the estimator, the reference argmax rule;
- ``port``: search, the estimator, the budget-aware rule with the skip option.
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

from router_core.estimator import Estimates, Estimator, QueryFeatures
from router_core.index import AnnIndex
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


def _time_per_query(run: Callable[[slice], object], n: int, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, n, batch):
        run(slice(start, start + batch))
    return (time.perf_counter() - started) / n * 1e6


def _rows(features: QueryFeatures, rows: slice) -> QueryFeatures:
    lengths = None if features.lengths is None else features.lengths[rows]
    tasks = None if features.tasks is None else features.tasks[rows]
    return QueryFeatures(lengths, tasks)


def measure_overhead(estimator: Estimator, index: AnnIndex, vectors: np.ndarray, features: QueryFeatures,
                     budgets: np.ndarray, params: PortParams, cost_scale: float, batch: int = 256,
                     repeats: int = 7) -> OverheadResult:
    """Time the paths on ``vectors`` (with their ``features``); the paths alternate so drift hits all alike."""
    product = PortDecider(params, cost_scale)
    paper = PortDecider(params.model_copy(update=PAPER_SETTINGS), cost_scale)

    def estimate(rows: slice) -> Estimates:
        return estimator.estimate(index, vectors[rows], _rows(features, rows))

    sample = estimate(slice(0, product.observation_count(len(vectors))))
    gamma_product = product.solve(sample, budgets).gamma
    gamma_paper = paper.solve(sample, budgets).gamma
    remaining = budgets.copy()
    paths: dict[str, Callable[[slice], object]] = {
        "search": lambda rows: index.search(vectors[rows], estimator.neighbours_needed),
        "port-paper": lambda rows: paper.learned_choices(estimate(rows), gamma_paper, remaining),
        "port": lambda rows: product.learned_choices(estimate(rows), gamma_product, remaining),
    }
    if estimator.neighbours_needed != params.k:
        paths[f"search k={params.k}"] = lambda rows: index.search(vectors[rows], params.k)
    for run in paths.values():  # warm up
        run(slice(0, batch))
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            times[name].append(_time_per_query(run, len(vectors), batch))
    started = time.perf_counter()
    product.solve(estimate(slice(0, len(vectors))), budgets, eps=1.0)
    resolve_ms = (time.perf_counter() - started) * 1e3
    return OverheadResult(batch, len(vectors), {k: statistics.median(v) for k, v in times.items()}, resolve_ms)
