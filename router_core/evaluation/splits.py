"""How a total budget is split across models (the evaluation protocol's splits).

Weights come from the history's mean quality and mean cost per model, never from the
test stream. Names: ``weighted``, ``cost``, ``perf``, ``uniform``, ``extreme[:k]``
(k = 1..5, default 1) and ``random``.
"""

from __future__ import annotations

import numpy as np

from router_core.errors import ConfigurationError

SPLITS = ("weighted", "cost", "perf", "uniform", "extreme", "random")


def split_weights(name: str, mean_quality: np.ndarray, mean_cost: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Unnormalized budget weights per model for the split ``name``."""
    base, _, arg = name.partition(":")
    m = len(mean_quality)
    if base == "weighted":
        return np.sqrt(mean_quality / mean_cost)
    if base == "cost":
        return np.sqrt(1.0 / mean_cost)
    if base == "perf":
        return mean_quality.astype(np.float64)
    if base == "uniform":
        return np.ones(m)
    if base == "random":
        return rng.uniform(5.0, 30.0, size=m)
    if base == "extreme":
        k = int(arg) if arg else 1
        if not 1 <= k < m:
            raise ConfigurationError(f"split {name!r}: k must be between 1 and {m - 1}")
        lowest = np.argsort(np.sqrt(mean_quality / mean_cost))[:k]
        weights = np.full(m, 12.5 * k / (m - k))
        weights[lowest] = 50.0
        return weights
    raise ConfigurationError(f"unknown budget split {name!r}; known: {', '.join(SPLITS)} (extreme takes ':k')")


def split_budget(name: str, total: float, mean_quality: np.ndarray, mean_cost: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Per-model budgets summing to ``total``."""
    weights = split_weights(name, mean_quality, mean_cost, rng)
    return total * weights / weights.sum()
