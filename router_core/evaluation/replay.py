"""The replay evaluator: runs a policy over a test stream and scores it on the true outcomes.

Accounting modes:
- ``oracle`` (the paper's): a routed query is served if the model's remaining budget
  covers its TRUE cost, which is then charged; otherwise it is lost.
- ``reserve`` (what the service does): routing reserves ``reserve_factor`` x the ESTIMATED cost
  (``router_core.budget.reservation``; the policy sees the remaining budget, and the query is lost
  if the reservation does not fit); the answer completes ``in_flight`` queries later (an array: each
  query's own delay, e.g. as measured in the service by ``port-router bench-parity``). A worker
  answers only within the reservation (``within_reservation``): a dearer answer is refused, lost
  and charged nothing, so settled spend never exceeds a limit. Otherwise the true cost replaces
  the reservation.

Budget periods (``periods`` > 1): the stream is cut into that many consecutive periods of (nearly)
equal length, each with ``1/periods`` of the budgets in a ledger of its own; at each boundary the
policy's ``restart_period`` gets the period's budgets and length (the hook the service's optimizer
calls at a boundary), and an answer completing after a boundary settles in its query's period.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Literal

import numpy as np

from router_core.budget import BudgetLedger, within_reservation
from router_core.policies.base import Policy, Stream
from router_core.rule import SKIP

Accounting = Literal["oracle", "reserve"]


@dataclass(frozen=True)
class ReplayResult:
    """The protocol's metrics for one run, plus what was spent per model."""

    performance: float
    cost: float
    throughput: int
    spent: np.ndarray
    choices: np.ndarray
    served: np.ndarray
    period_spent: tuple[np.ndarray, ...] = ()  # settled per model, per budget period

    @property
    def ppc(self) -> float:
        """Performance per dollar (0 when nothing was spent)."""
        return self.performance / self.cost if self.cost > 0 else 0.0


def replay(policy: Policy, stream: Stream, rng: np.random.Generator, accounting: Accounting = "oracle",
           in_flight: int | np.ndarray = 32, reserve_factor: float = 1.0, periods: int = 1) -> ReplayResult:
    """Route every query of ``stream`` in order with ``policy`` and account for it in ``periods`` budget periods
    (``reserve_factor`` and ``in_flight``, one delay or one per query, apply to ``reserve`` accounting only)."""
    if not 1 <= periods <= max(stream.size, 1):
        raise ValueError(f"periods must be between 1 and the stream's length {stream.size}, not {periods}")
    starts = [stream.size * k // periods for k in range(periods + 1)]
    ledgers: list[BudgetLedger] = []
    policy.start(stream, rng)
    choices = np.full(stream.size, SKIP, dtype=np.int64)
    served = np.zeros(stream.size, dtype=bool)
    delay = np.broadcast_to(np.asarray(in_flight, dtype=np.int64), (stream.size,))
    pending: list[tuple[int, int, int, float, int]] = []  # (query the answer completes before, query, model, held,
    # the period of its ledger)
    for j in range(stream.size):
        if j == starts[len(ledgers)]:
            ledgers.append(BudgetLedger(stream.budgets / periods, reserve_factor if accounting == "reserve" else 1.0))
            if periods > 1:
                policy.restart_period(ledgers[-1].limits.copy(), starts[len(ledgers)] - j)
        ledger = ledgers[-1]
        if accounting == "reserve":
            while pending and pending[0][0] <= j:
                _settle(heapq.heappop(pending), ledgers, stream, served)
        model = policy.choose(j, ledger.remaining())
        choices[j] = model
        if model == SKIP:
            continue
        if accounting == "oracle":
            served[j] = ledger.charge(model, stream.true_cost[j, model])
        else:
            held = ledger.reserve(model, float(stream.estimates.cost[j, model]))
            if held is not None:
                heapq.heappush(pending, (j + int(delay[j]), j, model, held, len(ledgers) - 1))
    while pending:
        _settle(heapq.heappop(pending), ledgers, stream, served)
    rows = np.flatnonzero(served)
    picked = choices[rows]
    return ReplayResult(
        performance=float(stream.true_quality[rows, picked].sum()),
        cost=float(stream.true_cost[rows, picked].sum()),
        throughput=int(len(rows)),
        spent=sum((ledger.spent for ledger in ledgers), np.zeros(len(stream.budgets))),
        choices=choices,
        served=served,
        period_spent=tuple(ledger.spent.copy() for ledger in ledgers),
    )


def _settle(item: tuple[int, int, int, float, int], ledgers: list[BudgetLedger], stream: Stream,
            served: np.ndarray) -> None:
    """The worker's completion of query ``j``: served within its reservation (in the ledger of its period), or
    refused for nothing."""
    _, j, model, held, period = item
    actual = float(stream.true_cost[j, model])
    served[j] = within_reservation(actual, held)
    ledgers[period].settle(model, held, actual if served[j] else 0.0)
