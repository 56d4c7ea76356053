"""The router's input: the queries topic, read from positions the service owns.

faust-streaming's consumer decided what reached the router and which offsets were
committed, and it lost and stalled input under restarts (docs/STREAMS.md, "Crash and
restart behaviour"). The router therefore reads the queries topic with its own
confluent-kafka consumer, assigned by hand (no group subscription) to exactly the
partitions whose state Faust gave this process, starting at the next offset recorded in
the changelog-backed ``progress`` table. Committed offsets are written only as a hint
for lag dashboards, under their own group id.

``InputPositions`` is the pure bookkeeping (continuity of every partition, checked on
every batch); ``QueryInput`` is the Kafka client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from streams import kafka
from streams.service.messages import Record

log = logging.getLogger(__name__)


@dataclass
class Polled:
    """One poll of the queries topic: its records, {partition: end offset} for the partitions whose end
    was reached, and when it began."""

    records: list[Record]
    ends: dict[int, int]
    moves: int  # ``InputMoves.count`` when the poll began


@dataclass
class Accepted:
    """What the continuity check made of one polled batch."""

    records: list[Record] = field(default_factory=list)  # contiguous, in order, ready to route
    rewind: dict[int, int] = field(default_factory=dict)  # partition -> offset to seek back to
    holes: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> confirmed [start, stop)


class InputPositions:
    """The next offset to route per held partition, and the continuity check of every batch.

    A partition's position is None until its first record when nothing was ever routed from
    it (reading starts at the log's beginning). A record beyond the expected offset is a
    discontinuity: the batch is cut there and the partition is read again from the expected
    offset. Only when the re-read starts at that same offset again is the hole accepted (the
    broker no longer has those offsets, e.g. retention deleted them or they were transaction
    markers), and reported.

    Two positions per partition: ``next``, the one recorded as progress (every batch below it is
    persisted), and ``decided``, where the next batch to decide continues (ahead of ``next`` while
    decided batches are still being persisted); the continuity check follows ``decided``.
    """

    def __init__(self) -> None:
        self.next: dict[int, int | None] = {}
        self.decided: dict[int, int | None] = {}
        self._suspect: dict[int, tuple[int, int]] = {}  # partition -> (expected, seen instead)

    def hold(self, positions: dict[int, int | None]) -> None:
        """Start tracking ``positions`` (replaces the previous assignment)."""
        self.next = dict(positions)
        self.decided = dict(positions)
        self._suspect.clear()

    def restart(self) -> None:
        """Forget the decided batches not recorded as progress: deciding continues from ``next`` (a re-read)."""
        self.decided = dict(self.next)

    def held(self) -> set[int]:
        """The partitions tracked."""
        return set(self.next)

    def accept(self, records: Iterable[Record]) -> Accepted:
        """Split a polled batch into the contiguous records to route and the partitions to re-read."""
        out = Accepted()
        expected = dict(self.decided)
        for record in records:
            p = record.partition
            if p not in expected or p in out.rewind:
                continue  # not held (any more), or already cut in this batch
            want = expected[p]
            if want is not None and record.offset < want:
                continue  # read before: a seek back re-delivered it
            if want is not None and record.offset > want:
                if self._suspect.get(p) != (want, record.offset):
                    self._suspect[p] = (want, record.offset)
                    out.rewind[p] = want
                    continue
                out.holes[p] = (want, record.offset)
            self._suspect.pop(p, None)
            out.records.append(record)
            expected[p] = record.offset + 1
        return out

    def decide(self, records: Sequence[Record], ends: dict[int, int]) -> dict[int, int]:
        """``records`` (accepted) are decided and the consumer reached the ``ends`` of partitions: move the
        decided positions past them; return the positions the batch's progress will record."""
        moved = _past(records, self.decided)
        _raise(self.decided, moved)
        _raise(self.decided, ends)
        return moved

    def advance(self, records: Sequence[Record]) -> dict[int, int]:
        """Move the positions past ``records`` (routed); return the new positions of their partitions."""
        moved = _past(records, self.next)
        self.next.update(moved)
        _raise(self.decided, moved)
        return moved

    def at_end(self, partition: int, offset: int) -> None:
        """The consumer reached the end of ``partition`` at ``offset``: nothing lies before it unread."""
        current = self.next.get(partition, -1)
        if partition in self.next and (current is None or offset > current):
            log.debug("partition %d: end of log at %d (position %s)", partition, offset, current)
            self.next[partition] = offset
        _raise(self.decided, {partition: offset})


def _past(records: Sequence[Record], held: dict[int, int | None]) -> dict[int, int]:
    """{partition: the offset after its last record} over ``records`` of the ``held`` partitions."""
    moved: dict[int, int] = {}
    for record in records:
        if record.partition in held:
            moved[record.partition] = max(moved.get(record.partition, 0), record.offset + 1)
    return moved


def _raise(positions: dict[int, int | None], to: dict[int, int]) -> None:
    """Move the held ``positions`` forward to ``to`` where that is ahead (a None position is behind everything)."""
    for partition, offset in to.items():
        current = positions.get(partition, -1)
        if partition in positions and (current is None or offset > current):
            positions[partition] = offset


class InputMoves:
    """Counts the seeks and assignments of an input, so that a batch polled while one happened (the next
    batch is polled while the routing loop decides the previous one and may seek) drops what the new
    position reads again. A move is counted once it took effect."""

    def __init__(self) -> None:
        self.count = 0
        self.sought: dict[int, int] = {}  # partition -> the count after its latest seek
        self.assigned = 0  # the count after the latest assignment

    def seek(self, partition: int) -> None:
        """``partition`` was sought."""
        self.count += 1
        self.sought[partition] = self.count

    def assign(self) -> None:
        """The input was assigned anew (every partition moved)."""
        self.count += 1
        self.assigned = self.count

    def current(self, polled: Polled) -> tuple[list[Record], dict[int, int]]:
        """``polled``'s records and ends without those of the partitions sought or assigned since its poll
        began: the new position reads those records again, and an end seen before it would skip them."""
        if self.assigned > polled.moves:
            return [], {}
        stale = {p for p, count in self.sought.items() if count > polled.moves}
        if not stale:
            return polled.records, polled.ends
        return ([r for r in polled.records if r.partition not in stale],
                {p: o for p, o in polled.ends.items() if p not in stale})


class QueryInput:
    """A confluent-kafka consumer of the queries topic, assigned by hand at given positions."""

    def __init__(self, kafka_conf: dict[str, str], topic: str, hint_group: str) -> None:
        self.topic = topic
        self.consumer = kafka.consumer(kafka_conf, hint_group, **{
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "enable.partition.eof": True})
        self.moves = InputMoves()

    def assign(self, positions: dict[int, int | None]) -> None:
        """Read exactly these partitions, each from its offset (None: from the log's beginning)."""
        kafka.assign(self.consumer, self.topic, positions)
        self.moves.assign()

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` again from ``offset``."""
        from confluent_kafka import TopicPartition

        self.consumer.seek(TopicPartition(self.topic, partition, offset))
        self.moves.seek(partition)

    def poll(self, max_records: int, timeout: float) -> Polled:
        """Up to ``max_records`` records (waiting at most ``timeout`` s), and {partition: end offset}
        for the partitions whose end was reached."""
        from confluent_kafka import KafkaError

        moves = self.moves.count
        records: list[Record] = []
        ends: dict[int, int] = {}
        for message in self.consumer.consume(max_records, timeout):
            error = message.error()
            if error is None:
                records.append(Record(message.topic(), message.partition(), message.offset(), message.key(),
                                      message.value()))
            elif error.code() == KafkaError._PARTITION_EOF:
                ends[message.partition()] = message.offset()
            else:
                log.warning("queries consumer: %s", error)
        return Polled(records, ends, moves)

    def broker_view(self, partitions: Iterable[int], timeout: float = 5.0) -> tuple[dict[int, int], dict[int, int]]:
        """({partition: the broker's end offset}, {partition: the hint group's committed offset}, where
        one was committed) for ``partitions``: what the watchdog compares."""
        from confluent_kafka import TopicPartition

        partitions = list(partitions)
        ends = {p: kafka.watermarks(self.consumer, self.topic, p, timeout)[1] for p in partitions}
        committed = self.consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=timeout)
        return ends, {tp.partition: tp.offset for tp in committed if tp.offset >= 0}

    def commit_hint(self, positions: dict[int, int]) -> None:
        """Record ``positions`` as the hint group's committed offsets (for lag dashboards only)."""
        from confluent_kafka import TopicPartition

        if positions:
            self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in positions.items()],
                                 asynchronous=True)

    def close(self) -> None:
        """Leave the broker."""
        self.consumer.close()
