"""Per-model budget accounting, one implementation for the offline evaluator and the service.

The hard guarantee: routing reserves ``reserve_factor`` times a query's estimated cost (its
*reservation*, the most its answer may cost), and a worker answers only within that reservation
(``within_reservation``: the replay worker refuses a dearer answer, the API worker caps its output
tokens). Reservations are admitted only while ``settled + reserved <= limit``, and a settled
cost never exceeds its reservation, so settled spend never exceeds any limit.
"""

from __future__ import annotations

import numpy as np


def reservation(estimate: float, reserve_factor: float) -> float:
    """The dollars held for a query whose estimated cost is ``estimate``: the most its answer may cost."""
    return float(estimate) * reserve_factor


def within_reservation(actual: float, reserved: float) -> bool:
    """Whether an answer costing ``actual`` may be served against a reservation of ``reserved`` dollars
    (the worker's rule; a query whose answer would cost more is refused and charged nothing)."""
    return actual <= reserved


class BudgetLedger:
    """Tracks each model's limit, what is reserved for answers in flight and what is settled.

    Invariant: ``spent + reserved <= limit`` for every model after every call, as long as every
    settlement is within its reservation (the workers' rule). ``spent`` is the settled spend.
    """

    def __init__(self, limits: np.ndarray, reserve_factor: float = 1.0) -> None:
        self.limits = np.asarray(limits, dtype=np.float64).copy()
        if np.any(self.limits < 0) or not np.all(np.isfinite(self.limits)):
            raise ValueError("budget limits must be finite and non-negative")
        if not reserve_factor >= 1.0:
            raise ValueError(f"reserve_factor must be at least 1, not {reserve_factor}")
        self.reserve_factor = reserve_factor
        self.spent = np.zeros_like(self.limits)  # settled: actual costs of served answers
        self.reserved = np.zeros_like(self.limits)

    def remaining(self) -> np.ndarray:
        """What each model can still take: limit - spent - reserved."""
        return self.limits - self.spent - self.reserved

    def charge(self, model: int, amount: float) -> bool:
        """Spend ``amount`` on ``model`` if it fits; return whether it did (oracle accounting)."""
        if amount > self.remaining()[model]:
            return False
        self.spent[model] += amount
        return True

    def reserve(self, model: int, estimate: float) -> float | None:
        """Hold the reservation of a query estimated at ``estimate`` dollars if it fits; return the
        dollars held, or None when it does not fit."""
        amount = reservation(estimate, self.reserve_factor)
        if amount > self.remaining()[model]:
            return None
        self.reserved[model] += amount
        return amount

    def hold(self, model: int, reserved: float, settled: float) -> None:
        """Add state recorded elsewhere (a recovered aggregate or decision record), unchecked."""
        self.reserved[model] += reserved
        self.spent[model] += settled

    def settle(self, model: int, reserved: float, actual: float) -> None:
        """Replace a reservation by the actual cost of its answer (0 for an answer refused by the worker's
        rule, ``within_reservation``)."""
        self.reserved[model] = max(self.reserved[model] - reserved, 0.0)
        self.spent[model] += actual
