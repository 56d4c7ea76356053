"""What the router needs of its collaborators, as small Protocols.

:class:`Router` (streams/service/router.py) is typed against these rather than against
router_core.engine.RoutingEngine and schemas.RoutingWeights, so that the unit tests' small fakes
type-check without ``type: ignore``; the service passes the real ones.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from router_core.estimator import Estimates


class Engine(Protocol):
    """The part of router_core.engine.RoutingEngine the router calls."""

    @property
    def models(self) -> tuple[str, ...]:
        """The model names, in the order of every estimate's columns."""
        ...

    @property
    def dimension(self) -> int:
        """The embedding dimension of the index."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of query texts."""
        ...

    def estimate(self, embeddings: np.ndarray, texts: Sequence[str | None] | None = None,
                 tasks: Sequence[str | None] | None = None) -> Estimates:
        """Quality and cost estimates of a batch of embeddings."""
        ...

    def observation_choices(self, est: Estimates, remaining: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Observation-phase choices (-1: skip)."""
        ...

    def learned_choices(self, est: Estimates, gamma: np.ndarray,
                        remaining: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Learned-rule choices (-1: declined) and their scores."""
        ...


class Weights(Protocol):
    """The part of schemas.RoutingWeights the router reads."""

    @property
    def version(self) -> int:
        """The weights' version."""
        ...

    @property
    def models(self) -> Sequence[str]:
        """The models the weights are for, in the order of ``gamma``."""
        ...

    @property
    def gamma(self) -> Sequence[float]:
        """The dual prices, one per model."""
        ...
