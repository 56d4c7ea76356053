"""The registry of estimators: name -> class implementing :class:`router_core.estimator.Estimator`."""

from __future__ import annotations

from typing import Any

from router_core.estimator import Estimator, ReferenceTable
from router_core.estimators.kernel import KernelShrink, TaskKernelShrink
from router_core.estimators.knn_mean import KnnMean

ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (KnnMean, KernelShrink, TaskKernelShrink)}


def estimator_class(name: str) -> type[Estimator]:
    """The estimator registered as ``name``."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}") from None


def create_estimator(name: str, table: ReferenceTable, settings: dict[str, Any]) -> Estimator:
    """The estimator ``name`` over ``table`` with ``settings`` (as tuned, or read from a manifest)."""
    return estimator_class(name)(table, settings)


__all__ = ["ESTIMATORS", "Estimator", "create_estimator", "estimator_class"]
