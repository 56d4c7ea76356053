"""Cost estimates from neighbours, scaled by the prompt's length relative to theirs."""

from __future__ import annotations

import numpy as np

from router_core.neighbours import Neighbours


def length_adjusted_cost(neighbours: Neighbours, cost: np.ndarray, lengths: np.ndarray,
                         query_lengths: np.ndarray | None, k: int, power: float) -> np.ndarray:
    """Mean cost of the ``k`` nearest neighbours x (query length / their mean length) ** ``power``.

    ``cost`` (n, M) and ``lengths`` (n,) are the history's; a query of unknown length
    (None or NaN) keeps the plain mean. Costs grow with the prompt's tokens, so a prompt
    twice as long as its neighbours' is expected to cost more (``power`` = 1: in proportion).
    """
    labels = neighbours.labels[:, :k]
    mean_cost = cost[labels].mean(axis=1)
    if query_lengths is None or power == 0:
        return mean_cost
    ratio = query_lengths / lengths[labels].mean(axis=1)
    ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)
    return mean_cost * ratio[:, None] ** power
