"""Repairing skipped input: read a range of offsets of one partition directly from the broker.

faust-streaming can commit an input offset whose message never reached the agent (seen
here after ``kill -9`` and restart: a contiguous range of queries committed but never
processed). The router records the next offset it expects per input partition in its
changelog-backed progress table; when the first message it receives for a partition after
an assignment lies beyond that, the messages in between are read here and routed first.
"""

from __future__ import annotations

import time

from streams.router import Record


def read_range(kafka_conf: dict[str, str], topic: str, partition: int, start: int, stop: int,
               timeout: float = 30.0) -> list[Record]:
    """The records at offsets [start, stop) of ``topic``/``partition`` (fewer if the log no longer has them)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka_conf, "group.id": "unused-gap-reader", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, partition, start)])
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if message.offset() >= stop:
                break
            records.append(Record(topic, partition, message.offset(), message.key(), message.value()))
            if message.offset() + 1 >= stop:
                break
    finally:
        consumer.close()
    return records


def log_start(kafka_conf: dict[str, str], topic: str, partition: int, timeout: float = 10.0) -> int:
    """The first offset ``topic``/``partition`` still holds (where routing starts when nothing was routed)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka_conf, "group.id": "unused-gap-reader"})
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        return low
    finally:
        consumer.close()
