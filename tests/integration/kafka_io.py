"""Raw Kafka reads and writes for the hostile-producer tests: exact partitions, keys, tombstones, offsets."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from streams.config import ServiceConfig
from streams.outcomes import OutcomeTally, output_topics
from streams.topics import DLQ, read_to_end

T = TypeVar("T")


@dataclass(frozen=True)
class Message:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Sender:
    """One producer that sends messages exactly as given and reports where each landed."""

    def __init__(self, config: ServiceConfig) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({**config.kafka.confluent(), "acks": "all", "message.max.bytes": 8 * 1024 * 1024})

    def __call__(self, topic: str, key: bytes | None, value: bytes | None,
                 partition: int | None = None) -> tuple[int, int]:
        """Produce one message (``value`` None: a tombstone) and wait for it; return its (partition, offset)."""
        where: list[tuple[int, int]] = []

        def delivered(error: object, message: object) -> None:
            assert error is None, f"not delivered to {topic}: {error}"
            where.append((message.partition(), message.offset()))  # type: ignore[attr-defined]

        extra = {} if partition is None else {"partition": partition}
        self.producer.produce(topic, key=key, value=value, on_delivery=delivered, **extra)
        assert self.producer.flush(60) == 0, f"message to {topic} not acknowledged within 60s"
        return where[0]


def send(config: ServiceConfig, topic: str, key: bytes | None, value: bytes | None,
         partition: int | None = None) -> tuple[int, int]:
    """Produce one message as given (``value`` None: a tombstone); return its (partition, offset)."""
    return Sender(config)(topic, key, value, partition)


def read_all(config: ServiceConfig, topic: str) -> list[Message]:
    """Every message currently in ``topic`` (all partitions, up to their high watermarks)."""
    return [Message(m.partition(), m.offset(), m.key(), m.value()) for m in read_to_end(config.kafka.confluent(), topic)]


def tally_now(config: ServiceConfig) -> OutcomeTally:
    """What the service has decided so far (every output topic read to its current end)."""
    tally = OutcomeTally()
    for topic, kind in output_topics(config).items():
        for message in read_all(config, topic):
            tally.add(kind, json.loads(message.value or b"null"))
    return tally


def dead_letters(config: ServiceConfig, source_topic: str) -> dict[tuple[int, int], dict]:
    """The DLQ letters about ``source_topic``, by the (partition, offset) of the message they reject."""
    letters = [json.loads(m.value or b"null") for m in read_all(config, config.topics.name(DLQ))]
    return {(d["partition"], d["offset"]): d for d in letters if d["source_topic"] == source_topic}


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, poll: float = 0.5) -> T:
    """The first non-None result of ``probe``; fails naming ``what`` when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(poll)
