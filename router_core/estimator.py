"""Per-model quality and cost estimates of a query from its nearest history neighbours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router_core.index import AnnIndex


@dataclass(frozen=True)
class Estimates:
    """Estimated quality d^ and cost g^ (dollars) of B queries on M models, each (B, M)."""

    quality: np.ndarray
    cost: np.ndarray

    def __len__(self) -> int:
        return len(self.quality)

    def rows(self, start: int, stop: int) -> "Estimates":
        """The estimates of queries ``start`` to ``stop - 1``."""
        return Estimates(self.quality[start:stop], self.cost[start:stop])


def neighbour_means(labels: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> Estimates:
    """Mean quality and cost of each query's neighbours; ``labels`` is (B, k) history rows."""
    return Estimates(quality[labels].mean(axis=1), cost[labels].mean(axis=1))


class Estimator:
    """Top-k neighbour means over an index of the history (the paper's training-free estimate)."""

    def __init__(self, index: AnnIndex, quality: np.ndarray, cost: np.ndarray, k: int) -> None:
        if len(quality) < k:
            raise ValueError(f"k={k} neighbours asked for, but the history has only {len(quality)} rows")
        self.index = index
        self.quality = np.ascontiguousarray(quality, dtype=np.float64)
        self.cost = np.ascontiguousarray(cost, dtype=np.float64)
        self.k = k

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        """d^ and g^ for a batch of query embeddings (B, dimension)."""
        labels, _ = self.index.search(embeddings, self.k)
        return neighbour_means(labels, self.quality, self.cost)

    def estimate_history(self) -> Estimates:
        """Leave-one-out estimates of the history's own rows (each row's neighbours exclude itself)."""
        n = len(self.quality)
        vectors = self.index.vectors()
        labels, _ = self.index.search(vectors, self.k + 1)
        own = labels == np.arange(n)[:, None]
        # Drop the row itself where it was found, else the farthest neighbour.
        drop = np.where(own.any(axis=1), own.argmax(axis=1), self.k)
        keep = np.ones_like(labels, dtype=bool)
        keep[np.arange(n), drop] = False
        return neighbour_means(labels[keep].reshape(n, self.k), self.quality, self.cost)
