"""The chain of decided batches being persisted: order of sends and of recorded progress, depth, failures."""

from __future__ import annotations

import asyncio

import pytest

from streams.service.pipeline import BatchPipeline, InFlight, after, sent_before


def test_batches_send_and_record_in_order_and_a_failure_stops_the_ones_after_it() -> None:
    events: list[str] = []
    gates = {n: asyncio.Event() for n in range(3)}

    def batch(n: int, fails: bool = False):
        async def persist(previous: InFlight | None, sent: asyncio.Future[None]) -> bool:
            await gates[n].wait()  # the batch's changelog flush
            await sent_before(previous)
            events.append(f"send {n}")
            sent.set_result(None)
            if fails:
                return False
            if not await after(previous):
                return False
            events.append(f"progress {n}")
            return True
        return persist

    async def main() -> list[bool]:
        pipeline = BatchPipeline(depth=3)
        for n, fails in ((0, False), (1, True), (2, False)):
            await pipeline.room()
            pipeline.start(batch(n, fails))
        tasks = [b.task for b in pipeline.batches]
        for n in (2, 1, 0):  # the flushes finish in reverse order
            gates[n].set()
            await asyncio.sleep(0)
        await pipeline.drain()
        assert not pipeline.batches
        return [t.result() for t in tasks]

    assert asyncio.run(main()) == [True, False, False]
    assert events == ["send 0", "progress 0", "send 1", "send 2"]


def test_room_waits_for_the_oldest_batch_at_the_depth() -> None:
    async def main() -> tuple[bool, bool]:
        pipeline = BatchPipeline(depth=1)
        release = asyncio.Event()

        async def persist(previous: InFlight | None, sent: asyncio.Future[None]) -> bool:
            sent.set_result(None)
            await release.wait()
            return True

        pipeline.start(persist)
        waiting = asyncio.ensure_future(pipeline.room())
        await asyncio.sleep(0.01)
        blocked = not waiting.done()
        release.set()
        await asyncio.wait_for(waiting, 10)
        return blocked, waiting.done()

    assert asyncio.run(main()) == (True, True)
    with pytest.raises(ValueError):
        BatchPipeline(depth=0)
