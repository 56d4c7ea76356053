"""Learning the routing weights gamma: the dual of the budgeted assignment LP.

    F(gamma) = eps * sum_i gamma_i B_i + sum_j max_i (alpha d_ij - gamma_i g_ij)

``solve_lbfgsb`` is the reference code's method (scipy L-BFGS-B, numerical gradients,
start 1/M, box [0, 1]); F is piecewise linear, so it can stop short of the minimum.
``solve_lp`` solves the same minimum exactly as a linear program (epigraph form, HiGHS):

    min  eps * B.gamma + sum_j u_j
    s.t. u_j + g_ij gamma_i >= alpha d_ij   for all i, j
         u_j >= 0 (only with the skip option), gamma >= 0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog, minimize


@dataclass(frozen=True)
class DualSolution:
    """Learned weights, with what produced them."""

    gamma: np.ndarray  # (M,)
    objective: float
    solver: str
    sample_size: int


def dual_objective(gamma: np.ndarray, quality: np.ndarray, cost: np.ndarray, budgets: np.ndarray,
                   eps: float, alpha: float, skip: bool = False) -> float:
    """F(gamma) on a sample of estimates (n, M); with ``skip`` each term is floored at 0."""
    scores = alpha * quality - gamma[None, :] * cost
    best = scores.max(axis=1)
    if skip:
        best = np.maximum(best, 0.0)
    return float(eps * gamma @ budgets + best.sum())


def solve_lbfgsb(quality: np.ndarray, cost: np.ndarray, budgets: np.ndarray, eps: float, alpha: float) -> DualSolution:
    """Minimize F with L-BFGS-B from gamma = 1/M within [0, 1], exactly as the reference code."""
    m = quality.shape[1]
    result = minimize(dual_objective, x0=np.full(m, 1.0 / m), args=(quality, cost, budgets, eps, alpha),
                      method="L-BFGS-B", bounds=[(0.0, 1.0)] * m)
    gamma = np.asarray(result.x, dtype=np.float64)
    return DualSolution(gamma, dual_objective(gamma, quality, cost, budgets, eps, alpha), "lbfgsb", len(quality))


def solve_lp(quality: np.ndarray, cost: np.ndarray, budgets: np.ndarray, eps: float, alpha: float,
             skip: bool = True) -> DualSolution:
    """The exact minimum of F by linear programming with HiGHS.

    Without the skip option F is unbounded below when a budget is zero (gamma_i can grow
    for free), so gamma is then capped where model i could never win a query anyway.
    """
    n, m = quality.shape
    if n == 0:
        return DualSolution(np.zeros(m), 0.0, "lp", 0)
    budgets = np.maximum(budgets, 0.0)
    positive = cost[cost > 0]
    upper = None if skip or positive.size == 0 else 10.0 * alpha * max(float(quality.max()), 1.0) / positive.min()
    # Variables: gamma (m), then u (n). Constraint rows: one per (j, i): -g_ij gamma_i - u_j <= -alpha d_ij.
    rows = np.arange(n * m)
    j_of_row = np.repeat(np.arange(n), m)
    i_of_row = np.tile(np.arange(m), n)
    a_gamma = sparse.csr_matrix((-cost.ravel(), (rows, i_of_row)), shape=(n * m, m))
    a_u = sparse.csr_matrix((-np.ones(n * m), (rows, j_of_row)), shape=(n * m, n))
    a_ub = sparse.hstack([a_gamma, a_u], format="csr")
    b_ub = -alpha * quality.ravel()
    objective = np.concatenate([eps * budgets, np.ones(n)])
    bounds = [(0.0, upper)] * m + [(0.0 if skip else None, None)] * n
    result = linprog(objective, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if result.status != 0:
        raise RuntimeError(f"dual LP failed: {result.message}")
    gamma = np.asarray(result.x[:m], dtype=np.float64)
    return DualSolution(gamma, float(result.fun), "lp", n)


def solve_dual(quality: np.ndarray, cost: np.ndarray, budgets: np.ndarray, eps: float, alpha: float,
               method: str, skip: bool) -> DualSolution:
    """Dispatch to the named solver (``'lp'`` or ``'lbfgsb'``)."""
    if method == "lbfgsb":
        return solve_lbfgsb(quality, cost, budgets, eps, alpha)
    if method == "lp":
        return solve_lp(quality, cost, budgets, eps, alpha, skip=skip)
    raise ValueError(f"unknown dual solver {method!r} (expected 'lp' or 'lbfgsb')")
