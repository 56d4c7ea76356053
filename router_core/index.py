"""Approximate nearest neighbours over history embeddings (hnswlib, cosine space).

An index is saved as two files in a directory: ``index.bin`` (the HNSW graph) and
``manifest.json`` (what it was built from). Loading checks the manifest against what the
caller expects, so a router never answers from an index of another model or data set.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from router_core.errors import IndexMismatchError
from router_core.params import IndexParams

log = logging.getLogger(__name__)

INDEX_FILE = "index.bin"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class IndexManifest:
    """What an index was built from; two manifests that differ mean two different indexes."""

    embedding_model: str
    dimension: int
    count: int
    data_hash: str
    m: int
    ef_construction: int
    shared_prefixes: tuple[str, ...] = ()
    estimator: str = ""
    estimator_configuration: dict[str, Any] = field(default_factory=dict)
    estimator_settings: dict[str, Any] = field(default_factory=dict)
    embedder: str = ""

    def check_embedder(self, expected: str, where: Path | str) -> None:
        """Refuse an index whose vectors come from another embedder (backend or weights) than ``expected``."""
        if self.embedder != expected:
            raise IndexMismatchError(
                f"{where}: the index was built with the embedder {self.embedder!r} but the configuration's is "
                f"{expected!r}; rebuild it with 'port-router index build' and the configured --embedding-backend "
                "(or delete the directory: the router then builds and saves a new one)"
            )

    def with_estimator(self, name: str, configuration: dict[str, Any], settings: dict[str, Any]) -> "IndexManifest":
        """This manifest recording the estimator, its configured inputs and the settings tuned for it."""
        return replace(self, estimator=name, estimator_configuration=_as_json(configuration),
                       estimator_settings=_as_json(settings))

    def check_estimator(self, name: str, configuration: dict[str, Any], where: Path | str) -> None:
        """Refuse an index whose estimator settings were tuned for another estimator or configuration."""
        if not self.estimator:
            raise IndexMismatchError(f"{where}: the index records no estimator settings (built before estimators "
                                     f"were tuned); rebuild it with 'port-router index build --estimator {name}' "
                                     "(or delete the directory: the router then builds and saves a new one)")
        if self.estimator != name or self.estimator_configuration != _as_json(configuration):
            raise IndexMismatchError(
                f"{where}: the index's estimator settings were tuned for {self.estimator!r} with "
                f"{self.estimator_configuration} but the configuration asks for {name!r} with "
                f"{_as_json(configuration)}; rebuild it with 'port-router index build --estimator {name}' "
                "(or delete the directory: the router then builds and saves a new one)"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "IndexManifest":
        raw = json.loads(text)
        raw["shared_prefixes"] = tuple(raw.get("shared_prefixes", ()))
        # Before embedders were recorded (issue 8) every index was built by sentence-transformers.
        raw.setdefault("embedder", f"minilm:{raw['embedding_model']}")
        return cls(**raw)


def _as_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as it reads back from JSON (tuples become lists), so saved and expected compare equal."""
    return json.loads(json.dumps(value))


class AnnIndex:
    """An HNSW index whose labels are row numbers of the history it was built from."""

    def __init__(self, index: hnswlib.Index, manifest: IndexManifest, params: IndexParams) -> None:
        self._index = index
        self.manifest = manifest
        self.params = params
        self._index.set_ef(params.ef)
        self._index.set_num_threads(params.threads)

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams, manifest: IndexManifest) -> "AnnIndex":
        """Build an index over ``vectors`` (row i gets label i)."""
        started = time.perf_counter()
        index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
        index.init_index(max_elements=max(len(vectors), 1), M=params.m, ef_construction=params.ef_construction)
        index.add_items(vectors, np.arange(len(vectors)), num_threads=params.threads)
        log.info("HNSW index over %d vectors built in %.2fs", len(vectors), time.perf_counter() - started)
        return cls(index, manifest, params)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and cosine distances of the ``k`` nearest history rows, each (B, k)."""
        if self._index.ef < k:
            self._index.set_ef(k)
        labels, distances = self._index.knn_query(queries, k=k)
        return labels.astype(np.int64, copy=False), distances

    def vectors(self) -> np.ndarray:
        """The stored vectors, in label order (unit length: cosine space normalizes them)."""
        return np.asarray(self._index.get_items(np.arange(self.manifest.count)), dtype=np.float32)

    def save(self, directory: Path) -> None:
        """Write the graph and its manifest into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self._index.save_index(str(directory / INDEX_FILE))
        (directory / MANIFEST_FILE).write_text(self.manifest.to_json())
        log.info("index saved to %s", directory)

    @classmethod
    def load(cls, directory: Path, params: IndexParams, expected: IndexManifest) -> "AnnIndex":
        """Load an index, failing clearly if it was built from another model, data or parameters.

        ``expected.shared_prefixes`` is not compared: the saved manifest's prefixes are the
        ones the index was built with and are kept.
        """
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.exists():
            raise IndexMismatchError(f"{directory}: no {MANIFEST_FILE}; build the index with 'port-router index build'")
        saved = IndexManifest.from_json(manifest_path.read_text())
        saved.check_embedder(expected.embedder, directory)
        for name in ("embedding_model", "dimension", "count", "data_hash", "m", "ef_construction"):
            have, want = getattr(saved, name), getattr(expected, name)
            if have != want:
                raise IndexMismatchError(
                    f"{directory}: index was built with {name}={have!r} but the configuration expects {want!r}; "
                    "rebuild it with 'port-router index build'"
                )
        index = hnswlib.Index(space="cosine", dim=saved.dimension)
        index.load_index(str(directory / INDEX_FILE), max_elements=saved.count)
        log.info("index loaded from %s (%d vectors)", directory, saved.count)
        return cls(index, saved, params)
