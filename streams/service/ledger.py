"""Budget state keys and the in-memory ledger derived from the decision records.

State keys start with the input partition that owns them (``"<partition>/<name>"``), so
each partition owns its decisions and its budget share B_i / P.
"""

from __future__ import annotations

from typing import Mapping


def state_key(partition: int, name: str) -> str:
    """Key of a state entry owned by input ``partition``."""
    return f"{partition}/{name}"


def key_partition(key: str) -> int:
    """The input partition that owns state key ``key``."""
    return int(key.split("/", 1)[0])


class Ledger:
    """Dollars per ``"<partition>/<model>"``: reserved (estimates awaiting a completion) and settled
    (actual costs of completed queries). A derived view of the decision records."""

    def __init__(self) -> None:
        self.reserved: dict[str, float] = {}
        self.settled: dict[str, float] = {}

    def reserve(self, key: str, dollars: float) -> None:
        """Hold ``dollars`` for a routed query."""
        self.reserved[key] = self.reserved.get(key, 0.0) + dollars

    def settle(self, key: str, reserved: float, actual: float) -> None:
        """Replace a reservation by the actual cost."""
        self.reserved[key] = self.reserved.get(key, 0.0) - reserved
        self.settled[key] = self.settled.get(key, 0.0) + actual

    def add_record(self, key: str, decision: Mapping[str, object]) -> None:
        """Account for one stored decision record (when rebuilding)."""
        if decision.get("actual") is None:
            self.reserve(key, float(decision["reserved"]))  # type: ignore[arg-type]
        else:
            self.settled[key] = self.settled.get(key, 0.0) + float(decision["actual"])  # type: ignore[arg-type]

    def spent(self, key: str) -> float:
        """Reserved plus settled dollars of ``key``."""
        return self.reserved.get(key, 0.0) + self.settled.get(key, 0.0)

    def keys(self) -> set[str]:
        """Every (partition, model) key with a charge."""
        return set(self.reserved) | set(self.settled)
