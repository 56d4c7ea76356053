"""Where the router's micro-batches spend their time: seconds per stage summed over batches.

The router adds one entry per routed batch (poll, prepare, decide, flush, send, progress);
the /state page shows the totals, and ``bench-stream`` turns two snapshots of them into the
mean milliseconds per batch of each stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


class Stopwatch:
    """Consecutive laps: each ``lap(name)`` records the seconds since the previous lap (or the start)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def restart(self) -> None:
        """Start the next lap now (the time since the last lap is not recorded)."""
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Close the lap ``name``."""
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now


@dataclass
class BatchStages:
    """Totals over the routed batches: how many, how many queries, seconds per stage."""

    batches: int = 0
    queries: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, queries: int, laps: dict[str, float]) -> None:
        """Count one batch of ``queries`` records with its stage ``laps`` (seconds)."""
        self.batches += 1
        self.queries += queries
        for name, seconds in laps.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def snapshot(self) -> dict[str, Any]:
        """The totals as JSON-ready values."""
        return {"batches": self.batches, "queries": self.queries, "seconds": dict(self.seconds)}


def per_batch(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, float]:
    """Mean milliseconds per batch of every stage, and the mean batch size, between two snapshots of
    the same processes (summed over them); empty when no batch was routed in between."""
    batches = sum(a["batches"] - b["batches"] for b, a in zip(before, after))
    if batches <= 0:
        return {}
    queries = sum(a["queries"] - b["queries"] for b, a in zip(before, after))
    stages = sorted({name for a in after for name in a["seconds"]})
    out = {"batch_size": round(queries / batches, 1)}
    for name in stages:
        total = sum(a["seconds"].get(name, 0.0) - b["seconds"].get(name, 0.0) for b, a in zip(before, after))
        out[f"{name}_ms"] = round(1000 * total / batches, 2)
    return out
