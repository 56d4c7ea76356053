"""router_core.assembly: the one path from data to the index, the held-out embeddings and the engine."""

from __future__ import annotations

import numpy as np
import pytest

from router_core.assembly import assemble
from router_core.embedders import create_embedder
from router_core.embedding import Embedder
from router_core.history import History
from router_core.index import MANIFEST_FILE
from router_core.params import EmbeddingParams, IndexParams, PortParams

TEMPLATE = "".join(f"Shared example {i}: every prompt repeats this line word for word.\n" for i in range(20))


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Embedder:
    return create_embedder(EmbeddingParams(backend="minilm", cache_dir=str(tmp_path_factory.mktemp("cache"))))


def _data(n: int = 14) -> History:
    rng = np.random.default_rng(3)
    return History(ids=tuple(f"q{i}" for i in range(n)),
                   prompts=tuple(f"{TEMPLATE}Question {i}: what is {i} squared?" for i in range(n)),
                   tasks=("t",) * n, models=("a", "b"), quality=rng.random((n, 2)), cost=rng.random((n, 2)))


def test_rows_split_the_data_and_only_the_history_is_indexed(embedder) -> None:
    data = _data()
    history_rows, held_out_rows = np.array([0, 2, 3, 5, 7, 8, 10, 11, 13]), np.array([12, 1, 9, 4, 6])
    assembly = assemble(data, (history_rows, held_out_rows), embedder, IndexParams())
    assert assembly.history.ids == tuple(data.ids[i] for i in history_rows)
    assert assembly.held_out is not None
    assert assembly.held_out.ids == tuple(data.ids[i] for i in held_out_rows)  # arrival order kept
    assert assembly.index.manifest.count == len(history_rows)
    assert assembly.prefixes.prefixes, "the shared template is learned from the history"


def test_held_out_vectors_are_what_a_router_computes(embedder, tmp_path) -> None:
    data, port = _data(), PortParams(estimator="knn-mean", k=3)
    rows = (np.arange(10), np.arange(10, 14))
    assembly = assemble(data, rows, embedder, IndexParams(), port, tmp_path)
    engine = assembly.engine(port)
    assert assembly.held_out is not None
    np.testing.assert_allclose(assembly.held_out_vectors(), engine.embed(assembly.held_out.prompts), atol=1e-5)
    assert engine.estimator.name == "knn-mean" == assembly.index.manifest.estimator
    assert (tmp_path / MANIFEST_FILE).exists(), "a router's index is saved to index_dir"


def test_without_a_split_there_is_no_held_out_stream(embedder) -> None:
    assembly = assemble(_data(), None, embedder, IndexParams())
    assert assembly.held_out is None and len(assembly.history) == 14
    with pytest.raises(ValueError, match="no held-out queries"):
        assembly.held_out_vectors()
    assert assembly.estimator("knn-mean", 3).name == "knn-mean"
