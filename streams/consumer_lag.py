"""Consumer lag read from the broker: each group's committed offsets against the partitions' watermarks.

Read by the metrics exporter (streams.metrics.LagMonitor) and by ``port-router lag``
(streams/tools/lag.py). The clients come from streams.kafka; the watermarks are read there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from streams import kafka


@dataclass(frozen=True)
class PartitionLag:
    """The lag of one consumer group on one topic partition."""

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has not committed an offset on this partition
    low: int
    high: int

    @property
    def lag(self) -> int:
        """Messages the group has not consumed yet (from ``low`` when it never committed)."""
        return partition_lag(self.committed, self.low, self.high)


def partition_lag(committed: int | None, low: int, high: int) -> int:
    """High watermark minus the committed offset. Without a commit the group would start at the
    low watermark (``auto.offset.reset=earliest``); a commit below ``low`` points at deleted
    messages, so counting starts at ``low`` too."""
    start = low if committed is None or committed < 0 else max(committed, low)
    return max(0, high - start)


class LagReader:
    """Reads committed offsets per group (an AdminClient) and watermarks per partition (a Consumer)."""

    def __init__(self, kafka_conf: dict[str, str], timeout: float = 10.0, admin: Any = None) -> None:
        self.admin = kafka.admin_client(kafka_conf) if admin is None else admin
        self.kafka_conf = kafka_conf
        self.timeout = timeout
        self._watermark_client: Any = None

    def groups(self, prefix: str = "") -> list[str]:
        """Consumer groups on the cluster whose id starts with ``prefix``, sorted."""
        listing = self.admin.list_consumer_groups(request_timeout=self.timeout).result(self.timeout)
        return sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix))

    def read(self, groups: Sequence[str]) -> list[PartitionLag]:
        """The lag of every partition of every topic on which one of ``groups`` committed offsets."""
        committed = {group: self._committed(group) for group in groups}
        topics = sorted({topic for offsets in committed.values() for topic, _ in offsets})
        partitions = self._partitions(topics)
        marks = {(t, p): self._watermarks(t, p) for t in topics for p in range(partitions.get(t, 0))}
        rows = []
        for group in groups:
            group_topics = sorted({topic for topic, _ in committed[group]})
            for topic in group_topics:
                for partition in range(partitions.get(topic, 0)):
                    low, high = marks[topic, partition]
                    rows.append(PartitionLag(group, topic, partition, committed[group].get((topic, partition)),
                                             low, high))
        return rows

    def _committed(self, group: str) -> dict[tuple[str, int], int]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        futures = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                         request_timeout=self.timeout)
        result = futures[group].result(self.timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions
                if tp.error is None and tp.offset >= 0}

    def _partitions(self, topics: Sequence[str]) -> dict[str, int]:
        if not topics:
            return {}
        metadata = self.admin.list_topics(timeout=self.timeout).topics
        return {t: len(metadata[t].partitions) for t in topics if t in metadata}

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        if self._watermark_client is None:
            self._watermark_client = kafka.consumer(self.kafka_conf, "unused-lag-reader")
        return kafka.watermarks(self._watermark_client, topic, partition, self.timeout)
