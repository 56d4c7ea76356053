"""The static embedding backend: vectors, determinism, its model's manifest, the index's embedder check, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from safetensors.numpy import save_file
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.pre_tokenizers import Whitespace

from router_core.embedders import create_embedder, distill
from router_core.embedders.manifest import (CONTENT_FILES, EMBEDDINGS_FILE, MANIFEST_FILE, TOKENIZER_FILE,
                                            StaticManifest, file_hash)
from router_core.engine import build_index, load_or_build_index
from router_core.errors import EmbedderModelError, IndexMismatchError
from router_core.history import History
from router_core.index import IndexManifest
from router_core.params import DEFAULT_EMBEDDING_MODEL, EmbeddingParams, IndexParams, PortParams
from streams.config import ConfigError, load_config

WORDS = ("[UNK]", "how", "many", "legs", "does", "a", "spider", "horse", "have", "?")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"


def write_static_model(directory: Path, seed: int = 0, window: int = 512, teacher: str = DEFAULT_EMBEDDING_MODEL,
                       dims: int = 8) -> np.ndarray:
    """A tiny static model as ``embedder distill`` lays it out (a word-piece vocabulary of WORDS); its table."""
    directory.mkdir(parents=True, exist_ok=True)
    table = np.random.default_rng(seed).normal(size=(len(WORDS), dims)).astype(np.float16)
    save_file({"embeddings": table}, str(directory / EMBEDDINGS_FILE))
    tokenizer = Tokenizer(WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(directory / TOKENIZER_FILE))
    manifest = StaticManifest(teacher=teacher, teacher_hash="", dimension=dims, window=window,
                              settings=distill.settings_for(256), versions={},
                              files={name: file_hash(directory / name) for name in CONTENT_FILES})
    (directory / MANIFEST_FILE).write_text(manifest.to_json())
    return table


def params(directory: Path, **overrides: object) -> EmbeddingParams:
    return EmbeddingParams(**{"backend": "static", "static_model": str(directory), "cache_dir": None, **overrides})


def expected(table: np.ndarray, words: list[str]) -> np.ndarray:
    mean = table[[WORDS.index(w) for w in words]].astype(np.float32).mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_vector_is_the_normalized_mean_of_known_tokens(tmp_path):
    table = write_static_model(tmp_path / "m")
    embedder = create_embedder(params(tmp_path / "m"))
    vectors = embedder.embed(["how many legs does a spider have ?", "a horse zebra", "zebra"])
    assert vectors.shape == (3, 8) and vectors.dtype == np.float32 and embedder.dimension == 8
    np.testing.assert_allclose(vectors[0], expected(table, "how many legs does a spider have ?".split()), rtol=1e-5)
    np.testing.assert_allclose(vectors[1], expected(table, ["a", "horse"]), rtol=1e-5)  # unknown words are dropped
    np.testing.assert_array_equal(vectors[2], np.zeros(8))  # nothing known: a zero vector, not NaN
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, rtol=1e-6)


def test_vectors_do_not_depend_on_batching_or_loading(tmp_path):
    write_static_model(tmp_path / "m")
    texts = [" ".join(WORDS[1 + (i * j) % 9] for j in range(1 + i % 7)) for i in range(40)]
    together = create_embedder(params(tmp_path / "m", batch_size=16)).embed(texts)
    one_by_one = np.concatenate([create_embedder(params(tmp_path / "m")).embed([t]) for t in texts[:5]])
    np.testing.assert_array_equal(together[:5], one_by_one)
    np.testing.assert_array_equal(together, create_embedder(params(tmp_path / "m", batch_size=40)).embed(texts))


@pytest.mark.parametrize(("overflow", "kept"), [("tail", ["spider", "have", "?"]), ("head", ["how", "many", "legs"])])
def test_overflow_keeps_the_configured_end_of_the_window(tmp_path, overflow, kept):
    table = write_static_model(tmp_path / "m", window=3)
    vector = create_embedder(params(tmp_path / "m", overflow=overflow)).embed(["how many legs spider have ?"])
    np.testing.assert_allclose(vector[0], expected(table, kept), rtol=1e-5)


def test_missing_corrupt_or_mismatched_model_is_refused_with_the_command(tmp_path):
    with pytest.raises(EmbedderModelError, match="embedder distill --out"):
        create_embedder(params(tmp_path / "absent"))
    write_static_model(tmp_path / "m")
    with pytest.raises(EmbedderModelError, match="distilled from 'all-MiniLM-L6-v2' but embedding.model is 'other'"):
        create_embedder(params(tmp_path / "m", model="other"))
    (tmp_path / "m" / EMBEDDINGS_FILE).write_bytes(b"tampered")
    with pytest.raises(EmbedderModelError, match="does not match manifest.json.*--force"):
        create_embedder(params(tmp_path / "m"))


def test_backends_and_models_never_share_a_cache_file(tmp_path):
    write_static_model(tmp_path / "a", seed=1)
    write_static_model(tmp_path / "b", seed=2)
    first = create_embedder(params(tmp_path / "a", cache_dir=str(tmp_path / "cache")))
    second = create_embedder(params(tmp_path / "b", cache_dir=str(tmp_path / "cache")))
    assert first.identity.startswith("static:") and first.identity != second.identity
    a, b = first.embed_cached(["a horse"]), second.embed_cached(["a horse"])
    assert not np.allclose(a, b)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def _history(n: int = 12) -> History:
    rng = np.random.default_rng(0)
    prompts = tuple(" ".join(WORDS[1 + (i * j) % 9] for j in range(1 + i % 5)) + f" {i}" for i in range(n))
    return History(ids=tuple(str(i) for i in range(n)), prompts=prompts, tasks=("t",) * n, models=("a", "b"),
                   quality=rng.random((n, 2)), cost=rng.random((n, 2)))


def test_index_built_with_another_embedder_is_refused(tmp_path):
    write_static_model(tmp_path / "a", seed=1)
    write_static_model(tmp_path / "b", seed=2)
    history, directory = _history(), tmp_path / "idx"
    first = create_embedder(params(tmp_path / "a"))
    build_index(history, first, IndexParams(), PortParams(estimator="knn-mean")).save(directory)
    assert json.loads((directory / "manifest.json").read_text())["embedder"] == first.identity
    load_or_build_index(history, first, IndexParams(), PortParams(estimator="knn-mean"), directory)
    with pytest.raises(IndexMismatchError, match=r"built with the embedder 'static:.*' but the configuration's is "
                                                 r"'static:.*'; rebuild it with 'port-router index build'"):
        load_or_build_index(history, create_embedder(params(tmp_path / "b")), IndexParams(),
                            PortParams(estimator="knn-mean"), directory)
    saved = json.loads((directory / "manifest.json").read_text())
    del saved["embedder"]  # an index from before embedders were recorded: sentence-transformers built it
    (directory / "manifest.json").write_text(json.dumps(saved))
    assert IndexManifest.from_json(json.dumps(saved)).embedder == "minilm:all-MiniLM-L6-v2"
    with pytest.raises(IndexMismatchError, match="built with the embedder 'minilm:all-MiniLM-L6-v2'"):
        load_or_build_index(history, first, IndexParams(), PortParams(estimator="knn-mean"), directory)


def test_a_valid_model_is_reused_without_distilling(tmp_path, monkeypatch):
    write_static_model(tmp_path / "m")
    monkeypatch.setattr(distill, "distill_static", lambda *a, **k: pytest.fail("distilled again"))
    manifest, reused = distill.ensure_static_model(DEFAULT_EMBEDDING_MODEL, tmp_path / "m")
    assert reused and manifest == StaticManifest.read(tmp_path / "m")
    calls = []
    monkeypatch.setattr(distill, "distill_static", lambda *a, **k: calls.append(a) or manifest)
    assert distill.ensure_static_model(DEFAULT_EMBEDDING_MODEL, tmp_path / "m", pca_dims=128) == (manifest, False)
    assert distill.ensure_static_model("other", tmp_path / "m")[1] is False and len(calls) == 2
    assert distill.ensure_static_model(DEFAULT_EMBEDDING_MODEL, tmp_path / "m", sif_coefficient=1e-4)[1] is False
    assert len(calls) == 3  # a model distilled with other SIF weighting is not the one asked for


def test_the_default_is_the_static_backend_without_sif_weighting():
    assert EmbeddingParams().backend == "static" and load_config(EXAMPLE, {}).embedding.backend == "static"
    assert distill.settings_for(256)["sif_coefficient"] is None
    assert load_config(EXAMPLE, {"PORT_ROUTER__EMBEDDING__BACKEND": "minilm"}).embedding.backend == "minilm"


def test_backend_is_validated_in_the_params_and_the_service_config(tmp_path):
    with pytest.raises(ValidationError, match="backend"):
        EmbeddingParams(backend="onnx")
    assert load_config(EXAMPLE, {"PORT_ROUTER__EMBEDDING__BACKEND": "static"}).embedding.backend == "static"
    data = yaml.safe_load(EXAMPLE.read_text())
    data["embedding"] = {"backend": "word2vec"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="embedding.backend"):
        load_config(tmp_path / "config.yaml", {})


def test_a_distilled_model_is_readable_by_other_users(tmp_path, monkeypatch):
    """The image distils as root and serves as uid 10001: every file of the model must be world-readable
    (safetensors writes its file 0600)."""
    import stat

    import model2vec.distill

    class Tokenizer:
        def save(self, path: str) -> None:
            Path(path).write_text("{}")

    class Model:
        embedding = np.ones((4, 8), dtype=np.float16)
        tokenizer = Tokenizer()
        weights = token_mapping = None
        max_length = 512

    monkeypatch.setattr(model2vec.distill, "distill", lambda *a, **k: Model())
    distill.distill_static(DEFAULT_EMBEDDING_MODEL, tmp_path / "m", pca_dims=8)
    files = sorted((tmp_path / "m").iterdir())
    assert {f.name for f in files} >= {"embeddings.safetensors", "tokenizer.json", "manifest.json"}
    for file in files:
        assert file.stat().st_mode & stat.S_IROTH, f"{file.name} is not readable by other users"
