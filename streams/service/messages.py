"""The Kafka messages the router reads and writes, as plain values (no client types)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """One consumed Kafka message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Outgoing:
    """A message to produce (value is JSON bytes)."""

    topic: str
    key: str | None
    value: bytes
    partition: int | None = None
    label: tuple[str, str] | None = None  # a new decision: ("routed", model/phase), ("unserved", reason)
    # or ("handed-over", target partition)
