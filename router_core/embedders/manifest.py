"""The manifest of a distilled static model: provenance, settings and content hashes.

A static model directory holds ``embeddings.safetensors`` (one float16 row per token),
``tokenizer.json`` and ``manifest.json``. The hash covers the two content files only, so
the same teacher, settings and library versions give the same hash on any path.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from router_core.errors import EmbedderModelError

MANIFEST_FILE = "manifest.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONTENT_FILES = (EMBEDDINGS_FILE, TOKENIZER_FILE)
DEFAULT_PCA_DIMS = 256
DEFAULT_SIF_COEFFICIENT: float | None = None  # no frequency weighting (model2vec's own default is 1e-4)


def default_static_dir(teacher: str, pca_dims: int = DEFAULT_PCA_DIMS) -> Path:
    """Where set-up puts the static model distilled from ``teacher``: under $PORT_ROUTER_CACHE, else .cache."""
    root = Path(os.environ.get("PORT_ROUTER_CACHE") or ".cache").expanduser()
    return root / "embedders" / f"{Path(teacher).name}-static{pca_dims}"


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StaticManifest:
    """What a static model was distilled from and how; ``hash`` identifies its content."""

    teacher: str
    teacher_hash: str
    dimension: int
    window: int
    settings: dict[str, Any]
    versions: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """One hash over the content files' hashes."""
        joined = "".join(f"{name}:{self.files[name]}\n" for name in sorted(self.files))
        return hashlib.sha256(joined.encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "hash": self.hash}, indent=2, sort_keys=True)

    @classmethod
    def read(cls, directory: Path) -> "StaticManifest":
        """The manifest of ``directory``, failing clearly when there is none."""
        path = directory / MANIFEST_FILE
        if not path.exists():
            raise EmbedderModelError(
                f"{directory}: no static model here ({MANIFEST_FILE} is missing); build it with "
                f"'port-router embedder distill --out {directory}' (scripts/setup.sh does it)")
        raw = json.loads(path.read_text())
        raw.pop("hash", None)
        return cls(**raw)

    def verify(self, directory: Path) -> None:
        """Fail clearly when a content file is missing or differs from what the manifest records."""
        for name in CONTENT_FILES:
            path = directory / name
            if not path.exists() or file_hash(path) != self.files.get(name):
                raise EmbedderModelError(
                    f"{directory}: {name} is missing or does not match {MANIFEST_FILE}; rebuild the model with "
                    f"'port-router embedder distill --out {directory} --force'")
