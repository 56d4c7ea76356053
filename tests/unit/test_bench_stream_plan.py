"""bench-stream's plan: which runs, and each run's configuration (budgets scaled, backend with its own index)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streams.tools import bench_stream as bench
from streams.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"


def args(**overrides: object) -> argparse.Namespace:
    values = {"backends": ("static", "minilm"), "minilm_queries": 0, "scaling_partitions": (), "scaling_processes": (1,)}
    return argparse.Namespace(**{**values, **overrides})


def test_the_main_runs_come_first_and_the_grid_skips_processes_without_a_partition(monkeypatch):
    monkeypatch.setattr(bench, "minilm_available", lambda: True)
    specs = bench.run_specs(args(minilm_queries=500, scaling_partitions=(1, 2), scaling_processes=(1, 2)), "static")
    assert [s.name for s in specs[:4]] == ["pass-through Faust agent", "router, precomputed embeddings",
                                           "router, text (static)", "router, text (minilm)"]
    assert specs[3].queries == 500 and specs[2].queries is None and specs[2].text and not specs[1].text
    grid = [(s.kind, s.partitions, s.processes) for s in specs[4:]]
    assert grid == [("passthrough", 1, 1), ("router", 1, 1), ("passthrough", 2, 1), ("router", 2, 1),
                    ("passthrough", 2, 2), ("router", 2, 2)]
    assert all(s.backend == "static" and s.text for s in specs[4:] if s.kind == "router")


def test_minilm_is_skipped_loudly_when_it_is_not_installed(monkeypatch, caplog):
    monkeypatch.setattr(bench, "minilm_available", lambda: False)
    names = [s.name for s in bench.run_specs(args(), "static")]
    assert "router, text (minilm)" not in names and "router, text (static)" in names
    assert "minilm run is skipped" in caplog.text


@pytest.mark.parametrize("backend", ["static", "minilm"])
def test_a_run_scales_the_budgets_and_gives_another_backend_its_own_index(backend):
    base = load_config(EXAMPLE, {})
    spec = bench.RunSpec("r", "router", text=True, backend=backend, partitions=4)
    config, derived, env = bench.fresh_config(str(EXAMPLE), "t", spec, budget_scale=20.0)
    try:
        assert derived.exists() and config.topics.query_partitions == 4
        assert config.topics.prefix.startswith("bencht") and config.topics.prefix != base.topics.prefix
        assert [m.budget for m in config.models] == pytest.approx([20.0 * m.budget for m in base.models])
        assert config.embedding.backend == backend
        same = backend == base.embedding.backend
        assert config.index_dir == (base.index_dir if same else f"{base.index_dir}-{backend}")
        assert load_config(derived, env) == config  # the processes read the same configuration
    finally:
        derived.unlink()
