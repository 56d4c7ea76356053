"""The offline budgeted assignment problem, as an LP relaxation or a 0/1 MILP (HiGHS).

    maximize  sum_ij d_ij x_ij
    s.t.      sum_j g_ij x_ij <= capacity_i,   sum_i x_ij <= 1,   0 <= x_ij <= 1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from router_core.rule import SKIP


@dataclass(frozen=True)
class Assignment:
    """A solved assignment: the model per query (``SKIP`` if none) and the solver's objective."""

    choices: np.ndarray
    objective: float


def solve_assignment(quality: np.ndarray, cost: np.ndarray, capacity: np.ndarray, integral: bool,
                     time_limit: float | None = None) -> Assignment:
    """Solve the assignment; a fractional solution is rounded down (x_ij > 0.5 keeps j on i).

    Rounding down keeps every capacity: at most one model per query has x_ij > 0.5, and
    keeping only those never adds cost.
    """
    n, m = quality.shape
    if n == 0:
        return Assignment(np.zeros(0, dtype=np.int64), 0.0)
    var = np.arange(n * m).reshape(n, m)
    budget_rows = sparse.csr_matrix((cost.ravel(), (np.tile(np.arange(m), n), var.ravel())), shape=(m, n * m))
    query_rows = sparse.csr_matrix((np.ones(n * m), (np.repeat(np.arange(n), m), var.ravel())), shape=(n, n * m))
    constraints = [LinearConstraint(budget_rows, -np.inf, np.maximum(capacity, 0.0)),
                   LinearConstraint(query_rows, -np.inf, 1.0)]
    options = {"time_limit": time_limit} if time_limit else {}
    result = milp(-quality.ravel(), constraints=constraints, bounds=Bounds(0.0, 1.0),
                  integrality=np.full(n * m, 1 if integral else 0), options=options)
    if result.x is None:
        raise RuntimeError(f"assignment solver found no solution: {result.message}")
    x = result.x.reshape(n, m)
    best = x.argmax(axis=1)
    choices = np.where(x[np.arange(n), best] > 0.5, best, SKIP)
    return Assignment(choices, float(-result.fun))
