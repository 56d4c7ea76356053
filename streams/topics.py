"""Topic layout and idempotent topic creation with confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

from streams.config import ServiceConfig

log = logging.getLogger(__name__)

QUERIES = "queries"
OBSERVATIONS = "observations"
WEIGHTS = "weights"
COMPLETIONS = "completions"
UNSERVED = "unserved"
DLQ = "dlq"


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: name, partitions and topic-level configs."""

    name: str
    partitions: int
    configs: dict[str, str]


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answers, or the broker does not acknowledge what was sent (one-line message)."""


def require_broker(kafka_conf: dict[str, str], timeout: float = 10.0) -> None:
    """Return once a broker answers a metadata request; else raise BrokerUnavailable naming the servers."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({**kafka_conf, "log_level": 0}).list_topics(timeout=timeout)  # log_level 0: no librdkafka lines
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        detail = error.str() if hasattr(error, "str") else str(exc)
        raise BrokerUnavailable(f"no Kafka broker answers at {kafka_conf['bootstrap.servers']} within {timeout:g}s "
                                f"({detail}); check kafka.bootstrap_servers and the security settings") from exc


def topic_specs(config: ServiceConfig) -> list[TopicSpec]:
    """Every topic the service uses. Completions share the queries' partitioning (the reconciler
    updates the budget of the query's input partition); weights is compacted."""
    t = config.topics
    specs = [
        TopicSpec(t.name(QUERIES), t.query_partitions, {}),
        TopicSpec(t.name(COMPLETIONS), t.query_partitions, {}),
        TopicSpec(t.name(OBSERVATIONS), 1, {}),
        TopicSpec(t.name(WEIGHTS), 1, {"cleanup.policy": "compact"}),
        TopicSpec(t.name(UNSERVED), t.query_partitions, {}),
        TopicSpec(t.name(DLQ), 1, {}),
    ]
    specs += [TopicSpec(config.routed_topic(m.name), t.routed_partitions, {}) for m in config.models]
    return specs


def create_topics(config: ServiceConfig, timeout: float = 30.0, specs: list[TopicSpec] | None = None
                  ) -> dict[str, str]:
    """Create the missing topics (default: every topic of the service); return {topic: 'created' |
    'exists'}. Raises on other errors, and when an existing topic's partition count differs."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(config.kafka.confluent())
    existing = admin.list_topics(timeout=timeout).topics
    result: dict[str, str] = {}
    new = []
    for spec in topic_specs(config) if specs is None else specs:
        if spec.name in existing:
            have = len(existing[spec.name].partitions)
            if have != spec.partitions:
                raise RuntimeError(f"topic {spec.name} exists with {have} partitions, the configuration says "
                                   f"{spec.partitions}; delete it or change the configuration")
            result[spec.name] = "exists"
        else:
            new.append(NewTopic(spec.name, num_partitions=spec.partitions,
                                replication_factor=config.topics.replication_factor, config=spec.configs))
    if new:
        for name, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result()
                result[name] = "created"
            except Exception as exc:  # confluent-kafka raises KafkaException wrapping a KafkaError
                error = exc.args[0] if exc.args else None
                if getattr(error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                    result[name] = "exists"
                else:
                    raise
    for name, state in sorted(result.items()):
        log.info("topic %s: %s", name, state)
    return result


def topic_size(kafka_conf: dict[str, str], topic: str, timeout: float = 10.0) -> int:
    """Messages currently in ``topic``: the sum over its partitions of high minus low watermark."""
    from confluent_kafka import Consumer

    consumer = Consumer({**kafka_conf, "group.id": "unused-topic-size"})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        total = 0
        for partition in partitions:
            low, high = watermarks(consumer, topic, partition, timeout)
            total += high - low
        return total
    finally:
        consumer.close()


def watermarks(consumer: Any, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    """(low, high) watermark of ``topic``/``partition``, retrying while the broker answers with a retriable
    error (e.g. NOT_LEADER_FOR_PARTITION just after a topic was created or the broker restarted)."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = getattr(error, "retriable", lambda: False)() or getattr(error, "code", lambda: None)() in (
                KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TRANSPORT)
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_to_end(kafka_conf: dict[str, str], topic: str, timeout: float = 30.0) -> Iterator[Any]:
    """Every message now in ``topic`` (confluent-kafka Messages, all partitions, up to the high watermarks read
    at the start); stops early when ``timeout`` passes."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka_conf, "group.id": "unused-read-to-end", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        starts, ends = {}, {}
        for p in partitions:
            starts[p], ends[p] = watermarks(consumer, topic, p, timeout)
        ends = {p: high for p, high in ends.items() if high > starts[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
                yield message
    finally:
        consumer.close()
