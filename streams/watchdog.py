"""Stall detection: a held input partition with lag whose position does not move.

The router feeds the watchdog its positions and the broker's end offsets every few
seconds. A partition with lag > 0 whose position has not moved for ``timeout_s`` is
stalled: the router first tries to recover by itself (it reads the partition again from
its position); if the stall lasts another ``timeout_s``, the process is unhealthy and
``/health`` fails so that the orchestrator restarts it. A deliberate pause (waiting for the
learned weights) is not a stall.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Track:
    position: int
    since: float  # when the position last moved, or lag appeared, or a pause ended


class StallWatchdog:
    """Per-partition stall clocks."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._tracks: dict[int, _Track] = {}
        self._lagging: dict[int, float] = {}  # partition -> seconds without progress while lagging

    def check(self, now: float, positions: dict[int, int | None], ends: dict[int, int], paused: bool) -> list[int]:
        """Update the clocks; return the partitions stalled for at least ``timeout_s``."""
        self._tracks = {p: t for p, t in self._tracks.items() if p in positions}
        self._lagging = {}
        for partition, position in positions.items():
            pos = 0 if position is None else position
            track = self._tracks.get(partition)
            lag = ends.get(partition, pos) - pos
            if track is None or track.position != pos or lag <= 0 or paused:
                self._tracks[partition] = _Track(pos, now)
                continue
            self._lagging[partition] = now - track.since
        return sorted(p for p, seconds in self._lagging.items() if seconds >= self.timeout_s)

    def reset(self) -> None:
        """Forget every clock (the broker could not be asked: no judgement for that time)."""
        self._tracks.clear()
        self._lagging.clear()

    def stalled_seconds(self) -> dict[int, float]:
        """Seconds without progress per lagging partition (as of the last check)."""
        return dict(self._lagging)

    def healthy(self) -> bool:
        """False once a partition has been stalled for twice the timeout (self-recovery failed)."""
        return all(seconds < 2 * self.timeout_s for seconds in self._lagging.values())
