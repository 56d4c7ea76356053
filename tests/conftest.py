"""What every test that needs something outside the code shares: the test broker's address, the
skip-or-fail rule and the ``bootstrap`` fixture (integration and operations tests).

A missing broker, data set or tool never passes silently: under CI (``CI=true``) the test fails
with the reason; on a developer machine it is skipped with the reason (``pytest -rs`` lists them).
Helpers import this module as ``conftest`` (pytest puts tests/ on sys.path for it).
"""

from __future__ import annotations

import os

import pytest

from streams.kafka import broker_answers

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


def unavailable(reason: str) -> None:
    """Fail under CI, skip loudly elsewhere, with ``reason``."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"NOT RUNNABLE: {reason}", pytrace=False)
    pytest.skip(f"NOT RUN: {reason}")


def require_broker() -> str:
    """The test broker's address; :func:`unavailable` when no broker answers there."""
    if not broker_answers({"bootstrap.servers": BOOTSTRAP}, timeout=5.0):
        unavailable(f"no Kafka broker answers at {BOOTSTRAP} (run scripts/kafka.sh start or set KAFKA_BOOTSTRAP)")
    return BOOTSTRAP


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The test broker's address (scripts/kafka.sh start), once it answers."""
    return require_broker()
