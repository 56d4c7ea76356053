"""Where a batch is prepared: in the prepare process once it is up, in a thread before that, when it is switched
off, and when the process died (a new one is spawned)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

from streams.config import ModelSettings, ServiceConfig
from streams.service.prepare import Preparer
from streams.service.prepare_process import PrepareProcess, prepare_in_worker

from test_stream_router import FakeEngine, record


def config(in_process: bool) -> ServiceConfig:
    return ServiceConfig(models=[ModelSettings(name="m0", budget=1.0), ModelSettings(name="m1", budget=1.0)],
                         history=["unused"], router={"prepare_in_process": in_process})


class Pool:
    """Stands in for the worker process's pool: runs the job here, or fails as a dead process does."""

    def __init__(self, broken: bool) -> None:
        self.broken = broken
        self.jobs = 0

    def submit(self, fn: Any, *args: Any) -> Future:
        self.jobs += 1
        done: Future = Future()
        if self.broken:
            done.set_exception(BrokenProcessPool("the worker died"))
        else:
            done.set_result(fn(*args))
        return done


def up() -> Future:
    started: Future = Future()
    started.set_result(4242)
    return started


def records() -> list:
    return [record("q1"), record("q2", value=b"not json")]


def test_switched_off_it_prepares_in_a_thread_and_spawns_nothing() -> None:
    process = PrepareProcess(config(False), Preparer(FakeEngine(), "dlq"))
    process.start()
    assert process.pool is None and process.worker() is None
    batch = asyncio.run(process.prepare(records()))
    assert [q.id for q in batch.queries] == ["q1"] and len(batch.dead) == 1


def test_once_up_the_worker_process_prepares(monkeypatch: pytest.MonkeyPatch) -> None:
    process = PrepareProcess(config(True), Preparer(FakeEngine(), "dlq"))
    pool = Pool(broken=False)
    process.pool, process.up = pool, up()  # type: ignore[assignment]
    monkeypatch.setattr("streams.service.prepare_process._preparer", Preparer(FakeEngine(), "worker-dlq"))
    batch = asyncio.run(process.prepare(records()))
    assert pool.jobs == 1 and batch.dead[0].topic == "worker-dlq"  # prepared by the worker's own preparer
    assert [q.id for q in batch.queries] == ["q1"]


def test_a_dead_worker_process_is_replaced_and_the_batch_prepared_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    process = PrepareProcess(config(True), Preparer(FakeEngine(), "dlq"))
    pool = Pool(broken=True)
    process.pool, process.up = pool, up()  # type: ignore[assignment]
    spawned = []
    monkeypatch.setattr(process, "start", lambda: spawned.append(True))
    batch = asyncio.run(process.prepare(records()))
    assert pool.jobs == 1 and spawned == [True]
    assert batch.dead[0].topic == "dlq" and [q.id for q in batch.queries] == ["q1"]


def test_the_worker_function_needs_its_initializer() -> None:
    with pytest.raises(AssertionError, match="init_worker"):
        prepare_in_worker([record("q1")])
