"""Batches prepared in a worker process, so that the router's own process keeps its GIL for the event loop.

Validating, embedding and estimating a batch (``streams.service.prepare``) holds the GIL most of the time,
and in the router's process it competes with the event loop that decides and persists the batches. With
``router.prepare_in_process`` (the default), ``PrepareProcess`` runs it in one spawned worker process that
loads its own copy of the engine. Until that process is up (it loads the embedder and the index: seconds,
more on a loaded machine), and after it dies until a new one is up, batches are prepared in a thread of the
router's process, so routing never waits for it. Preparing has no state: both places give the same result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Sequence

from streams.config import ServiceConfig
from streams.logs import configure_logging
from streams.service.data import load_engine
from streams.service.messages import Record
from streams.service.prepare import Prepared, Preparer
from streams.service.spawned import ready, spawn_pool, watch_parent

log = logging.getLogger(__name__)

_preparer: Preparer | None = None  # the worker process's own, set by ``init_worker``


def init_worker(parent: int, config: ServiceConfig, dlq_topic: str, log_level: int) -> None:
    """The worker process's initializer: log like the router, exit once the router process ``parent`` is gone,
    load the engine."""
    global _preparer
    configure_logging(log_level)
    watch_parent(parent)
    _preparer = Preparer(load_engine(config, announce=False), dlq_topic)


def prepare_in_worker(records: list[Record]) -> Prepared:
    """Prepare ``records`` with the worker process's engine."""
    assert _preparer is not None, "init_worker did not run"
    return _preparer.prepare(records)


class PrepareProcess:
    """Prepares batches in the worker process once it is up, else with ``local`` in a thread; call
    ``prepare`` on the event loop."""

    def __init__(self, config: ServiceConfig, local: Preparer) -> None:
        self.config = config
        self.local = local
        self.pool: ProcessPoolExecutor | None = None
        self.up: Future[int] | None = None  # done once the worker process has loaded its engine (its pid)

    def start(self) -> None:
        """Spawn the worker process in the background (no-op unless ``router.prepare_in_process``)."""
        if not self.config.router.prepare_in_process:
            return
        if self.pool is not None:
            self.pool.shutdown(wait=False)  # a dead worker's pool: release its threads and pipes
        started = time.monotonic()
        self.pool = spawn_pool(init_worker, (os.getpid(), self.config, self.local.dlq_topic,
                                             logging.getLogger().getEffectiveLevel()))
        self.up = self.pool.submit(os.getpid)
        self.up.add_done_callback(lambda up: self._report(up, time.monotonic() - started))

    @staticmethod
    def _report(up: Future[int], seconds: float) -> None:
        if up.exception() is None:
            log.info("prepare process %d up after %.1fs: batches are validated, embedded and estimated there",
                     up.result(), seconds)
        else:
            log.error("the prepare process did not start (%r): batches are prepared in a thread", up.exception())

    def worker(self) -> ProcessPoolExecutor | None:
        """The worker process's pool once it is up, else None."""
        return ready(self.pool, self.up)

    async def prepare(self, records: Sequence[Record]) -> Prepared:
        """``records`` validated, embedded and estimated, in the worker process or (not up) in a thread."""
        loop = asyncio.get_running_loop()
        pool = self.worker()
        if pool is not None:
            try:
                return await loop.run_in_executor(pool, prepare_in_worker, list(records))
            except BrokenProcessPool:
                log.error("the prepare process died; a new one is spawned (batches are prepared in a thread until "
                          "it is up)")
                self.start()
        return await loop.run_in_executor(None, self.local.prepare, records)
