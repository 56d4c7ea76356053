"""The learned routing rule: score alpha*d^ - gamma*g^ per model, then pick.

Vectorized over a batch of queries. ``paper_choices`` is the reference rule (argmax,
no budgets, no declining); ``budget_aware_choices`` picks the best-scoring model whose
remaining budget still covers the estimated cost, and declines when no model scores
above zero (with the skip option) or none can pay.
"""

from __future__ import annotations

import numpy as np

SKIP = -1


def scores(quality: np.ndarray, cost: np.ndarray, gamma: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * d^_ij - gamma_i * g^_ij for a batch, (B, M)."""
    return alpha * quality - gamma[None, :] * cost


def paper_choices(score: np.ndarray) -> np.ndarray:
    """argmax of the score per query (the reference rule)."""
    return score.argmax(axis=1)


def budget_aware_choices(score: np.ndarray, cost: np.ndarray, remaining: np.ndarray,
                         skip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Best affordable model per query, spending the estimated cost within the batch.

    Returns the choices (``SKIP`` where declined) and the chosen scores (NaN where declined).
    Fast path: when every first choice is affordable together, no per-query loop runs.
    """
    first = score.argmax(axis=1)
    rows = np.arange(len(score))
    best = score[rows, first]
    accepted = best > 0 if skip else np.ones(len(score), dtype=bool)
    spend = np.bincount(first[accepted], weights=cost[rows, first][accepted], minlength=len(remaining))
    if np.all(spend <= remaining):
        choices = np.where(accepted, first, SKIP)
        return choices, np.where(accepted, best, np.nan)
    return _sequential_choices(score, cost, remaining.astype(np.float64, copy=True), skip)


def _sequential_choices(score: np.ndarray, cost: np.ndarray, remaining: np.ndarray,
                        skip: bool) -> tuple[np.ndarray, np.ndarray]:
    choices = np.full(len(score), SKIP, dtype=np.int64)
    chosen = np.full(len(score), np.nan)
    for j in range(len(score)):
        masked = np.where(cost[j] <= remaining, score[j], -np.inf)
        i = int(masked.argmax())
        value = masked[i]
        if value == -np.inf or (skip and value <= 0):
            continue
        choices[j], chosen[j] = i, value
        remaining[i] -= cost[j, i]
    return choices, chosen
