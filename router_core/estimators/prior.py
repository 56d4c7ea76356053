"""Prior means the kernel estimator shrinks toward: the history's global mean, or its task's mean."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from router_core.estimator import QueryFeatures


@dataclass(frozen=True)
class Prior:
    """Per-model means of a history table, overall and per task label.

    A query's prior is its task's mean when ``by_task`` is on and the label is one the
    history has, else the global mean. For the history's own rows (``features.rows``) the
    row itself is left out of both means, so leave-one-out tuning sees no leak.
    """

    values: np.ndarray  # (n, M)
    total: np.ndarray  # (M,)
    task_ids: dict[str, int]
    task_sums: np.ndarray  # (T, M)
    task_counts: np.ndarray  # (T,)
    row_tasks: np.ndarray  # (n,) task id of each history row, -1 unlabelled

    @classmethod
    def fit(cls, values: np.ndarray, tasks: Sequence[str], by_task: bool) -> "Prior":
        """The prior of ``values`` (n, M) whose rows carry ``tasks`` ("" = unlabelled)."""
        names = sorted({t for t in tasks if t}) if by_task else []
        task_ids = {name: i for i, name in enumerate(names)}
        row_tasks = np.array([task_ids.get(t, -1) for t in tasks], dtype=np.int64)
        sums = np.zeros((len(names), values.shape[1]))
        labelled = row_tasks >= 0
        np.add.at(sums, row_tasks[labelled], values[labelled])
        counts = np.bincount(row_tasks[labelled], minlength=len(names)).astype(np.float64)
        return cls(values, values.sum(axis=0), task_ids, sums, counts, row_tasks)

    def means(self, features: QueryFeatures, size: int) -> np.ndarray:
        """The (size, M) prior means of ``size`` queries with ``features``."""
        n, m = self.values.shape
        sums = np.broadcast_to(self.total, (size, m)).copy()
        counts = np.full(size, float(n))
        groups = self.groups(features, size)
        labelled = np.flatnonzero(groups >= 0)
        sums[labelled] = self.task_sums[groups[labelled]]
        counts[labelled] = self.task_counts[groups[labelled]]
        if features.rows is not None:
            sums -= self.values[features.rows]
            counts -= 1
            alone = np.flatnonzero(counts < 1)  # the only row of its task: global mean without it
            sums[alone] = self.total - self.values[features.rows[alone]]
            counts[alone] = n - 1
        return sums / np.maximum(counts, 1)[:, None]

    def groups(self, features: QueryFeatures, size: int) -> np.ndarray:
        """Task id of each query (-1: unlabelled, unknown label, or no task prior)."""
        if features.rows is not None:
            return self.row_tasks[features.rows]
        if features.tasks is None or not self.task_ids:
            return np.full(size, -1, dtype=np.int64)
        return np.array([self.task_ids.get(t or "", -1) for t in features.tasks], dtype=np.int64)
