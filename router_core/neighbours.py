"""Nearest history neighbours of queries: by the HNSW index, leaving a row out, or exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router_core.index import AnnIndex


@dataclass(frozen=True)
class Neighbours:
    """History rows ``labels`` and cosine similarities of B queries' neighbours, each (B, k), nearest first."""

    labels: np.ndarray
    similarity: np.ndarray

    def first(self, k: int) -> "Neighbours":
        """The ``k`` nearest of them."""
        return Neighbours(self.labels[:, :k], self.similarity[:, :k])


def search_neighbours(index: AnnIndex, vectors: np.ndarray, k: int) -> Neighbours:
    """The ``k`` nearest history rows of each vector, from the HNSW index."""
    _check_k(k, index.manifest.count)
    labels, distances = index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
    return Neighbours(labels, 1.0 - distances.astype(np.float64))


def history_neighbours(index: AnnIndex, k: int) -> Neighbours:
    """The ``k`` nearest OTHER history rows of every history row (leave-one-out neighbours)."""
    n = index.manifest.count
    _check_k(k + 1, n)
    found = search_neighbours(index, index.vectors(), k + 1)
    own = found.labels == np.arange(n)[:, None]
    # Drop the row itself where it was found, else the farthest neighbour.
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(found.labels, dtype=bool)
    keep[np.arange(n), drop] = False
    return Neighbours(found.labels[keep].reshape(n, k), found.similarity[keep].reshape(n, k))


def exact_neighbours(queries: np.ndarray, base: np.ndarray, k: int) -> Neighbours:
    """The exact cosine ``k`` nearest rows of ``base`` (unit vectors), nearest first."""
    _check_k(k, len(base))
    sims = queries.astype(np.float64) @ base.T.astype(np.float64)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    return Neighbours(np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1))


def _check_k(k: int, n: int) -> None:
    if k > n:
        raise ValueError(f"{k} neighbours asked for, but the history has only {n} rows")
