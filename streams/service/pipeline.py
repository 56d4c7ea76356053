"""The decided batches still being persisted, in input order, at most ``depth`` of them.

The routing loop decides batch n+1 while batch n's changelog flush, sends and progress are
awaited. Each batch's persist is one task; the chain keeps the order the guarantees need:
a batch hands its outputs to the producer only after the batch before it did (``sent``), and
records its progress only after the batch before it recorded its own (``task``), so a
recorded position never lies beyond an unacknowledged output. A batch whose predecessor
failed records nothing: the loop re-reads from the last recorded position.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable


@dataclass
class InFlight:
    """One decided batch between its decisions and its recorded progress."""

    sent: asyncio.Future[None]  # done once its outputs are handed to the producer (or it gave up)
    task: asyncio.Task[bool]  # True once its progress is recorded


class BatchPipeline:
    """Persists of decided batches, chained in order, at most ``depth`` in flight."""

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"the pipeline depth must be at least 1, got {depth}")
        self.depth = depth
        self.batches: deque[InFlight] = deque()

    def start(self, persist: Callable[[InFlight | None, asyncio.Future[None]], Awaitable[bool]]) -> None:
        """Start persisting the newest decided batch: ``persist(previous, sent)`` must resolve ``sent``
        once its outputs are handed to the producer, and await ``previous`` before recording progress.
        (Not pruned here: a batch that failed since ``room`` must still be seen by its successor.)"""
        previous = self.batches[-1] if self.batches else None
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.batches.append(InFlight(sent, asyncio.ensure_future(persist(previous, sent))))

    async def room(self) -> None:
        """Wait until fewer than ``depth`` batches are in flight."""
        self._prune()
        while len(self.batches) >= self.depth:
            await asyncio.wait([self.batches[0].task])
            self._prune()

    async def drain(self) -> None:
        """Wait until every batch in flight is persisted (or failed)."""
        while self.batches:
            await asyncio.wait([self.batches[0].task])
            self._prune()

    def _prune(self) -> None:
        while self.batches and self.batches[0].task.done():
            self.batches.popleft()


async def after(previous: InFlight | None) -> bool:
    """Whether every batch before this one recorded its progress (waits for the one just before)."""
    return previous is None or await asyncio.shield(previous.task)


async def sent_before(previous: InFlight | None) -> None:
    """Wait until the batch before this one handed its outputs to the producer."""
    if previous is not None:
        await asyncio.shield(previous.sent)
