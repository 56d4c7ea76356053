"""``port-router embedder distill`` and ``port-router bench-embed``: build the static model, time the backends."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import get_args

import numpy as np
from rich.console import Console
from rich.table import Table

from router_core.argtypes import ints, names
from router_core.embedding import Embedder
from router_core.params import EmbeddingBackend, EmbeddingParams


def add_embedding_arguments(parser: argparse.ArgumentParser) -> None:
    """``--embedding-model`` and ``--static-model``, the fields of EmbeddingParams a command may override."""
    parser.add_argument("--embedding-model", default=EmbeddingParams().model,
                        help="the sentence-transformers model (the static backend's teacher)")
    parser.add_argument("--static-model", default=None,
                        help="directory of the distilled static model (default: the one scripts/setup.sh builds)")


def embedding_params(args: argparse.Namespace, backend: str, **overrides: object) -> EmbeddingParams:
    """EmbeddingParams of ``backend`` from the command's embedding arguments."""
    return EmbeddingParams(backend=backend, model=args.embedding_model, static_model=args.static_model, **overrides)


def optional_float(text: str) -> float | None:
    """A float, or None for 'none'."""
    return None if text.strip().lower() == "none" else float(text)


def backend_names(text: str) -> tuple[str, ...]:
    """Comma-separated embedding backends, each a known one."""
    backends = names(text)
    unknown = [n for n in backends if n not in get_args(EmbeddingBackend)]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}; known: {get_args(EmbeddingBackend)}")
    return backends


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``embedder`` and ``bench-embed`` to the ``port-router`` parser."""
    from router_core.embedders.manifest import DEFAULT_PCA_DIMS, DEFAULT_SIF_COEFFICIENT

    embedder = subparsers.add_parser("embedder", help="the static embedder distilled from MiniLM")
    commands = embedder.add_subparsers(dest="embedder_command", required=True)
    distill = commands.add_parser("distill", help="distil the static model (reused when it is already there)")
    distill.add_argument("--model", default="all-MiniLM-L6-v2", help="the teacher (sentence-transformers model)")
    distill.add_argument("--out", type=Path, default=None,
                         help="model directory (default: $PORT_ROUTER_CACHE/embedders/<model>-static<dims>)")
    distill.add_argument("--pca-dims", type=int, default=DEFAULT_PCA_DIMS)
    distill.add_argument("--sif-coefficient", type=optional_float, default=DEFAULT_SIF_COEFFICIENT,
                         help="weight tokens by frequency with this SIF coefficient (e.g. 1e-4, model2vec's default); "
                              "'none' (the default): every token counts equally")
    distill.add_argument("--force", action="store_true", help="distil again even if a valid model is there")
    distill.set_defaults(handler=run_distill)

    bench = subparsers.add_parser("bench-embed", help="texts/s of each embedding backend at several batch sizes")
    bench.add_argument("--data", nargs="+", type=Path, default=None,
                       help="history files or directories (default: $PORT_ROUTER_DATA, else the example subset)")
    add_embedding_arguments(bench)
    bench.add_argument("--backends", type=backend_names, default=get_args(EmbeddingBackend))
    bench.add_argument("--batch-sizes", type=ints, default=(1, 32, 256))
    bench.add_argument("--sample", type=int, default=512, help="test prompts embedded per batch size")
    bench.add_argument("--overlap-k", type=int, default=5,
                       help="also report how many of each test prompt's k exact nearest history prompts every "
                            "backend shares with the first one (through the embedding cache)")
    bench.add_argument("--json", type=Path, default=None, help="write the measurements to this JSON file")
    bench.set_defaults(handler=run_bench_embed)


def run_distill(args: argparse.Namespace) -> int:
    """``port-router embedder distill``: build (or reuse) the static model and print its manifest."""
    from router_core.embedders.distill import ensure_static_model
    from router_core.embedders.manifest import default_static_dir

    out = args.out or default_static_dir(args.model, args.pca_dims)
    manifest, reused = ensure_static_model(args.model, out, args.pca_dims, args.force, args.sif_coefficient)
    Console().print(f"static model {'reused' if reused else 'distilled'}: {out} ({manifest.dimension} dims, "
                    f"from {manifest.teacher}, hash {manifest.hash})")
    return 0


def run_bench_embed(args: argparse.Namespace) -> int:
    """``port-router bench-embed``: texts/s of every backend at every batch size, on the same test prompts."""
    from router_core.datasets import default_data_paths
    from router_core.embedders import create_embedder
    from router_core.engine import learn_prefixes
    from router_core.evaluation.experiment import split_rows
    from router_core.history import load_history

    data, _ = load_history(args.data or default_data_paths())
    test_rows, history_rows = split_rows(len(data), min(args.sample, len(data) - 1), seed=42)
    prefixes = learn_prefixes(data.subset(history_rows), EmbeddingParams())
    texts = prefixes.strip_all(data.subset(test_rows).prompts)
    history_texts = prefixes.strip_all(data.subset(history_rows).prompts)
    embedders, load_s = {}, {}
    for backend in args.backends:
        started = time.perf_counter()
        embedders[backend] = create_embedder(embedding_params(args, backend, batch_size=max(args.batch_sizes)))
        load_s[backend] = time.perf_counter() - started
        embedders[backend].embed(texts[:8])  # warm-up
    results, load_before = [], os.getloadavg()[0]
    for size in args.batch_sizes:  # backends alternate per batch size, so a change of machine load falls on both
        for backend, embedder in embedders.items():
            started = time.perf_counter()
            for i in range(0, len(texts), size):
                embedder.embed(texts[i:i + size])
            elapsed = time.perf_counter() - started
            results.append({"backend": backend, "identity": embedder.identity, "dimension": embedder.dimension,
                            "batch_size": size, "texts": len(texts), "seconds": elapsed,
                            "texts_per_s": len(texts) / elapsed, "load_s": load_s[backend]})
    table = Table(title=f"embedding throughput, {len(texts)} test prompts (seed 42 split, templates stripped); "
                        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    for column in ("embedder", "dims", "load s", *(f"batch {b} texts/s" for b in args.batch_sizes)):
        table.add_column(column, justify="left" if column == "embedder" else "right")
    for backend in args.backends:
        mine = [r for r in results if r["backend"] == backend]
        table.add_row(mine[0]["identity"], str(mine[0]["dimension"]), f"{mine[0]['load_s']:.2f}",
                      *(f"{r['texts_per_s']:.1f}" for r in mine))
    console = Console()
    console.print(table)
    overlap = neighbour_overlap(embedders, texts, history_texts, args.overlap_k)
    for backend, share in overlap.items():
        console.print(f"{backend}: {share:.3f} of the {args.overlap_k} exact nearest history prompts shared with "
                      f"{args.backends[0]} ({len(texts)} test prompts, {len(history_texts)} history prompts)")
    if args.json:
        args.json.write_text(json.dumps({"throughput": results, f"overlap_at_{args.overlap_k}": overlap}, indent=2))
    return 0


def neighbour_overlap(embedders: dict[str, Embedder], texts: list[str], history: list[str], k: int) -> dict[str, float]:
    """Per backend after the first: the mean share of each text's k exact nearest history texts that
    the first backend also finds (recall@k against it)."""
    from router_core.neighbours import exact_neighbours

    found = {backend: exact_neighbours(embedder.embed_cached(texts), embedder.embed_cached(history), k).labels
             for backend, embedder in embedders.items()}
    reference, *others = found
    return {backend: float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found[reference], found[backend])]))
            for backend in others}
