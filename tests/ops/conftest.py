"""Fixtures of the operations tests (helpers are in opstools.py)."""

from __future__ import annotations

import os

import pytest

from opstools import unavailable


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The test broker's address (scripts/kafka.sh start); unavailable() when it does not answer."""
    servers = os.environ.get("KAFKA_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": servers}).list_topics(timeout=5)
    except Exception as exc:
        unavailable(f"no Kafka broker answers on {servers} (start it with scripts/kafka.sh start): {exc}")
    return servers
