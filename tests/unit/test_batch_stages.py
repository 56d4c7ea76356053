"""The router's per-batch stage accounting (the /state page) and bench-stream's per-batch means."""

from __future__ import annotations

from streams.service.batch_stages import BatchStages, Stopwatch, per_batch


def test_laps_are_consecutive_and_add_up():
    watch = Stopwatch()
    watch.lap("a")
    watch.lap("b")
    watch.lap("a")
    assert set(watch.laps) == {"a", "b"} and all(v >= 0 for v in watch.laps.values())


def test_per_batch_means_come_from_the_difference_of_two_snapshots_over_every_process():
    one, two = BatchStages(), BatchStages()
    one.add(10, {"prepare": 1.0, "flush": 0.5})
    before = [one.snapshot(), two.snapshot()]
    one.add(30, {"prepare": 0.3, "flush": 0.1})
    two.add(10, {"prepare": 0.1, "flush": 0.3})
    after = [one.snapshot(), two.snapshot()]
    assert per_batch(before, after) == {"batch_size": 20.0, "flush_ms": 200.0, "prepare_ms": 200.0}
    assert per_batch(after, after) == {}
