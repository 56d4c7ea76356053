"""The optimizer's solves off the event loop, in a separate process, at most one in flight.

A solve falls due on the optimizer's schedule (``router_core.controller``), but at a high
decision rate the next one can fall due before the last one returns. ``CoalescingSolver``
runs one solve at a time; what fell due meanwhile is solved once, on the newest sample, when
the running one returns. At a rate where a solve returns before the next falls due, this is
exactly the schedule. The solver (scipy's HiGHS holds the GIL) runs in a worker process at a
lower CPU priority, so the routing loop neither waits for the GIL nor yields a core to it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from streams.service.weights import Optimizer, solve_job

log = logging.getLogger(__name__)

SOLVER_NICENESS = 10  # added to the worker process's nice value: routing comes first on a busy machine


def lower_priority() -> None:
    """The solver process's initializer: lower its CPU priority."""
    os.nice(SOLVER_NICENESS)


def solver_pool() -> ProcessPoolExecutor:
    """One worker process (spawned: the service's threads and event loop are not forked) for the solves."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=lower_priority)


class CoalescingSolver:
    """Runs the optimizer's due solves one at a time; call its methods on the event loop."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.pool: ProcessPoolExecutor | None = None  # started with the first solve
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
                if self.pool is None:
                    self.pool = solver_pool()
                solution = await loop.run_in_executor(self.pool, solve_job, self.optimizer.controller.decider, job)
                seconds = time.perf_counter() - started
                self.optimizer.controller.apply(solution, job.seen)
                await loop.run_in_executor(None, self.optimizer.publish, job, solution, seconds)
                if not self.optimizer.controller.due():
                    return
        except BrokenProcessPool:
            log.error("optimizer: the solver process died; a new one takes the next due solve")
            self.pool = None
        except Exception:  # e.g. the broker unreachable while publishing: the next due solve retries
            log.exception("optimizer: solve failed; the next observation retries")
        finally:
            self.task = None
