"""Template stripping, the real embedding model, and the HNSW index with its manifest."""

from __future__ import annotations

import numpy as np
import pytest

from router_core.embedders import create_embedder
from router_core.embedding import Embedder
from router_core.assembly import assemble
from router_core.engine import build_index, load_or_build_index
from router_core.errors import IndexMismatchError
from router_core.history import History
from router_core.index import AnnIndex
from router_core.params import EmbeddingParams, IndexParams, PortParams
from router_core.prompts import SharedPrefixes

TEMPLATE = "".join(f"Example {i}: a long worked example that every prompt repeats word for word.\n"
                   for i in range(60))
QUESTIONS = [f"Question: how many legs does a {animal} have?" for animal in
             ("spider", "horse", "snake", "bird", "ant", "crab")]


def test_shared_prefix_is_learned_and_stripped_at_a_line_break():
    prompts = [TEMPLATE + q for q in QUESTIONS] + ["unrelated short prompt"]
    prefixes = SharedPrefixes.learn(prompts)
    assert prefixes.prefixes == (TEMPLATE,)
    assert prefixes.strip(TEMPLATE + "Question: new?") == "Question: new?"
    assert prefixes.strip("unrelated short prompt") == "unrelated short prompt"
    assert prefixes.strip(TEMPLATE) == TEMPLATE  # never strips a prompt down to nothing


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Embedder:
    return create_embedder(EmbeddingParams(cache_dir=str(tmp_path_factory.mktemp("cache"))))


def test_templated_questions_get_distinct_embeddings(embedder):
    """The measured trap: a prefix that fills the window collapses every question to one vector."""
    long_template = TEMPLATE * 3  # well over 256 tokens
    prompts = [long_template + q for q in QUESTIONS]
    naive = create_embedder(EmbeddingParams(overflow="head", cache_dir=None)).embed(prompts)
    assert len(np.unique(naive.round(5), axis=0)) == 1  # the trap is real
    by_tail = embedder.embed(prompts)
    stripped = embedder.embed(SharedPrefixes.learn(prompts).strip_all(prompts))
    for vectors in (by_tail, stripped):
        assert len(np.unique(vectors.round(5), axis=0)) == len(QUESTIONS)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_cache_serves_a_second_call_without_the_model(embedder, monkeypatch):
    first = embedder.embed_cached(QUESTIONS)
    monkeypatch.setattr(embedder, "embed", lambda *a, **k: pytest.fail("re-embedded cached texts"))
    np.testing.assert_array_equal(embedder.embed_cached(list(reversed(QUESTIONS))), first[::-1])


def _history(n: int = 12, seed: int = 0) -> History:
    rng = np.random.default_rng(seed)
    return History(ids=tuple(str(i) for i in range(n)), prompts=tuple(f"prompt about topic {i}" for i in range(n)),
                   tasks=("t",) * n, models=("a", "b"), quality=rng.random((n, 2)), cost=rng.random((n, 2)))


def test_index_finds_itself_and_round_trips(embedder, tmp_path):
    history = _history()
    index = load_or_build_index(history, embedder, IndexParams(), PortParams(), tmp_path / "idx")
    vectors = index.vectors()
    labels, distances = index.search(vectors[:3], k=1)
    assert labels[:, 0].tolist() == [0, 1, 2]
    assert np.all(distances < 1e-4)
    loaded = load_or_build_index(history, embedder, IndexParams(), PortParams(), tmp_path / "idx")
    assert loaded.search(vectors[:3], k=2)[0].tolist() == index.search(vectors[:3], k=2)[0].tolist()


def test_index_of_other_data_or_parameters_is_refused(embedder, tmp_path):
    build_index(_history(), embedder, IndexParams(), PortParams()).save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="data_hash"):
        load_or_build_index(_history(seed=1), embedder, IndexParams(), PortParams(), tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="m=32 but the configuration expects 16"):
        load_or_build_index(_history(), embedder, IndexParams(m=16), PortParams(), tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="no manifest.json"):
        AnnIndex.load(tmp_path, IndexParams(), build_index(_history(), embedder, IndexParams(), PortParams()).manifest)


def test_index_tuned_for_another_estimator_is_refused(embedder, tmp_path):
    build_index(_history(), embedder, IndexParams(), PortParams(estimator="knn-mean", k=3)).save(tmp_path)
    with pytest.raises(IndexMismatchError, match="rebuild it with 'port-router index build --estimator kernel-shrink'"):
        load_or_build_index(_history(), embedder, IndexParams(), PortParams(estimator="kernel-shrink"), tmp_path)
    with pytest.raises(IndexMismatchError, match="'k': 3"):
        load_or_build_index(_history(), embedder, IndexParams(), PortParams(estimator="knn-mean", k=4), tmp_path)


def test_engine_estimates_with_the_settings_the_manifest_records(embedder, tmp_path):
    history = _history()
    port = PortParams(estimator="kernel-shrink")
    load_or_build_index(history, embedder, IndexParams(), port, tmp_path)
    engine = assemble(history, None, embedder, IndexParams(), port, tmp_path).engine(port)
    assert engine.estimator.name == "kernel-shrink"
    assert engine.estimator.settings == engine.index.manifest.estimator_settings
    est = engine.estimate(engine.embed(["prompt about topic 3"]), ["prompt about topic 3"], ["t"])
    assert est.quality.shape == est.cost.shape == (1, 2)
