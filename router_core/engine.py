"""The routing engine a router process runs: history, embedder, index, estimator and PORT.

``streams`` calls only this facade (and ``router_core.dual`` results through it), so the
stream service holds no algorithm of its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from router_core.controller import PortController
from router_core.embedding import Embedder
from router_core.estimator import Estimates, Estimator, QueryFeatures, ReferenceTable
from router_core.estimators import create_estimator, estimator_class
from router_core.history import History
from router_core.index import MANIFEST_FILE, AnnIndex, IndexManifest
from router_core.params import EmbeddingParams, IndexParams, PortParams
from router_core.port import PortDecider
from router_core.prompts import SharedPrefixes

log = logging.getLogger(__name__)


def expected_manifest(history: History, embedder: Embedder, index: IndexParams,
                      prefixes: SharedPrefixes) -> IndexManifest:
    """The manifest an index of ``history`` built with these settings must carry."""
    return IndexManifest(embedding_model=embedder.params.model, dimension=embedder.dimension, count=len(history),
                         data_hash=history.content_hash(), m=index.m, ef_construction=index.ef_construction,
                         shared_prefixes=prefixes.prefixes, embedder=embedder.identity)


def learn_prefixes(history: History, embedding: EmbeddingParams) -> SharedPrefixes:
    """The shared templates to strip, learned from the history (none when switched off)."""
    return SharedPrefixes.learn(history.prompts) if embedding.strip_shared_prefix else SharedPrefixes()


def index_history(history: History, embedder: Embedder, params: IndexParams, show_progress: bool = False) -> AnnIndex:
    """Embed the history (through the cache) and build its HNSW index (no estimator recorded yet)."""
    prefixes = learn_prefixes(history, embedder.params)
    vectors = embedder.embed_cached(prefixes.strip_all(history.prompts), show_progress=show_progress)
    return AnnIndex.build(vectors, params, expected_manifest(history, embedder, params, prefixes))


def fit_estimator(index: AnnIndex, history: History, name: str, k: int) -> Estimator:
    """The estimator ``name`` over ``history``, its settings tuned by leave-one-out over ``index``."""
    table = ReferenceTable.from_history(history)
    return create_estimator(name, table, estimator_class(name).tune(table, index, k))


def build_index(history: History, embedder: Embedder, params: IndexParams, port: PortParams,
                show_progress: bool = False) -> AnnIndex:
    """Build the history's index and record in its manifest the estimator ``port`` selects, as tuned."""
    index = index_history(history, embedder, params, show_progress)
    estimator = fit_estimator(index, history, port.estimator, port.k)
    index.manifest = index.manifest.with_estimator(port.estimator, estimator_class(port.estimator).configuration(port.k),
                                                   estimator.settings)
    log.info("estimator %s tuned: %s", port.estimator, estimator.settings)
    return index


def load_or_build_index(history: History, embedder: Embedder, params: IndexParams, port: PortParams,
                        directory: Path | None) -> AnnIndex:
    """Load the index saved in ``directory`` if there is one (it must match), else build and save it."""
    if directory is not None and (directory / MANIFEST_FILE).exists():
        prefixes = learn_prefixes(history, embedder.params)
        index = AnnIndex.load(directory, params, expected_manifest(history, embedder, params, prefixes))
        index.manifest.check_estimator(port.estimator, estimator_class(port.estimator).configuration(port.k),
                                       directory)
        return index
    index = build_index(history, embedder, params, port)
    if directory is not None:
        index.save(directory)
    return index


class RoutingEngine:
    """Embeds, estimates and decides for batches of queries; holds no per-stream state."""

    def __init__(self, history: History, embedder: Embedder, index: AnnIndex, port: PortParams) -> None:
        self.models = history.models
        self.embedder = embedder
        self.dimension = embedder.dimension
        self.prefixes = SharedPrefixes(index.manifest.shared_prefixes)
        self.index = index
        self.estimator = create_estimator(index.manifest.estimator, ReferenceTable.from_history(history),
                                          index.manifest.estimator_settings)
        self.decider = PortDecider(port, cost_scale=float(history.cost.mean()))
        self.history_cost_scale = float(history.cost.mean())
        self._history_estimates: Estimates | None = None  # leave-one-out, computed when first needed
        self.port = port

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of query texts, after stripping the templates the index was built without."""
        return self.embedder.embed(self.prefixes.strip_all(texts))

    def estimate(self, embeddings: np.ndarray, texts: Sequence[str | None] | None = None,
                 tasks: Sequence[str | None] | None = None) -> Estimates:
        """d^ and g^ (dollars) for a batch of embeddings; the queries' texts (None where only an
        embedding came) and task labels, when given, inform estimators that use them."""
        return self.estimator.estimate(self.index, embeddings, QueryFeatures.of(texts, tasks))

    def controller(self, budgets: np.ndarray, seed: int = 0) -> PortController:
        """PORT's control loop for these models (``router_core.controller``), over ``port.n_expected``
        decisions with ``budgets`` (dollars); the history's leave-one-out estimates feed the
        'history-prior' observation phase."""
        if self.port.observation == "history-prior" and self._history_estimates is None:
            self._history_estimates = self.estimator.estimate_history(self.index)
        return PortController(self.port, self.history_cost_scale, budgets, self.port.n_expected,
                              self._history_estimates, seed)

    @property
    def cost_scale(self) -> float:
        """The divisor applied to dollar costs before scoring (1 when normalization is off)."""
        return self.decider.cost_scale
