"""The service's budget state: one ``BudgetLedger`` per held input partition, saved as a compact aggregate.

The aggregate of input partition p (key ``"<p>/budget"`` of the ``budgets`` table) holds the
reserved and settled dollars per model and two watermarks: ``queries_next`` (every decision of
an input offset below it is in the sums) and ``completions_next`` (every completion of a
completions offset below it is in the sums). Each decision record carries its input ``offset``
and, once settled, the completions offset that settled it (``settled_by``).

Atomicity across a crash, without transactions: the aggregate is written after the decisions it
summarizes and never claims more than they do, so recovery is "the aggregate, plus the redo of
every decision record beyond its watermarks" (``PartitionBudgets.recover``). Decision records
live for the de-duplication window (``DecisionExpiry``), far longer than the interval between
two aggregate writes, so every decision the aggregate lacks is still there to redo. A decision
deleted at the end of the window stays in the sums: its settlement, or its reservation when no
completion came, is kept, never released.
"""

from __future__ import annotations

import heapq
from typing import Iterable, Mapping, MutableMapping

import numpy as np

from router_core.budget import BudgetLedger
from streams.service.ledger import key_partition, state_key

AGGREGATE_NAME = "budget"


def aggregate_key(partition: int) -> str:
    """Key of input ``partition``'s aggregate in the budgets table."""
    return state_key(partition, AGGREGATE_NAME)


class PartitionBudgets:
    """Per input partition: a ledger over that partition's budget share, the completions watermark, and the
    newest weights version the partition's decisions used (its routers must not go back to an older one)."""

    def __init__(self, models: tuple[str, ...], share: np.ndarray, reserve_factor: float) -> None:
        self.models = models
        self.share = np.asarray(share, dtype=np.float64)
        self.reserve_factor = reserve_factor
        self.ledgers: dict[int, BudgetLedger] = {}
        self.completions_next: dict[int, int] = {}
        self.versions: dict[int, int] = {}

    def follow(self, partition: int, version: int, share: np.ndarray) -> None:
        """``partition`` follows weights ``version`` from now on, within ``share`` per model."""
        self.versions[partition] = max(self.versions.get(partition, 0), version)
        self.ledger(partition).limits = np.asarray(share, dtype=np.float64)

    def version(self, partition: int) -> int:
        """The newest weights version ``partition``'s state used (0: none)."""
        return self.versions.get(partition, 0)

    def ledger(self, partition: int) -> BudgetLedger:
        """The ledger of ``partition`` (empty when the partition has no state yet)."""
        if partition not in self.ledgers:
            self.ledgers[partition] = BudgetLedger(self.share, self.reserve_factor)
        return self.ledgers[partition]

    def settle(self, partition: int, model: str, reserved: float, actual: float, offset: int) -> None:
        """Apply the completion at ``offset`` of ``partition``'s completions to the ledger."""
        self.ledger(partition).settle(self.models.index(model), reserved, actual)
        self.completions_next[partition] = offset + 1

    def applied(self, partition: int, offset: int) -> bool:
        """Whether the completion at ``offset`` of ``partition`` is already in the sums."""
        return offset < self.completions_next.get(partition, 0)

    def snapshot(self, partition: int, queries_next: int) -> dict:
        """The aggregate of ``partition``: everything decided below input offset ``queries_next``."""
        ledger = self.ledger(partition)
        return {"reserved": dict(zip(self.models, ledger.reserved.tolist())),
                "settled": dict(zip(self.models, ledger.spent.tolist())),
                "queries_next": queries_next, "completions_next": self.completions_next.get(partition, 0),
                "weights_version": self.version(partition)}

    def recover(self, held: Iterable[int], aggregates: Mapping[str, dict | None],
                decisions: Mapping[str, dict | None]) -> int:
        """Rebuild the ledgers of the ``held`` partitions from their aggregates plus the redo of the decision
        records beyond the aggregates' watermarks; return how many decision records were redone."""
        held = set(held)
        self.ledgers, self.completions_next, self.versions = {}, {}, {}
        marks: dict[int, tuple[int, int]] = {}
        for partition in held:
            saved = aggregates.get(aggregate_key(partition))
            ledger = self.ledger(partition)
            if saved:
                for i, model in enumerate(self.models):
                    ledger.hold(i, float(saved["reserved"].get(model, 0.0)), float(saved["settled"].get(model, 0.0)))
                marks[partition] = (int(saved["queries_next"]), int(saved["completions_next"]))
                self.completions_next[partition] = marks[partition][1]
                self.versions[partition] = int(saved.get("weights_version", 0))
        redone = 0
        for key, decision in decisions.items():
            partition = key_partition(key)
            if partition not in held or not decision:
                continue
            self.versions[partition] = max(self.versions.get(partition, 0), int(decision.get("weights_version") or 0))
            if decision.get("model") is None:
                continue
            queries_next, completions_next = marks.get(partition, (0, 0))
            ledger, model = self.ledger(partition), self.models.index(decision["model"])
            offset = decision.get("offset")
            if offset is None or offset >= queries_next:
                ledger.hold(model, float(decision["reserved"]), 0.0)
                redone += 1
            settled_by = decision.get("settled_by")
            if settled_by is not None and settled_by >= completions_next:
                ledger.settle(model, float(decision["reserved"]), float(decision["actual"]))
                self.completions_next[partition] = max(self.completions_next.get(partition, 0), settled_by + 1)
                redone += 1
        return redone


class DecisionExpiry:
    """The decision keys in the order they expire: a record decided at t is deleted (a tombstone in the
    changelog, so compaction drops it) once t + ``window_s`` has passed."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.heap: list[tuple[float, str]] = []

    def add(self, key: str, decided_at: float) -> None:
        """Track a decision recorded at ``decided_at``."""
        heapq.heappush(self.heap, (decided_at, key))

    def reset(self, decisions: Mapping[str, dict | None], held: set[int] | None) -> None:
        """Track the decision records of the ``held`` partitions (all when None), after a rebalance."""
        self.heap = [(float(d.get("decided_at", 0.0)), k) for k, d in decisions.items()
                     if d and (held is None or key_partition(k) in held)]
        heapq.heapify(self.heap)

    def expire(self, decisions: MutableMapping[str, dict | None], now: float, held: set[int] | None) -> int:
        """Delete the records of the ``held`` partitions (all when None) whose window has passed; return how
        many were deleted (a partition held elsewhere now is its new owner's to expire)."""
        deleted = 0
        while self.heap and self.heap[0][0] + self.window_s <= now:
            decided_at, key = heapq.heappop(self.heap)
            if held is not None and key_partition(key) not in held:
                continue
            record = decisions.get(key)
            if record is not None and float(record.get("decided_at", 0.0)) == decided_at:
                del decisions[key]
                deleted += 1
        return deleted
