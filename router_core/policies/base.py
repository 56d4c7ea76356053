"""The policy interface and its registry.

A policy sees a stream of queries one at a time and answers with a model index or
``SKIP``. Online policies may look only at the current query's estimates and at what
they have already seen; offline reference policies (``opt``, ``opt-estimated``) may plan
over the whole stream in ``start``. The evaluator does all budget accounting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from router_core.estimator import Estimates
from router_core.params import PortParams
from router_core.rule import SKIP


@dataclass(frozen=True)
class Stream:
    """Everything a policy may use about one evaluation stream.

    ``estimates`` are ANN (HNSW) neighbour means; ``exact_estimates`` exact-kNN ones;
    ``history_estimates`` leave-one-out estimates of the history rows; ``true_*`` are the
    real outcomes, which only the offline optimum may read.
    """

    estimates: Estimates
    exact_estimates: Estimates
    history_estimates: Estimates
    true_quality: np.ndarray
    true_cost: np.ndarray
    budgets: np.ndarray
    cost_scale: float

    @property
    def size(self) -> int:
        return len(self.estimates)

    @property
    def n_models(self) -> int:
        return len(self.budgets)


class Policy(ABC):
    """A routing policy: ``start`` once per stream, then ``choose`` for each query in order."""

    name: ClassVar[str]

    def start(self, stream: Stream, rng: np.random.Generator) -> None:
        """Prepare for a new stream (default: remember it and the random generator)."""
        self.stream = stream
        self.rng = rng

    def restart_period(self, budgets: np.ndarray, n_expected: int) -> None:
        """A new budget period with ``budgets`` and ``n_expected`` queries begins (default: nothing to restart)."""

    @abstractmethod
    def choose(self, j: int, remaining: np.ndarray) -> int:
        """The model for query ``j`` (or ``SKIP``), given each model's remaining budget."""


PolicyFactory = Callable[[PortParams], Policy]
REGISTRY: dict[str, PolicyFactory] = {}


def register(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Class decorator: make a policy available by ``name``."""

    def add(factory: PolicyFactory) -> PolicyFactory:
        if name in REGISTRY:
            raise ValueError(f"policy {name!r} registered twice")
        REGISTRY[name] = factory
        return factory

    return add


def create_policy(name: str, params: PortParams) -> Policy:
    """Instantiate the policy registered as ``name``."""
    from router_core import policies  # noqa: F401  (importing the package registers every policy)

    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return factory(params)
