"""Shared helpers of the operations tests: where the tools are, the broker, the exported metric names.

A missing tool or broker never passes silently: under CI (``CI=true``) the test fails with
the reason; on a developer machine it is skipped with the reason (``pytest -rs`` lists them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PORT_ROUTER_CACHE", REPO / ".cache"))
INSTALL_HINT = "run scripts/install-ops-tools.sh"


def unavailable(reason: str) -> None:
    """Fail under CI, skip loudly elsewhere."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def tool(name: str) -> str:
    """Path of an operations tool: the ops-tools cache, the venv, then PATH."""
    for candidate in (CACHE / "ops-tools" / "bin" / name, REPO / ".venv" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed ({INSTALL_HINT})")
    return str(found)


def exported_metric_names() -> set[str]:
    """Every series name streams.metrics can export (counters as *_total, histograms as
    *_bucket/_sum/_count), read from its registry's metric families."""
    from streams.metrics import REGISTRY

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count", ""), "gauge": ("",),
                "summary": ("_sum", "_count", ""), "info": ("_info",)}
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The test broker's address (scripts/kafka.sh start); unavailable() when it does not answer."""
    servers = os.environ.get("PORT_ROUTER_TEST_BOOTSTRAP", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": servers}).list_topics(timeout=5)
    except Exception as exc:
        unavailable(f"no Kafka broker answers on {servers} (start it with scripts/kafka.sh start): {exc}")
    return servers
