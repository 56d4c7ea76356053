"""flush_changelog waits for what Faust's own producer flush can leave behind (a double of Faust's buffer: its
queue, its sender task and its flush that gives up after 0.1 s without progress)."""

from __future__ import annotations

import asyncio

from streams.service.service import flush_changelog


class SlowBuffer:
    """Faust's ProducerBuffer as it behaves when aiokafka is slow to take messages."""

    def __init__(self, messages: int, seconds_per_message: float) -> None:
        self.pending: asyncio.Queue = asyncio.Queue()
        for i in range(messages):
            self.pending.put_nowait(i)
        self.state = "running"
        self.seconds = seconds_per_message
        self.handed: list[int] = []
        self.task = asyncio.ensure_future(self._send())

    @property
    def size(self) -> int:
        return self.pending.qsize()

    async def _send(self) -> None:
        while True:
            message = await self.pending.get()
            await asyncio.sleep(self.seconds)  # e.g. aiokafka waits for a full batch to drain
            self.handed.append(message)

    async def flush(self) -> None:  # Faust's: gives up once no message left the buffer for 0.1 s
        while self.size:
            before = len(self.handed)
            await asyncio.sleep(0.1)
            if len(self.handed) == before:
                return


class Producer:
    def __init__(self, buffer: SlowBuffer) -> None:
        self.buffer = buffer
        self.flushed_with: list[int] = []

    async def flush(self) -> None:  # aiokafka's part: what was handed to it is delivered
        await self.buffer.flush()
        self.flushed_with = list(self.buffer.handed)


def test_every_buffered_message_is_handed_over_before_the_flush_returns() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        buffer = SlowBuffer(messages=3, seconds_per_message=0.25)
        producer = Producer(buffer)
        await producer.flush()  # Faust's flush alone returns early
        early = list(producer.flushed_with)
        await flush_changelog(producer)
        buffer.task.cancel()
        return early, producer.flushed_with

    early, complete = asyncio.run(scenario())
    assert len(early) < 3  # the defect the helper exists for
    assert complete == [0, 1, 2]
