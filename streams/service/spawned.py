"""The router's worker processes (the solver's and the prepare process): one spawned process behind a
``ProcessPoolExecutor`` each, usable once its initializer ran, and gone once the router process is.

Kept free of Kafka, Faust and pydantic imports: the worker processes import it and should start quickly.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable


def spawn_pool(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> ProcessPoolExecutor:
    """A pool of one worker process, spawned (the service's threads and event loop are not forked), that runs
    ``initializer(*initargs)`` first."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)


def ready(pool: ProcessPoolExecutor | None, up: Future[int] | None) -> ProcessPoolExecutor | None:
    """``pool`` once ``up`` (its first job: the worker's pid, done after the initializer) succeeded, else None."""
    return pool if up is not None and up.done() and up.exception() is None else None


def watch_parent(parent: int) -> None:
    """In a worker process: exit it as soon as the router process ``parent`` is gone (a router killed with
    SIGKILL leaves nobody to shut its pools down)."""
    threading.Thread(target=exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def exit_with_parent(parent: int, interval_s: float = 1.0) -> None:
    """Return never: exit this process as soon as its parent is no longer ``parent``."""
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(0)
