"""Every confluent-kafka client of the project, built in one place, and the offset helpers.

Callers pass the connection settings of the typed configuration (``config.kafka.confluent()``:
bootstrap servers and security) and name only what differs for their use (group, acks, ...).
Faust's own aiokafka clients (streams/service/app.py) are the one exception.
Watermarks are read one way (:func:`watermarks`, with its retry) by every tool and service.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

# librdkafka's own log lines of a probe client go here, and nowhere else.
_QUIET = logging.getLogger("port_router.broker_probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answers, or the broker does not acknowledge what was sent (one-line message)."""


def admin_client(kafka_conf: dict[str, str], **settings: Any) -> Any:
    """A confluent-kafka AdminClient with the connection settings ``kafka_conf`` and ``settings``."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({**kafka_conf, **settings})


def consumer(kafka_conf: dict[str, str], group: str, **settings: Any) -> Any:
    """A confluent-kafka Consumer in ``group`` that never commits on its own (``enable.auto.commit``
    false unless ``settings`` say otherwise); ``settings`` add or override librdkafka settings."""
    from confluent_kafka import Consumer

    return Consumer({**kafka_conf, "group.id": group, "enable.auto.commit": False, **settings})


def producer(kafka_conf: dict[str, str], **settings: Any) -> Any:
    """A confluent-kafka Producer that waits for every in-sync replica (``acks=all``, unless
    ``settings`` say otherwise); ``settings`` add or override librdkafka settings."""
    from confluent_kafka import Producer

    return Producer({**kafka_conf, "acks": "all", **settings})


def broker_problem(kafka_conf: dict[str, str], timeout: float) -> str | None:
    """None when a broker answers a metadata request within ``timeout`` s, else why not. Quiet:
    librdkafka's connection errors (e.g. "Connection refused" while no broker runs) are not logged."""
    from confluent_kafka import KafkaException

    try:
        admin_client(kafka_conf, log_level=0, logger=_QUIET).list_topics(timeout=timeout)
        return None
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        return error.str() if hasattr(error, "str") else str(exc)


def broker_answers(kafka_conf: dict[str, str], timeout: float = 3.0) -> bool:
    """True when a broker answers a metadata request (quietly, see :func:`broker_problem`)."""
    return broker_problem(kafka_conf, timeout) is None


def require_broker(kafka_conf: dict[str, str], timeout: float = 10.0) -> None:
    """Return once a broker answers a metadata request; else raise BrokerUnavailable naming the servers."""
    problem = broker_problem(kafka_conf, timeout)
    if problem is not None:
        raise BrokerUnavailable(f"no Kafka broker answers at {kafka_conf['bootstrap.servers']} within {timeout:g}s "
                                f"({problem}); check kafka.bootstrap_servers and the security settings")


def assign(client: Any, topic: str, positions: dict[int, int | None]) -> None:
    """Assign ``client`` (a Consumer) exactly these partitions of ``topic``, each from its offset
    (None: from the log's beginning)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    client.assign([TopicPartition(topic, p, OFFSET_BEGINNING if o is None else o) for p, o in sorted(positions.items())])


def partitions(client: Any, topic: str, timeout: float) -> list[int]:
    """The partition numbers of ``topic`` (``client``: a Consumer or an AdminClient)."""
    return sorted(client.list_topics(topic, timeout=timeout).topics[topic].partitions)


def watermarks(client: Any, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    """(low, high) watermark of ``topic``/``partition`` (``client``: a Consumer), retrying while the broker
    answers with a retriable error (e.g. NOT_LEADER_FOR_PARTITION just after a topic was created or the
    broker restarted)."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = getattr(error, "retriable", lambda: False)() or getattr(error, "code", lambda: None)() in (
                KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TRANSPORT)
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def group_members(admin: Any, group: str, timeout: float = 10.0) -> int:
    """Members of consumer group ``group`` now (0 when it has none or the broker does not know it), asked through
    ``admin`` (an ``admin_client``)."""
    description = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout)
    return len(description.members)


def topic_size(kafka_conf: dict[str, str], topic: str, timeout: float = 10.0) -> int:
    """Messages currently in ``topic``: the sum over its partitions of high minus low watermark."""
    client = consumer(kafka_conf, "unused-topic-size")
    try:
        total = 0
        for partition in partitions(client, topic, timeout):
            low, high = watermarks(client, topic, partition, timeout)
            total += high - low
        return total
    finally:
        client.close()


def read_to_end(kafka_conf: dict[str, str], topic: str, timeout: float = 30.0) -> Iterator[Any]:
    """Every message now in ``topic`` (confluent-kafka Messages, all partitions, up to the high watermarks read
    at the start); stops early when ``timeout`` passes."""
    client = consumer(kafka_conf, "unused-read-to-end")
    try:
        starts, ends = {}, {}
        for p in partitions(client, topic, timeout):
            starts[p], ends[p] = watermarks(client, topic, p, timeout)
        ends = {p: high for p, high in ends.items() if high > starts[p]}
        assign(client, topic, {p: starts[p] for p in ends})
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for message in client.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
                yield message
    finally:
        client.close()


def follow(kafka_conf: dict[str, str], topics: list[str], group: str, handle: Callable[[Any], None],
           done: Callable[[], bool], timeout: float, tick: Callable[[], None] | None = None) -> bool:
    """Read ``topics`` from their beginning in a fresh ``group``, passing each valid message to ``handle``,
    until ``done()`` (checked after every batch; True) or ``timeout`` seconds pass (False). ``tick`` runs
    after every batch (e.g. to refresh a progress line)."""
    client = consumer(kafka_conf, group, **{"auto.offset.reset": "earliest"})
    client.subscribe(topics)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for message in client.consume(500, timeout=0.5):
                if message.error() is None:
                    handle(message)
            if tick is not None:
                tick()
            if done():
                return True
        return False
    finally:
        client.close()


def produce_with_retry(client: Any, topic: str, key: bytes | None, value: bytes) -> None:
    """``client.produce`` (a Producer) that waits for room when the local queue is full."""
    while True:
        try:
            client.produce(topic, key=key, value=value)
            client.poll(0)
            return
        except BufferError:
            client.poll(0.1)
