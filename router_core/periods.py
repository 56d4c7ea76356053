"""Budget periods: which period a moment belongs to, and the volume expected in a period.

Periods are aligned to a fixed origin (default the Unix epoch): period k is
``[origin + k * length, origin + (k + 1) * length)``, so every router maps the same moment to
the same period without coordination. Without a length (``budget.period: none``) every moment is
in period 0: one period for the whole deployment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetPeriods:
    """The period grid: ``length_s`` seconds per period (None: a single period), from ``origin`` (Unix seconds)."""

    length_s: float | None = None
    origin: float = 0.0

    def index(self, moment: float) -> int:
        """The period that contains the Unix time ``moment`` (0 when periods are off)."""
        if self.length_s is None:
            return 0
        return math.floor((moment - self.origin) / self.length_s)

    def start(self, period: int) -> float:
        """When ``period`` begins (Unix seconds; the origin when periods are off)."""
        return self.origin + period * (self.length_s or 0.0)

    def end(self, period: int) -> float:
        """When ``period`` ends (infinity when periods are off)."""
        return math.inf if self.length_s is None else self.start(period + 1)


def forecast_volume(decisions: int, since: float, until: float, length_s: float, fallback: int) -> int:
    """The decisions expected in a period of ``length_s`` seconds at the rate of the closed period(s):
    ``decisions`` made from ``since`` (the later of that period's start and its first decision) to ``until``
    (the new period's start), times ``length_s``; ``fallback`` when there is no rate to go by."""
    span = until - since
    if decisions <= 0 or not span > 0:
        return fallback
    return max(round(decisions / span * length_s), 1)
