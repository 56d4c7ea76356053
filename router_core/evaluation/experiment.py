"""The offline experiment: split the data, estimate the test stream, replay every method.

Protocol (docs/EVALUATION.md): for each seed, a test stream of ``n_test`` queries is drawn
with ``random.Random(seed)`` (the draw order is the arrival order), the rest is the history.
The history alone is embedded, indexed and used for budget weights; the total budget is
``factor`` x the cheapest model's total true cost over the test stream. Each estimator
asked for is tuned on the seed's history and replays the same grid, so estimators are
compared on the same splits; every row carries its estimator's scores on the test stream.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from router_core.assembly import assemble
from router_core.embedding import Embedder
from router_core.estimator import Estimates, QueryFeatures
from router_core.estimators.metrics import brier, log_loss, mape
from router_core.evaluation.drift import drift_rows
from router_core.evaluation.replay import Accounting, replay
from router_core.evaluation.splits import split_budget
from router_core.history import History
from router_core.neighbours import exact_neighbours
from router_core.params import BudgetParams, IndexParams, PortParams
from router_core.policies import Stream, create_policy
from router_core.policies.offline import Opt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchSettings:
    """One bench invocation's grid and parameters."""

    n_test: int = 1000
    seeds: tuple[int, ...] = (42, 43)
    budget_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    splits: tuple[str, ...] = ("weighted", "uniform")
    methods: tuple[str, ...] = ("port", "port-paper", "random", "greedy-perf", "greedy-cost", "knn-perf",
                                "knn-cost", "batchsplit", "opt-estimated", "opt")
    accounting: Accounting = "oracle"
    reserve_factor: float = BudgetParams().reserve_factor
    estimators: tuple[str, ...] = (PortParams().estimator,)
    drift: bool = False  # the drift split instead of the random one
    periods: int = 1  # budget periods the stream is cut into, each with 1/periods of the budgets (replay)


@dataclass(frozen=True)
class PreparedSeed:
    """A seed's split with every estimate of one estimator the methods need (budgets are added per setting)."""

    seed: int
    estimator: str
    estimates: Estimates
    exact_estimates: Estimates
    history_estimates: Estimates
    true_quality: np.ndarray
    true_cost: np.ndarray
    mean_quality: np.ndarray
    mean_cost: np.ndarray
    cost_scale: float
    test: History  # the held-out queries, in arrival order
    test_vectors: np.ndarray  # their embeddings, as a router computes them (``Assembly.held_out_vectors``)

    def stream(self, budgets: np.ndarray) -> Stream:
        return Stream(self.estimates, self.exact_estimates, self.history_estimates, self.true_quality,
                      self.true_cost, budgets, self.cost_scale)

    def budgets(self, split: str, factor: float) -> np.ndarray:
        """Per-model budgets of a setting: ``factor`` x the cheapest model's total true cost over the
        test stream, split across models as ``split`` says."""
        cheapest_total = float(self.true_cost.sum(axis=0).min())
        return split_budget(split, factor * cheapest_total, self.mean_quality, self.mean_cost,
                            np.random.default_rng(self.seed))


def split_rows(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test rows (in arrival order) and history rows for ``seed``."""
    if not 0 < n_test < n:
        raise ValueError(f"n_test={n_test} must be between 1 and {n - 1} (the data has {n} queries)")
    test = np.array(random.Random(seed).sample(range(n), n_test), dtype=np.int64)
    history = np.setdiff1d(np.arange(n), test)
    return test, history


def test_split(data: History, n_test: int, seed: int, drift: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Test rows (in arrival order) and history rows: the random split, or the drift split
    (``router_core.evaluation.drift``) whose task mix changes mid-stream."""
    if drift:
        return drift_rows(data.tasks, n_test, seed)
    return split_rows(len(data), n_test, seed)


def prepare_seed(data: History, embedder: Embedder, index_params: IndexParams, n_test: int, k: int, seed: int,
                 estimators: tuple[str, ...], drift: bool = False) -> Iterator[PreparedSeed]:
    """Split, embed and index the history once, then per estimator tune it and estimate the test stream."""
    test_rows, history_rows = test_split(data, n_test, seed, drift)
    assembly = assemble(data, (history_rows, test_rows), embedder, index_params)
    history, test, index = assembly.history, assembly.held_out, assembly.index
    assert test is not None  # split above
    test_vectors = assembly.held_out_vectors()
    features = QueryFeatures.of(test.prompts, test.tasks)
    for name in estimators:
        estimator = assembly.estimator(name, k)
        log.info("seed %d: %s tuned: %s", seed, name, estimator.settings)
        exact = exact_neighbours(test_vectors, index.vectors(), estimator.neighbours_needed)
        yield PreparedSeed(
            seed=seed,
            estimator=name,
            estimates=estimator.estimate(index, test_vectors, features),
            exact_estimates=estimator.estimate_from(exact, features),
            history_estimates=estimator.estimate_history(index),
            true_quality=test.quality,
            true_cost=test.cost,
            mean_quality=history.quality.mean(axis=0),
            mean_cost=history.cost.mean(axis=0),
            cost_scale=float(history.cost.mean()),
            test=test,
            test_vectors=test_vectors,
        )


def estimate_scores(prepared: PreparedSeed) -> dict[str, float]:
    """Brier score and log-loss of the quality estimates, MAPE (%) of the cost estimates, on the test stream."""
    est = prepared.estimates
    return {"brier": brier(est.quality, prepared.true_quality), "log_loss": log_loss(est.quality, prepared.true_quality),
            "cost_mape": mape(est.cost, prepared.true_cost)}


def run_seed(prepared: PreparedSeed, settings: BenchSettings, params: PortParams) -> Iterator[dict]:
    """Replay every (split, factor, method) of the grid on one prepared seed; yield result rows."""
    policy_params = params.model_copy(update={"n_expected": settings.n_test})
    scores = estimate_scores(prepared)
    for split in settings.splits:
        for factor in settings.budget_factors:
            budgets = prepared.budgets(split, factor)
            stream = prepared.stream(budgets)
            for method in settings.methods:
                policy = create_policy(method, policy_params)
                result = replay(policy, stream, np.random.default_rng(prepared.seed), settings.accounting,
                                reserve_factor=settings.reserve_factor, periods=settings.periods)
                for spent in result.period_spent:
                    if np.any(spent > budgets / settings.periods * (1 + 1e-9)):
                        raise AssertionError(f"{method} overspent a period's budget: {spent} > {budgets / settings.periods}")
                row = {
                    "method": method, "split": split, "budget_factor": factor, "seed": prepared.seed,
                    "n_test": settings.n_test, "budget_total": float(budgets.sum()), "periods": settings.periods,
                    "performance": result.performance, "cost": result.cost, "ppc": result.ppc,
                    "throughput": result.throughput, "accounting": settings.accounting,
                    "reserve_factor": settings.reserve_factor if settings.accounting == "reserve" else None,
                    "estimator": prepared.estimator, **scores,
                }
                if isinstance(policy, Opt):
                    row["lp_bound"] = policy.lp_bound
                yield row
