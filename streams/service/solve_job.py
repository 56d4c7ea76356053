"""A due solve of the optimizer as a picklable job, and the function that solves it.

Kept free of Kafka, Faust and pydantic imports: the solver's worker process
(``streams.service.solver``) imports only this module and should start quickly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from router_core.dual import DualSolution
from router_core.estimator import Estimates
from router_core.port import PortDecider
from streams.service.spawned import watch_parent


SOLVER_NICENESS = 10  # added to the worker process's nice value: routing comes first on a busy machine


def init_worker(parent: int) -> None:
    """The solver process's initializer: lower its CPU priority, and exit once the service process ``parent`` is
    gone (a router killed with SIGKILL leaves nobody to shut its pool down)."""
    os.nice(SOLVER_NICENESS)
    watch_parent(parent)


@dataclass(frozen=True)
class SolveJob:
    """A due solve, taken on the optimizer's thread: the problem and what the weights will record about it."""

    observed: Estimates
    budgets: np.ndarray
    eps: float | None
    seen: int  # decisions seen when it was taken
    next_offset: int  # the observations offset after the last decision seen
    period: int  # the budget period of the decisions seen


def solve_job(decider: PortDecider, job: SolveJob) -> DualSolution:
    """Solve ``job`` with ``decider`` (pure and picklable: runs in a worker process)."""
    return decider.solve(job.observed, job.budgets, eps=job.eps)
