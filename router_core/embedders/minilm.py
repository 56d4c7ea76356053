"""The ``minilm`` backend: a sentence-transformers model (all-MiniLM-L6-v2 by default) on torch."""

from __future__ import annotations

import logging
import os
import time
from typing import Sequence

import numpy as np

from router_core.embedding import Embedder, resolve_model_path
from router_core.params import EmbeddingParams

log = logging.getLogger(__name__)


class MiniLMEmbedder(Embedder):
    """A transformer encoder: about 30-90 texts/s on a CPU core, the reference quality."""

    def __init__(self, params: EmbeddingParams) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RuntimeError("embedding.backend 'minilm' needs sentence-transformers and torch "
                               "(pip install 'port-router[minilm]'), or use embedding.backend 'static'") from exc

        self.params = params
        started = time.perf_counter()
        self._model = SentenceTransformer(resolve_model_path(params.model), device=params.device)
        self._model.tokenizer.truncation_side = "left" if params.overflow == "tail" else "right"
        self.dimension = int(self._model.get_embedding_dimension()
                             if hasattr(self._model, "get_embedding_dimension")
                             else self._model.get_sentence_embedding_dimension())
        self.window = int(self._model.max_seq_length)
        self.identity = f"minilm:{params.model}"
        log.info("embedding model %s loaded in %.1fs (dimension %d, window %d tokens, keeps the %s)",
                 params.model, time.perf_counter() - started, self.dimension, self.window, params.overflow)

    def encode(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        return self._model.encode(list(texts), batch_size=self.params.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=show_progress)
