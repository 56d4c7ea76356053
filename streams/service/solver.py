"""The optimizer's solves off the event loop, in a separate process, at most one in flight.

A solve falls due on the optimizer's schedule (``router_core.controller``), but at a high
decision rate the next one can fall due before the last one returns. ``CoalescingSolver``
runs one solve at a time; what fell due meanwhile is solved once, on the newest sample, when
the running one returns. At a rate where a solve returns before the next falls due, this is
exactly the schedule. The solver (scipy's HiGHS holds the GIL) runs in a worker process at a
lower CPU priority, so the routing loop neither waits for the GIL nor yields a core to it. The
process is spawned when the service starts (``start``); until it is up (up to tens of seconds on a
loaded machine), solves run in a thread, so the first weights never wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from typing import TYPE_CHECKING

from streams.service.solve_job import init_worker, solve_job
from streams.service.spawned import ready, spawn_pool

if TYPE_CHECKING:
    from streams.service.weights import Optimizer

log = logging.getLogger(__name__)

def solver_pool() -> ProcessPoolExecutor:
    """One worker process for the solves."""
    return spawn_pool(init_worker, (os.getpid(),))


SOLVER_START_WAIT_S = 120.0  # routing waits at most this long for the solver process at start-up


class CoalescingSolver:
    """Runs the optimizer's due solves one at a time; call its methods on the event loop."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.pool: ProcessPoolExecutor | None = None
        self.up: Future[int] | None = None  # done once the worker process runs (its pid)
        self.task: asyncio.Task[None] | None = None
        self.coalesced = 0  # solves that fell due while one was in flight and were taken together
        self.settled = False  # True once routing stopped waiting for the worker process (``wait_up``)

    def start(self) -> None:
        """Spawn the worker process now, in the background (the first solve runs in a thread if it is not up)."""
        self.pool = solver_pool()
        self.up = self.pool.submit(os.getpid)

    async def wait_up(self, timeout: float = SOLVER_START_WAIT_S) -> None:
        """Wait until the worker process is up (or could not start), at most ``timeout`` s; then ``settled``.
        Solves in a thread hold the GIL for seconds on a busy machine and stall the routing loop, so routing
        waits for the process (bounded: after the timeout solves run in a thread until it is up)."""
        if self.up is not None:
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self.up)), timeout)
            except asyncio.TimeoutError:
                log.warning("optimizer: the solver process is not up after %.0fs; solves run in a thread until it is",
                            timeout)
            except Exception as exc:  # the process could not start: solves run in a thread
                log.error("optimizer: the solver process did not start (%r); solves run in a thread", exc)
        self.settled = True

    def worker(self) -> ProcessPoolExecutor | None:
        """The worker process's pool once it is up, else None (the event loop's default thread pool)."""
        return ready(self.pool, self.up)

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
                solution = await loop.run_in_executor(self.worker(), solve_job, self.optimizer.controller.decider, job)
                seconds = time.perf_counter() - started
                if self.optimizer.current(job):
                    self.optimizer.controller.apply(solution, job.seen)
                    weights = self.optimizer.weights(job, solution, seconds)  # on the loop: the share book
                    await loop.run_in_executor(None, self.optimizer.publish, weights)
                else:
                    log.info("optimizer: a budget period started during the solve; its solution is dropped")
                if not self.optimizer.controller.due():
                    return
        except BrokenProcessPool:
            log.error("optimizer: the solver process died; a new one is spawned (solves run in a thread until it is up)")
            self.start()
        except Exception:  # e.g. the broker unreachable while publishing: the next due solve retries
            log.exception("optimizer: solve failed; the next observation retries")
        finally:
            self.task = None
