"""Embedding backends behind ``router_core.embedding.Embedder``, chosen by ``EmbeddingParams.backend``."""

from __future__ import annotations

from router_core.embedding import Embedder
from router_core.params import EmbeddingParams


def create_embedder(params: EmbeddingParams) -> Embedder:
    """The embedder of the configured backend (each imports its heavy libraries only when chosen)."""
    if params.backend == "static":
        from router_core.embedders.static import StaticEmbedder

        return StaticEmbedder(params)
    from router_core.embedders.minilm import MiniLMEmbedder

    return MiniLMEmbedder(params)
