"""Helpers for the stream integration tests: the real broker, router processes, test configs.

The tests need the real Kafka broker at $KAFKA_BOOTSTRAP (default 127.0.0.1:9092, start it
with ``scripts/kafka.sh start``) and the shared RouterBench subset. When either is missing
they fail under CI=true and skip loudly otherwise.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import BOOTSTRAP, require_broker, unavailable
from router_core.datasets import SHARED_SUBSET, SHIPPED_SUBSET
from router_core.embedders.manifest import DEFAULT_PCA_DIMS
from schemas import QueryEvent
from streams.config import ServiceConfig, load_config
from streams.tools import processes
from streams.tools.outcomes import OutcomeTally, follow_outcomes
from streams.tools.produce import publish
from streams.kafka import topic_size
from streams.topics import create_topics

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("PORT_ROUTER_DATA", SHARED_SUBSET if SHARED_SUBSET.is_dir() else SHIPPED_SUBSET))
BACKEND = load_config(REPO / "examples" / "config.yaml", {}).embedding.backend
DIMENSION = {"static": DEFAULT_PCA_DIMS, "minilm": 384}[BACKEND]  # the example configuration's embedder


def require(condition: bool, reason: str) -> None:
    """conftest.unavailable(reason) when ``condition`` is false."""
    if not condition:
        unavailable(reason)


def require_environment() -> None:
    """The broker answers and the shared data exists."""
    require_broker()
    require(DATA.is_dir(), f"the RouterBench subset is not at {DATA} (set PORT_ROUTER_DATA)")


def write_config(directory: Path, partitions: int = 2, n_expected: int = 200, budget_scale: float = 1.0,
                 topics: bool = True) -> Path:
    """A test configuration: the example one under a unique topic prefix, on the test broker (its topics created
    unless not ``topics``)."""
    data = yaml.safe_load((REPO / "examples" / "config.yaml").read_text())
    data["kafka"]["bootstrap_servers"] = BOOTSTRAP
    data["topics"]["prefix"] = f"t{uuid.uuid4().hex[:10]}."
    data["topics"]["query_partitions"] = partitions
    data["port"]["n_expected"] = n_expected
    data["history"] = [str(DATA)]
    data["index_dir"] = str(REPO / ".cache" / "index" / f"routerbench-subset-{BACKEND}")
    data["router"]["data_dir"] = str(directory / "faust")
    for model in data["models"]:
        model["budget"] = model["budget"] * budget_scale
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    if topics:
        create_topics(load_config(path, {}))
    return path


def router_process(config_path: Path, log_path: Path, name: str = "router") -> processes.ServiceProcess:
    """A ``port-router serve`` child process on a free web port (call ``start()``)."""
    return processes.router(config_path, log_path, name)


def random_queries(count: int, run: str, seed: int = 0, text_every: int = 0) -> list[QueryEvent]:
    """Queries with random unit-vector embeddings; every ``text_every``-th carries text only."""
    rng = np.random.default_rng(seed)
    queries = []
    for i in range(count):
        if text_every and i % text_every == 0:
            queries.append(QueryEvent(id=f"{run}-{i}", text=f"Question {i}: which answer is correct? (A) yes (B) no"))
        else:
            vector = rng.normal(size=DIMENSION)
            queries.append(QueryEvent(id=f"{run}-{i}", embedding=(vector / np.linalg.norm(vector)).tolist()))
    return queries


def produce(config: ServiceConfig, queries: list[QueryEvent], rate: float = 0.0) -> list[str]:
    """Publish ``queries`` to the config's queries topic."""
    return publish(config, queries, len(queries), rate=rate, progress=False)


def outcomes(config: ServiceConfig, expected: int, timeout: float = 180.0) -> OutcomeTally:
    """Everything the router decided, once ``expected`` queries are decided (or the timeout passes)."""
    return follow_outcomes(config, expected, timeout=timeout, wait_completions=False)


def count_messages(config: ServiceConfig, topic: str) -> int:
    """Messages currently in ``topic``."""
    return topic_size(config.kafka.confluent(), topic)


def assert_accounting(tally: OutcomeTally, produced: list[str]) -> None:
    """Every produced id is in exactly one of routed.<one model>/unserved; nothing extra appears."""
    missing = set(produced) - set(tally.placements)
    assert not missing, f"{len(missing)} queries never decided, e.g. {sorted(missing)[:5]}"
    extra = set(tally.placements) - set(produced)
    assert not extra, f"decisions for ids never produced: {sorted(extra)[:5]}"
    double = {qid: kinds for qid, kinds in tally.placements.items() if len(kinds) != 1}
    assert not double, f"queries placed in more than one topic: {dict(list(double.items())[:5])}"
    assert sum(tally.routed.values()) + tally.unserved == len(produced)


def first_decisions(tally: OutcomeTally) -> dict[str, dict[str, Any]]:
    """The first routed message of each query id."""
    first: dict[str, dict[str, Any]] = {}
    for message in tally.routed_messages:
        first.setdefault(message["query"]["id"], message)
    return first


def assert_budgets(config: ServiceConfig, tally: OutcomeTally) -> dict[str, float]:
    """Reservations per model, over all input partitions (whose shares the optimizer reassigns), never exceed
    the budget B_i; returns the totals per model."""
    totals: dict[str, float] = {}
    for message in first_decisions(tally).values():
        totals[message["model"]] = totals.get(message["model"], 0.0) + message["reserved_cost"]
    for model, dollars in totals.items():
        budget = config.model(model).budget
        assert dollars <= budget * (1 + 1e-9), f"{model}: reserved {dollars} > budget {budget}"
    return totals


def assert_state_matches(state: dict[str, Any], reserved: dict[str, float]) -> None:
    """The router's budget state equals the sum of the charged decisions (no completions involved)."""
    for model, budget in state["budgets"].items():
        assert budget["spent"] == pytest.approx(reserved.get(model, 0.0), rel=1e-9, abs=1e-12), model


def start_router(directory: Path, partitions: int = 2) -> tuple[Path, ServiceConfig, processes.ServiceProcess]:
    """A fresh test configuration and a ready router on it."""
    path = write_config(directory, partitions=partitions, n_expected=200)
    router = router_process(path, directory / "router.log").start()
    router.wait_ready()
    return path, load_config(path, {}), router


def routed_wave(config: ServiceConfig, count: int, run: str, seed: int) -> list[str]:
    """Produce ``count`` queries and check every one is decided; return their ids."""
    ids = produce(config, random_queries(count, run, seed=seed))
    assert_accounting(outcomes(config, len(ids)), ids)
    return ids
