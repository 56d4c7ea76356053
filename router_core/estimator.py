"""Per-model quality and cost estimates of a query from its nearest history neighbours.

An estimator turns a query's neighbours (found by :mod:`router_core.neighbours`) into
estimated quality d^ and cost g^ on every model. Every estimator implements the
:class:`Estimator` interface; :mod:`router_core.estimators` holds the registry of them.
Parameters an estimator learns from the history (by leave-one-out) are its ``settings``:
they are stored in the index manifest, so the service uses exactly what the benchmark tuned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from router_core.history import History
from router_core.index import AnnIndex
from router_core.neighbours import Neighbours, history_neighbours, search_neighbours


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

    def take(self, rows: Sequence[int]) -> "Estimates":
        """The estimates of the queries at ``rows``, in that order."""
        return Estimates(self.quality[rows], self.cost[rows])


@dataclass(frozen=True)
class ReferenceTable:
    """What estimators read about the history: outcomes per model, prompt lengths and task labels."""

    quality: np.ndarray  # (n, M)
    cost: np.ndarray  # (n, M), dollars
    lengths: np.ndarray  # (n,) characters of each prompt
    tasks: tuple[str, ...]  # (n,) "" where unlabelled

    @classmethod
    def from_history(cls, history: History) -> "ReferenceTable":
        """The table of ``history`` (lengths of the full prompts, templates included)."""
        return cls(np.ascontiguousarray(history.quality, dtype=np.float64),
                   np.ascontiguousarray(history.cost, dtype=np.float64),
                   prompt_lengths(history.prompts), tuple(history.tasks))

    def __len__(self) -> int:
        return len(self.quality)


@dataclass(frozen=True)
class QueryFeatures:
    """What is known of B queries besides their embeddings; every field optional.

    ``lengths``: characters of each prompt (NaN where unknown); ``tasks``: task labels
    (None or "" where unknown); ``rows``: for the history's own rows, their row numbers,
    so that priors leave the row itself out.
    """

    lengths: np.ndarray | None = None
    tasks: Sequence[str | None] | None = None
    rows: np.ndarray | None = None

    @classmethod
    def of(cls, texts: Sequence[str | None] | None = None,
           tasks: Sequence[str | None] | None = None) -> "QueryFeatures":
        """Features of queries given their texts (None where only an embedding came) and task labels."""
        return cls(None if texts is None else prompt_lengths(texts), tasks)

    @classmethod
    def of_history(cls, table: ReferenceTable) -> "QueryFeatures":
        """The history's own rows as queries (for leave-one-out estimates)."""
        return cls(table.lengths, table.tasks, np.arange(len(table)))


def prompt_lengths(texts: Sequence[str | None]) -> np.ndarray:
    """Characters of each text, NaN where there is none."""
    return np.array([np.nan if t is None else float(len(t)) for t in texts], dtype=np.float64)


def neighbour_means(labels: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> Estimates:
    """Mean quality and cost of each query's neighbours; ``labels`` is (B, k) history rows."""
    return Estimates(quality[labels].mean(axis=1), cost[labels].mean(axis=1))


class Estimator(ABC):
    """Estimates from neighbours, with settings tuned on (or given for) one history."""

    name: ClassVar[str]

    def __init__(self, table: ReferenceTable, settings: dict[str, Any]) -> None:
        self.table = table
        self.settings = dict(settings)

    @staticmethod
    @abstractmethod
    def configuration(k: int) -> dict[str, Any]:
        """The configured inputs its settings depend on (``PortParams.k`` and any search grid)."""

    @classmethod
    @abstractmethod
    def tune(cls, table: ReferenceTable, index: AnnIndex, k: int) -> dict[str, Any]:
        """The settings for ``table``, chosen by leave-one-out over ``index`` where there is a choice."""

    @property
    @abstractmethod
    def neighbours_needed(self) -> int:
        """How many nearest neighbours ``estimate_from`` reads."""

    @abstractmethod
    def estimate_from(self, neighbours: Neighbours, features: QueryFeatures) -> Estimates:
        """d^ and g^ for B queries from their neighbours (nearest first) and features."""

    def estimate(self, index: AnnIndex, vectors: np.ndarray, features: QueryFeatures = QueryFeatures()) -> Estimates:
        """d^ and g^ for query embeddings (B, dimension), searching ``index`` for the neighbours."""
        return self.estimate_from(search_neighbours(index, vectors, self.neighbours_needed), features)

    def estimate_history(self, index: AnnIndex) -> Estimates:
        """Leave-one-out estimates of the history's own rows (no row is its own neighbour)."""
        return self.estimate_from(history_neighbours(index, self.neighbours_needed),
                                  QueryFeatures.of_history(self.table))
