"""What the router needs of its collaborators, as small Protocols.

:class:`Router` (streams/service/router.py) is typed against these rather than against
router_core.engine.RoutingEngine and schemas.RoutingWeights, so that the unit tests' small fakes
type-check without ``type: ignore``; the service passes the real ones.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from router_core.estimator import Estimates


class Controller(Protocol):
    """The part of router_core.controller.PortController a router calls for its choices."""

    def follow(self, gamma: np.ndarray | None) -> None:
        """Route with these weights from now on (None: none learned yet, the observation phase)."""
        ...

    def choices(self, est: Estimates, remaining: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Choices (-1: skipped or declined) and their scores for a batch of estimates."""
        ...


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

    def controller(self, budgets: np.ndarray, seed: int = 0) -> Controller:
        """PORT's controller for one router's choices (router_core.controller.PortController)."""
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

    @property
    def shares(self) -> Sequence[Sequence[float]] | None:
        """Per input partition, the budget share per model (None: B/P each)."""
        ...

    @property
    def partition_spent(self) -> Sequence[Sequence[float]] | None:
        """Per input partition, the dollars it had used per model when the weights were published (None: unknown)."""
        ...

    @property
    def period(self) -> int:
        """The budget period the weights (and their shares) were solved in."""
        ...
