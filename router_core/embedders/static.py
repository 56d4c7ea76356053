"""The ``static`` backend: a token-embedding table distilled from a transformer (model2vec).

A text's vector is the mean of its tokens' rows, normalized: numpy and the ``tokenizers``
library only, no torch, thousands of texts per second on one core.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from router_core.embedders.manifest import EMBEDDINGS_FILE, TOKENIZER_FILE, StaticManifest, default_static_dir
from router_core.embedding import Embedder
from router_core.errors import EmbedderModelError
from router_core.params import EmbeddingParams

log = logging.getLogger(__name__)


def static_model_dir(params: EmbeddingParams) -> Path:
    """The configured static model directory, or the default one for the configured teacher."""
    return Path(params.static_model) if params.static_model else default_static_dir(params.model)


class StaticEmbedder(Embedder):
    """Mean of distilled token vectors; refuses a model distilled from another teacher."""

    def __init__(self, params: EmbeddingParams) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        started = time.perf_counter()
        directory = static_model_dir(params)
        manifest = StaticManifest.read(directory)
        if manifest.teacher != params.model:
            raise EmbedderModelError(
                f"{directory}: this static model was distilled from {manifest.teacher!r} but embedding.model is "
                f"{params.model!r}; distill one from it with 'port-router embedder distill --model {params.model}' "
                "and point embedding.static_model at it")
        manifest.verify(directory)
        self.params = params
        self.manifest = manifest
        self._table = load_file(str(directory / EMBEDDINGS_FILE))["embeddings"]
        self._tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        unk = getattr(self._tokenizer.model, "unk_token", None)
        self._unk = self._tokenizer.token_to_id(unk) if unk else None
        self.dimension = int(self._table.shape[1])
        self.window = manifest.window
        self.identity = f"static:{manifest.hash[:16]}"
        log.info("static embedder %s (from %s) loaded in %.2fs: %d tokens x %d dims, window %d tokens, keeps the %s",
                 directory, manifest.teacher, time.perf_counter() - started, len(self._table), self.dimension,
                 self.window, params.overflow)

    def _token_ids(self, text_ids: list[int]) -> np.ndarray:
        """A text's token ids without the unknown token, cut to the window at the configured end."""
        ids = np.asarray(text_ids, dtype=np.int64)
        if self._unk is not None:
            ids = ids[ids != self._unk]
        return ids[-self.window:] if self.params.overflow == "tail" else ids[: self.window]

    def encode(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        del show_progress  # fast enough not to need one
        step = self.params.batch_size
        return np.concatenate([self._encode_batch(texts[i:i + step]) for i in range(0, len(texts), step)])

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [self._token_ids(e.ids) for e in encodings]
        lengths = np.array([len(i) for i in ids])
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        filled = lengths > 0
        if filled.any():
            rows = self._table[np.concatenate(ids)].astype(np.float32)
            starts = np.concatenate(([0], np.cumsum(lengths[filled])[:-1]))
            out[filled] = np.add.reduceat(rows, starts, axis=0) / lengths[filled, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)
