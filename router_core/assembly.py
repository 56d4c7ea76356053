"""One assembly path from data and parameters to what routing needs.

The rows of the data are split into the history and the held-out queries, the history is
embedded and indexed, and from that come the held-out queries' embeddings, a tuned estimator
(offline) or the ready :class:`RoutingEngine` (a router). Used by the offline benchmark
(router_core/evaluation/experiment.py), ``port-router overhead`` (router_core/cli.py) and the
service and its tools (streams/service/data.py); each caller only chooses the rows and the
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from router_core.embedding import Embedder
from router_core.engine import RoutingEngine, fit_estimator, index_history, load_or_build_index
from router_core.estimator import Estimator
from router_core.history import History
from router_core.index import AnnIndex
from router_core.params import IndexParams, PortParams
from router_core.prompts import SharedPrefixes


@dataclass(frozen=True)
class Assembly:
    """The history, the held-out queries (None: no split), the embedder and the history's index."""

    history: History
    held_out: History | None
    embedder: Embedder
    index: AnnIndex

    @property
    def prefixes(self) -> SharedPrefixes:
        """The shared templates the index was built without."""
        return SharedPrefixes(self.index.manifest.shared_prefixes)

    def embed_cached(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of query texts as a router computes them (templates stripped), through the
        on-disk cache."""
        return self.embedder.embed_cached(self.prefixes.strip_all(list(texts)))

    def held_out_vectors(self) -> np.ndarray:
        """Embeddings of the held-out queries (ValueError when there are none)."""
        if self.held_out is None:
            raise ValueError("no held-out queries: the data was not split")
        return self.embed_cached(self.held_out.prompts)

    def estimator(self, name: str, k: int) -> Estimator:
        """The estimator ``name`` over the history, tuned by leave-one-out over the index."""
        return fit_estimator(self.index, self.history, name, k)

    def engine(self, port: PortParams) -> RoutingEngine:
        """The routing engine of a router on this history and index."""
        return RoutingEngine(self.history, self.embedder, self.index, port)


def assemble(data: History, rows: tuple[np.ndarray, np.ndarray] | None, embedder: Embedder,
             index_params: IndexParams, port: PortParams | None = None, index_dir: Path | None = None) -> Assembly:
    """Split ``data`` into (history rows, held-out rows) (``rows`` None: all history), embed and index the
    history. With ``port`` (a router) the index records the estimator ``port`` selects, tuned, and is
    loaded from or saved to ``index_dir``; without it (the offline grid, which tunes several estimators
    on one index) the index is built in memory."""
    history, held_out = (data, None) if rows is None else (data.subset(rows[0]), data.subset(rows[1]))
    if port is None:
        index = index_history(history, embedder, index_params)
    else:
        index = load_or_build_index(history, embedder, index_params, port, index_dir)
    return Assembly(history, held_out, embedder, index)
