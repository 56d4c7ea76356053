"""Topic layout and idempotent topic creation (the AdminClient comes from streams.kafka)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streams import kafka
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
    from confluent_kafka.admin import NewTopic

    admin = kafka.admin_client(config.kafka.confluent())
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
