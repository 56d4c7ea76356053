"""The optimizer's solves off the event loop, at most one in flight.

A solve falls due on the optimizer's schedule (``router_core.controller``), but at a high
decision rate the next one can fall due before the last one returns. ``CoalescingSolver``
runs one solve at a time in its own worker thread; what fell due meanwhile is solved once,
on the newest sample, when the running one returns. At a rate where a solve returns before
the next falls due, this is exactly the schedule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from streams.service.weights import Optimizer

log = logging.getLogger(__name__)


class CoalescingSolver:
    """Runs the optimizer's due solves one at a time; call its methods on the event loop."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optimizer-solve")
        self.task: asyncio.Task[None] | None = None
        self.coalesced = 0  # solves that fell due while one was in flight and were taken together

    def request(self) -> None:
        """A solve is due: start one now, or (one is in flight) take it when that one returns."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())
        else:
            self.coalesced += 1

    async def idle(self) -> None:
        """Wait until no solve is in flight (e.g. before the optimizer resumes from the topic)."""
        while self.task is not None:
            await asyncio.shield(self.task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                job = self.optimizer.job()  # on the loop: in order with the observations accounted
                started = time.perf_counter()
                solution = await loop.run_in_executor(self.executor, self.optimizer.solve, job)
                seconds = time.perf_counter() - started
                await loop.run_in_executor(self.executor, self.optimizer.publish, job, solution, seconds)
                if not self.optimizer.controller.due():
                    return
        except Exception:  # a solve or publish failed (e.g. the broker unreachable): the next due solve retries
            log.exception("optimizer: solve failed; the next observation retries")
        finally:
            self.task = None
