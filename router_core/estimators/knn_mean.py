"""The paper's estimate: the plain mean quality and cost of the k nearest history queries."""

from __future__ import annotations

from typing import Any

from router_core.estimator import Estimates, Estimator, QueryFeatures, ReferenceTable, neighbour_means
from router_core.index import AnnIndex
from router_core.neighbours import Neighbours


class KnnMean(Estimator):
    """Mean of the ``k`` nearest neighbours (``PortParams.k``); nothing to tune."""

    name = "knn-mean"

    @staticmethod
    def configuration(k: int) -> dict[str, Any]:
        return {"k": k}

    @classmethod
    def tune(cls, table: ReferenceTable, index: AnnIndex, k: int) -> dict[str, Any]:
        if k > len(table):
            raise ValueError(f"k={k} neighbours asked for, but the history has only {len(table)} rows")
        return {"k": k}

    @property
    def neighbours_needed(self) -> int:
        return int(self.settings["k"])

    def estimate_from(self, neighbours: Neighbours, features: QueryFeatures) -> Estimates:
        del features  # the plain mean uses neither lengths nor tasks
        return neighbour_means(neighbours.labels[:, : self.neighbours_needed], self.table.quality, self.table.cost)
