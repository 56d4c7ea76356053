"""The history the router indexes and the query stream the producer sends, from the configuration,
assembled by router_core.assembly (the offline benchmark's path too) into a ready RoutingEngine."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from router_core.assembly import Assembly, assemble
from router_core.embedders import create_embedder
from router_core.engine import RoutingEngine
from router_core.evaluation.experiment import test_split
from router_core.history import History, load_history
from streams.config import ConfigError, ServiceConfig

log = logging.getLogger(__name__)


def parse_split(spec: str) -> tuple[bool, int, int]:
    """Parse ``split:<seed>:<stream_size>`` or ``drift:<seed>:<stream_size>`` into (drift, seed, stream_size)."""
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in ("split", "drift") or not parts[1].isdigit() or not parts[2].isdigit():
        raise ConfigError(f"history_rows: expected 'split:<seed>:<stream_size>' or 'drift:<seed>:<stream_size>', "
                          f"got {spec!r}")
    return parts[0] == "drift", int(parts[1]), int(parts[2])


def load_rows(config: ServiceConfig) -> tuple[History, tuple[np.ndarray, np.ndarray] | None]:
    """(the configured data, its (history rows, stream rows) as ``history_rows`` says, or None: all history)."""
    full, _ = load_history(config.history)  # load_history logs its summary
    configured = tuple(m.name for m in config.models)
    if set(configured) != set(full.models):
        raise ConfigError(f"models: the configured models must be the history's models; missing from the history: "
                          f"{sorted(set(configured) - set(full.models))}, not configured: "
                          f"{sorted(set(full.models) - set(configured))}")
    if config.history_rows is None:
        return full, None
    drift, seed, size = parse_split(config.history_rows)
    try:
        stream_rows, history_rows = test_split(full, size, seed, drift)  # the offline benchmark's split
    except ValueError as exc:
        raise ConfigError(f"history_rows: {exc}") from None
    return full, (history_rows, stream_rows)


def load_split(config: ServiceConfig) -> tuple[History, History | None]:
    """(history the index is built on, held-out query stream or None) as ``history_rows`` says."""
    full, rows = load_rows(config)
    return (full, None) if rows is None else (full.subset(rows[0]), full.subset(rows[1]))


def budgets_in_order(config: ServiceConfig, models: tuple[str, ...]) -> np.ndarray:
    """The configured total budgets (dollars) in the order of ``models``."""
    return np.array([config.model(m).budget for m in models], dtype=np.float64)


def load_assembly(config: ServiceConfig) -> Assembly:
    """The configured history and held-out stream, embedded and indexed (index loaded from or saved to
    ``index_dir``, with the configured estimator tuned)."""
    data, rows = load_rows(config)
    index_dir = Path(config.index_dir) if config.index_dir else None
    return assemble(data, rows, create_embedder(config.embedding), config.index, config.port, index_dir)


def load_engine(config: ServiceConfig, announce: bool = True) -> RoutingEngine:
    """The routing engine of a router on the configured history; ``announce`` logs that it is ready (the router's
    own engine; its prepare process loads a copy quietly and the router logs when that process is up)."""
    assembly = load_assembly(config)
    engine = assembly.engine(config.port)
    if announce:
        log.info("engine ready: %d history queries, %d models, dimension %d", len(assembly.history),
                 len(engine.models), engine.dimension)
    return engine
