"""Per-model budget accounting: limits, reservations and spend, never above a limit."""

from __future__ import annotations

import numpy as np


class BudgetLedger:
    """Tracks each model's limit, what is reserved for answers in flight and what is spent.

    Invariant: ``spent + reserved <= limit`` for every model, after every call.
    """

    def __init__(self, limits: np.ndarray) -> None:
        self.limits = np.asarray(limits, dtype=np.float64).copy()
        if np.any(self.limits < 0) or not np.all(np.isfinite(self.limits)):
            raise ValueError("budget limits must be finite and non-negative")
        self.spent = np.zeros_like(self.limits)
        self.reserved = np.zeros_like(self.limits)

    def remaining(self) -> np.ndarray:
        """What each model can still take: limit - spent - reserved."""
        return self.limits - self.spent - self.reserved

    def charge(self, model: int, amount: float) -> bool:
        """Spend ``amount`` on ``model`` if it fits; return whether it did."""
        if amount > self.remaining()[model]:
            return False
        self.spent[model] += amount
        return True

    def reserve(self, model: int, amount: float) -> bool:
        """Hold ``amount`` for an answer in flight if it fits; return whether it did."""
        if amount > self.remaining()[model]:
            return False
        self.reserved[model] += amount
        return True

    def settle(self, model: int, reserved: float, actual: float) -> bool:
        """Replace a reservation by the actual cost; if the actual cost does not fit, charge nothing.

        Returns whether the actual cost was charged (the caller counts the answer as lost
        otherwise: a worker's budget guard refuses to exceed the limit).
        """
        self.reserved[model] = max(self.reserved[model] - reserved, 0.0)
        return self.charge(model, actual)
