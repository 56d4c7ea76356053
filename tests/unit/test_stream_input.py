"""The router's input bookkeeping without Kafka: continuity of every partition, stall clocks."""

from __future__ import annotations

from streams.service.query_input import InputMoves, InputPositions, Polled
from streams.service.messages import Record
from streams.service.watchdog import StallWatchdog


def records(partition: int, *offsets: int) -> list[Record]:
    return [Record("q", partition, o, None, b"{}") for o in offsets]


def test_contiguous_records_are_accepted_and_advance_the_position() -> None:
    positions = InputPositions()
    positions.hold({0: 5, 1: None})
    accepted = positions.accept(records(0, 5, 6, 7) + records(1, 0, 1))
    assert [(r.partition, r.offset) for r in accepted.records] == [(0, 5), (0, 6), (0, 7), (1, 0), (1, 1)]
    assert not accepted.rewind and not accepted.holes
    assert positions.advance(accepted.records) == {0: 8, 1: 2}
    assert positions.next == {0: 8, 1: 2}


def test_a_skipped_offset_cuts_the_batch_and_rereads_from_the_expected_offset() -> None:
    positions = InputPositions()
    positions.hold({0: 5})
    accepted = positions.accept(records(0, 7, 8))
    assert accepted.records == [] and accepted.rewind == {0: 5}
    # The re-read returns the skipped offsets: routed in order.
    accepted = positions.accept(records(0, 5, 6, 7))
    assert [r.offset for r in accepted.records] == [5, 6, 7] and not accepted.rewind


def test_a_hole_confirmed_by_the_reread_is_accepted_and_reported() -> None:
    positions = InputPositions()
    positions.hold({0: 5})
    assert positions.accept(records(0, 9)).rewind == {0: 5}
    accepted = positions.accept(records(0, 9, 10))
    assert [r.offset for r in accepted.records] == [9, 10]
    assert accepted.holes == {0: (5, 9)}


def test_a_gap_inside_a_batch_keeps_the_prefix_and_rereads_the_rest() -> None:
    positions = InputPositions()
    positions.hold({0: 0, 1: 0})
    accepted = positions.accept(records(0, 0, 1, 3) + records(1, 0))
    assert [(r.partition, r.offset) for r in accepted.records] == [(0, 0), (0, 1), (1, 0)]
    assert accepted.rewind == {0: 2}


def test_records_of_partitions_not_held_or_read_before_are_dropped() -> None:
    positions = InputPositions()
    positions.hold({0: 5})
    accepted = positions.accept(records(0, 3, 4, 5) + records(1, 0))
    assert [(r.partition, r.offset) for r in accepted.records] == [(0, 5)]


def test_end_of_log_moves_the_position_forward_only() -> None:
    positions = InputPositions()
    positions.hold({0: 5, 1: None})
    positions.at_end(0, 8)  # e.g. transaction markers after the last record
    positions.at_end(0, 3)
    positions.at_end(1, 0)
    positions.at_end(2, 4)  # not held
    assert positions.next == {0: 8, 1: 0}


def test_watchdog_counts_only_lag_without_progress() -> None:
    dog = StallWatchdog(timeout_s=10)
    assert dog.check(0.0, {0: 5, 1: 0}, {0: 9, 1: 0}, paused=False) == []
    assert dog.check(9.0, {0: 5, 1: 0}, {0: 9, 1: 0}, paused=False) == []
    assert dog.stalled_seconds() == {0: 9.0}
    assert dog.check(10.0, {0: 5, 1: 0}, {0: 9, 1: 3}, paused=False) == [0]
    assert dog.healthy()
    assert dog.check(20.0, {0: 5, 1: 3}, {0: 9, 1: 3}, paused=False) == [0]
    assert not dog.healthy()
    assert dog.check(21.0, {0: 6, 1: 3}, {0: 9, 1: 3}, paused=False) == []  # it moved
    assert dog.healthy() and dog.stalled_seconds() == {}


def test_watchdog_ignores_a_deliberate_pause_and_forgets_revoked_partitions() -> None:
    dog = StallWatchdog(timeout_s=10)
    dog.check(0.0, {0: 5}, {0: 9}, paused=False)
    assert dog.check(30.0, {0: 5}, {0: 9}, paused=True) == []
    assert dog.check(35.0, {0: 5}, {0: 9}, paused=False) == []
    assert dog.check(100.0, {}, {}, paused=False) == [] and dog.healthy()


def test_watchdog_reset_forgets_the_clocks() -> None:
    dog = StallWatchdog(timeout_s=10)
    dog.check(0.0, {0: 5}, {0: 9}, paused=False)
    dog.check(25.0, {0: 5}, {0: 9}, paused=False)
    assert not dog.healthy()
    dog.reset()  # e.g. the broker did not answer
    assert dog.healthy() and dog.check(26.0, {0: 5}, {0: 9}, paused=False) == []


class FlakyConsumer:
    """Answers get_watermark_offsets with ``failures`` retriable errors first."""

    def __init__(self, failures: int, code: int) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def get_watermark_offsets(self, tp, timeout):  # noqa: ANN001, ANN201
        from confluent_kafka import KafkaError, KafkaException

        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(self.code))
        return 3, 9


def test_watermarks_retry_a_partition_without_leader_but_not_other_errors() -> None:
    import pytest
    from confluent_kafka import KafkaError, KafkaException

    from streams.kafka import watermarks

    flaky = FlakyConsumer(2, KafkaError.NOT_LEADER_FOR_PARTITION)
    assert watermarks(flaky, "t", 0, timeout=5) == (3, 9) and flaky.calls == 3
    with pytest.raises(KafkaException):
        watermarks(FlakyConsumer(1, KafkaError.TOPIC_AUTHORIZATION_FAILED), "t", 0, timeout=5)


def test_the_next_batch_is_accepted_after_the_decided_position_and_a_reread_forgets_it() -> None:
    positions = InputPositions()
    positions.hold({0: 5})
    first = positions.accept(records(0, 5, 6))
    assert positions.decide(first.records, {}) == {0: 7}
    second = positions.accept(records(0, 7, 8))  # decided while the first is still being persisted
    assert [r.offset for r in second.records] == [7, 8] and not second.rewind
    assert positions.decide(second.records, {0: 9}) == {0: 9}
    assert positions.next == {0: 5}  # nothing recorded yet
    assert positions.advance(first.records) == {0: 7}
    positions.restart()  # the second batch's persist failed: decide again from the recorded position
    assert positions.accept(records(0, 7)).records == records(0, 7)
    assert positions.accept(records(0, 9)).rewind == {0: 7}


def test_a_batch_polled_across_a_seek_drops_the_sought_partitions_records_and_ends() -> None:
    moves = InputMoves()
    polled = Polled([*records(0, 5), *records(1, 7), *records(0, 6)], {0: 7, 1: 8}, moves.count)
    assert moves.current(polled) == (polled.records, polled.ends)  # nothing moved since the poll began
    moves.seek(1)  # the loop cut partition 1 while this batch was being polled
    assert moves.current(polled) == (records(0, 5, 6), {0: 7})
    later = Polled(records(1, 3), {}, moves.count)  # polled after the seek: current
    assert moves.current(later) == (records(1, 3), {})


def test_a_batch_polled_across_an_assignment_is_dropped_whole() -> None:
    moves = InputMoves()
    polled = Polled(records(0, 5), {0: 6}, moves.count)
    moves.assign()
    assert moves.current(polled) == ([], {})
    assert moves.current(Polled(records(0, 0), {}, moves.count)) == (records(0, 0), {})
