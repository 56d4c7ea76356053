"""The service's budget state: one ``BudgetLedger`` per held input partition and budget period, saved as a
compact aggregate.

The aggregate of input partition p (key ``"<p>/budget"`` of the ``budgets`` table) holds the
reserved and settled dollars per model of its current budget period (``period``) and of the
kept closed ones (``closed``), and two watermarks: ``queries_next`` (every decision of
an input offset below it is in the sums) and ``completions_next`` (every completion of a
completions offset below it is in the sums). Each decision record carries its input ``offset``
and, once settled, the completions offset that settled it (``settled_by``), and its budget
``period``: a decision's reservation and its settlement always go to that period's sums.

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
    """Per input partition: a ledger per budget period over that partition's budget share (the current period's
    in ``ledgers``, the last ``periods_kept`` closed ones in ``closed``), the completions watermark, and the
    newest weights version the partition's decisions used (its routers must not go back to an older one)."""

    def __init__(self, models: tuple[str, ...], share: np.ndarray, reserve_factor: float,
                 periods_kept: int = 24) -> None:
        self.models = models
        self.share = np.asarray(share, dtype=np.float64)
        self.reserve_factor = reserve_factor
        self.periods_kept = periods_kept
        self.ledgers: dict[int, BudgetLedger] = {}  # partition -> its current period's ledger
        self.periods: dict[int, int] = {}  # partition -> its current period (absent: not known yet)
        self.closed: dict[int, dict[int, BudgetLedger]] = {}  # partition -> closed period -> its ledger
        self.completions_next: dict[int, int] = {}
        self.versions: dict[int, int] = {}

    def follow(self, partition: int, version: int, share: np.ndarray) -> None:
        """``partition`` follows weights ``version`` from now on, within ``share`` per model."""
        self.versions[partition] = max(self.versions.get(partition, 0), version)
        self.ledger(partition).limits = np.asarray(share, dtype=np.float64)

    def version(self, partition: int) -> int:
        """The newest weights version ``partition``'s state used (0: none)."""
        return self.versions.get(partition, 0)

    def new_ledger(self) -> BudgetLedger:
        """An empty ledger over B_i / P: a partition's share of a period's budgets until it follows a weights
        version of that period that reassigns the shares (``follow``)."""
        return BudgetLedger(self.share, self.reserve_factor)

    def ledger(self, partition: int) -> BudgetLedger:
        """The current period's ledger of ``partition`` (empty when the partition has no state yet)."""
        if partition not in self.ledgers:
            self.ledgers[partition] = self.new_ledger()
        return self.ledgers[partition]

    def current(self, partition: int, period: int) -> tuple[int, BudgetLedger]:
        """(period, ledger) to decide in at ``period``: the partition's current period, moved on to ``period``
        when that is later (the current ledger is closed, a new one starts from the full share). Periods never
        go back: a router whose clock lags decides in the partition's newest period."""
        known = self.periods.get(partition)
        if known is not None and period > known:
            self.closed.setdefault(partition, {})[known] = self.ledger(partition)
            self.ledgers[partition] = self.new_ledger()
            self.trim(partition)
        if known is None or period > known:
            self.periods[partition] = period
        return self.periods[partition], self.ledger(partition)

    def ledger_of(self, partition: int, period: int) -> BudgetLedger | None:
        """The ledger of (``partition``, ``period``): the current one (moved on when ``period`` is later), a kept
        closed one, or None for a period older than the ``periods_kept`` kept."""
        known = self.periods.get(partition)
        if known is None or period >= known:
            return self.current(partition, period)[1]
        closed = self.closed.setdefault(partition, {})
        if period not in closed:
            closed[period] = self.new_ledger()
            self.trim(partition)
        return closed.get(period)

    def trim(self, partition: int) -> None:
        """Keep the newest ``periods_kept`` closed periods of ``partition``."""
        closed = self.closed.get(partition, {})
        for period in sorted(closed)[:-self.periods_kept]:
            del closed[period]

    def settle(self, partition: int, model: str, reserved: float, actual: float, offset: int,
               period: int = 0) -> None:
        """Apply the completion at ``offset`` of ``partition``'s completions to the ledger of its decision's
        ``period`` (nothing for a period older than those kept)."""
        ledger = self.ledger_of(partition, period)
        if ledger is not None:
            ledger.settle(self.models.index(model), reserved, actual)
        self.completions_next[partition] = offset + 1

    def applied(self, partition: int, offset: int) -> bool:
        """Whether the completion at ``offset`` of ``partition`` is already in the sums."""
        return offset < self.completions_next.get(partition, 0)

    def by_period(self, partition: int) -> dict[int, BudgetLedger]:
        """Every kept period's ledger of ``partition``, closed ones and the current one."""
        ledgers = dict(self.closed.get(partition, {}))
        if partition in self.periods:
            ledgers[self.periods[partition]] = self.ledger(partition)
        return ledgers

    def report(self, partitions: Iterable[int]) -> dict[int, dict[str, dict[str, float]]]:
        """Per kept period of ``partitions`` (closed ones and the current): per model, the limit, reserved and
        settled dollars summed over the partitions with state in that period."""
        out: dict[int, dict[str, dict[str, float]]] = {}
        for partition in partitions:
            for period, ledger in self.by_period(partition).items():
                models = out.setdefault(period, {m: {"limit": 0.0, "reserved": 0.0, "settled": 0.0} for m in self.models})
                for i, model in enumerate(self.models):
                    models[model]["limit"] += float(ledger.limits[i])
                    models[model]["reserved"] += float(ledger.reserved[i])
                    models[model]["settled"] += float(ledger.spent[i])
        return dict(sorted(out.items()))

    def sums(self, ledger: BudgetLedger) -> dict[str, dict[str, float]]:
        """A ledger's reserved and settled dollars per model."""
        return {"reserved": dict(zip(self.models, ledger.reserved.tolist())),
                "settled": dict(zip(self.models, ledger.spent.tolist()))}

    def snapshot(self, partition: int, queries_next: int) -> dict:
        """The aggregate of ``partition``: everything decided below input offset ``queries_next``, per period
        (the current period's sums at the top level, the kept closed periods' under ``closed``), and the newest
        weights version its decisions used."""
        return {**self.sums(self.ledger(partition)), "period": self.periods.get(partition),
                "closed": {str(k): self.sums(v) for k, v in self.closed.get(partition, {}).items()},
                "queries_next": queries_next, "completions_next": self.completions_next.get(partition, 0),
                "weights_version": self.version(partition)}

    def hold(self, ledger: BudgetLedger | None, sums: dict) -> None:
        """Add an aggregate's sums of one period to ``ledger`` (None: a period no longer kept)."""
        if ledger is None:
            return
        for i, model in enumerate(self.models):
            ledger.hold(i, float(sums["reserved"].get(model, 0.0)), float(sums["settled"].get(model, 0.0)))

    def recover(self, held: Iterable[int], aggregates: Mapping[str, dict | None],
                decisions: Mapping[str, dict | None]) -> int:
        """Rebuild the ledgers of the ``held`` partitions from their aggregates plus the redo of the decision
        records beyond the aggregates' watermarks, each into its decision's period; return how many decision
        records were redone."""
        held = set(held)
        self.ledgers, self.periods, self.closed, self.completions_next, self.versions = {}, {}, {}, {}, {}
        marks: dict[int, tuple[int, int]] = {}
        for partition in held:
            saved = aggregates.get(aggregate_key(partition))
            if saved:
                period = saved.get("period")  # absent or None: written before periods, or before any decision
                self.hold(self.ledger(partition) if period is None else self.ledger_of(partition, int(period)), saved)
                for period, sums in saved.get("closed", {}).items():
                    self.hold(self.ledger_of(partition, int(period)), sums)
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
            ledger, model = self.ledger_of(partition, int(decision.get("period", 0))), self.models.index(decision["model"])
            offset = decision.get("offset")
            if offset is None or offset >= queries_next:
                if ledger is not None:
                    ledger.hold(model, float(decision["reserved"]), 0.0)
                redone += 1
            settled_by = decision.get("settled_by")
            if settled_by is not None and settled_by >= completions_next:
                if ledger is not None:
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
