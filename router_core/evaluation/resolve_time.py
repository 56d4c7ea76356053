"""How long PORT's re-solve takes as the stream grows: the bounded sample keeps it flat.

A ``PortController`` records a long stream of decisions (the test stream's estimates, cycled)
and, at each checkpoint of decisions seen, the re-solve is timed (median of ``repeats``) as
the optimizer runs it: on the configured sample with the remaining budgets. The same is
timed with the sample 'all' (everything seen) up to a size, for contrast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from router_core.controller import PortController
from router_core.estimator import Estimates
from router_core.params import PortParams


@dataclass(frozen=True)
class ResolveTime:
    """The median re-solve time at one number of decisions seen."""

    sample: str
    seen: int
    sample_size: int
    median_ms: float


def resolve_times(stream: Estimates, budgets: np.ndarray, params: PortParams, cost_scale: float,
                  checkpoints: tuple[int, ...], repeats: int) -> list[ResolveTime]:
    """Re-solve times of one controller (``params``' sample) at each checkpoint of decisions seen."""
    horizon = 2 * max(checkpoints)  # the period is expected to last beyond the last checkpoint
    controller = PortController(params, cost_scale, budgets, horizon)
    rows = np.arange(max(checkpoints)) % len(stream)
    times = []
    for row in rows:
        if controller.gamma is None and controller.due():
            controller.solve(budgets)  # the first solve, after the observation phase
        controller.record(stream.quality[row], stream.cost[row])
        if controller.seen in checkpoints:
            remaining = budgets * (1 - controller.seen / horizon)
            elapsed = []
            for _ in range(repeats):
                started = time.perf_counter()
                controller.solve(remaining)
                elapsed.append(time.perf_counter() - started)
            times.append(ResolveTime(params.resolve_sample, controller.seen, len(controller.sample),
                                     1000 * float(np.median(elapsed))))
    return times
