"""The service's optimizer: every decision is accounted once, in order, and solves fall due on PORT's schedule."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np

from router_core.controller import PortController
from router_core.params import PortParams
from schemas import ObservationEvent, ObservedDecision
from streams.service.solver import CoalescingSolver
from streams.service.weights import Optimizer


class Engine:
    models = ("a", "b")
    cost_scale = 1.0
    port = PortParams(eps=0.05, resolve_every=10, n_expected=100, observation="random")

    def controller(self, budgets: np.ndarray, seed: int = 0) -> PortController:
        return PortController(self.port, 1.0, budgets, self.port.n_expected, seed=seed)


class Watcher:
    caught_up = threading.Event()

    def latest(self) -> None:
        return None


def event(i: int, spent: float = 0.0, rows: int = 1) -> bytes:
    """An observation event of ``rows`` decisions on partition ``i % 2``."""
    decided = [ObservedDecision(id=f"q{i}-{j}", quality=[0.5, 0.6], cost=[0.01, 0.02]) for j in range(rows)]
    return ObservationEvent(partition=i % 2, observed_at=1.0, phase="observation", partition_spent=[spent, 2 * spent],
                            rows=decided).model_dump_json().encode()


def optimizer() -> Optimizer:
    Watcher.caught_up.set()
    opt = Optimizer(Engine(), np.array([1.0, 1.0]), {}, "obs", "weights", Watcher(), 2)  # type: ignore[arg-type]
    opt.resume(0)  # nothing before offset 0: no topic read
    return opt


def test_solves_fall_due_after_the_observation_phase_then_every_resolve_every() -> None:
    opt = optimizer()
    due = []
    for offset in range(30):
        if opt.on_observation(offset, event(offset, spent=0.01 * offset)):
            due.append(offset + 1)
            opt.controller.solve(opt.remaining())  # what publish does, without the broker
    assert due == [5, 15, 25]
    # the newest spend of partition 0 (offset 28) and of partition 1 (offset 29)
    assert np.allclose(opt.remaining(), [1.0 - 0.28 - 0.29, 1.0 - 0.56 - 0.58])


def test_an_observation_seen_before_or_invalid_is_not_accounted() -> None:
    opt = optimizer()
    opt.on_observation(0, event(0, spent=0.1))
    opt.on_observation(0, event(0, spent=0.5))  # delivered again
    opt.on_observation(1, b"not json")
    opt.on_observation(2, event(2, spent=0.2))
    assert opt.controller.seen == 2 and np.allclose(opt.remaining(), [0.8, 0.6])


def test_a_gap_in_the_observations_calls_for_a_resume() -> None:
    opt = optimizer()
    opt.on_observation(0, event(0))
    assert not opt.needs_resume(1) and not opt.needs_resume(0)
    assert opt.needs_resume(7), "offsets 1..6 were accounted for by another router's optimizer"


def test_an_acknowledgement_is_no_decision_and_makes_no_solve_due() -> None:
    opt = optimizer()
    for offset in range(5):
        opt.on_observation(offset, event(offset))
    opt.controller.solve(opt.remaining())  # the first solve, as publish does
    for offset in range(5, 15):
        due = opt.on_observation(offset, event(offset))
    assert due and opt.controller.seen == 15
    ack = ObservationEvent(partition=1, observed_at=1.0, phase="learned", partition_spent=[0.0, 0.0],
                           weights_version=2).model_dump_json().encode()
    assert not opt.on_observation(15, ack)  # still at 15 decisions seen: no second solve for them
    assert opt.controller.seen == 15 and opt.book.parts[1].acked == 2


def test_a_batch_crossing_the_schedule_solves_once_after_it() -> None:
    opt = optimizer()
    due = []
    seen = 0
    for offset, rows in enumerate([3, 3, 7, 4, 0, 9, 30, 2, 8]):
        seen += rows
        if opt.on_observation(offset, event(offset, rows=rows)):
            due.append(seen)
            opt.controller.solve(opt.remaining())
    # the first solve once 5 decisions were seen, then once 10 more were seen since the last solve
    assert due == [6, 17, 56, 66]
    assert opt.controller.seen == 66


def test_an_event_without_rows_is_valid_and_only_updates_the_spend() -> None:
    opt = optimizer()
    assert not opt.on_observation(0, event(0, spent=0.25, rows=0))
    assert opt.controller.seen == 0 and np.allclose(opt.remaining(), [0.75, 0.5])


def test_solves_due_while_one_is_in_flight_are_taken_once_on_the_newest_sample(monkeypatch) -> None:
    opt = optimizer()
    published: list[int] = []
    monkeypatch.setattr(opt, "publish", lambda weights: published.append(weights.decisions_seen))

    async def feed(solver: CoalescingSolver, offsets: range, rows: int) -> None:
        for offset in offsets:
            if opt.on_observation(offset, event(offset, rows=rows)):
                solver.request()
        await solver.idle()

    async def scenario() -> CoalescingSolver:
        solver = CoalescingSolver(opt)
        solver.start()
        assert solver.up is not None and solver.up.result(timeout=120) != os.getpid(), "a worker process"
        assert solver.worker() is solver.pool
        await feed(solver, range(0, 4), 10)  # due at 10 (the first), 20 and 30 before the solve starts
        assert published == [40] and solver.coalesced == 3, "one solve, on all 40 decisions"
        await feed(solver, range(4, 5), 5)
        assert published == [40], "5 decisions since the last solve: none due"
        await feed(solver, range(5, 6), 5)
        assert published == [40, 50]
        return solver

    solver = asyncio.run(scenario())
    assert solver.pool is not None
    solver.pool.shutdown()
    reference = opt.controller.decider.solve(opt.controller.sample.estimates(), *opt.controller.problem(opt.remaining())[1:])
    assert np.allclose(opt.controller.gamma, reference.gamma), "the worker process solved the same problem"


def test_solves_run_in_a_thread_until_the_worker_process_is_up() -> None:
    opt = optimizer()
    solver = CoalescingSolver(opt)
    assert solver.worker() is None, "not started: the loop's thread pool"
