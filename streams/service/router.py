"""The router's per-batch decisions, independent of Faust: decide and reserve on a prepared batch
(``streams.service.prepare``: validated, embedded, estimated).

``decide`` and ``reconcile`` write the decisions mapping (a changelog-backed Faust Table in
the service) and return the messages to send. Each decision record carries its charge (the
reservation, replaced by the actual cost once reconciled) with its input offset, and the dollars
per (partition, model) are kept in memory and saved as compact aggregates (streams.budget_state),
recovered after every rebalance. Keys start with the input partition
(``"<partition>/<query id>"``), so each partition owns its decisions and its budget share: the share of
the weights version it follows (B_i / P before any weights or when the weights carry none; reassigned by
the optimizer, streams/service/shares.py). A query this partition's share cannot pay for, but another's can, is
handed over to that partition through the input topic (``hand_over``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, MutableMapping, Sequence

import numpy as np
from pydantic import ValidationError

from router_core.budget import BudgetLedger
from router_core.estimator import Estimates
from router_core.periods import BudgetPeriods
from schemas import Completion, ObservationEvent, ObservedDecision, QueryEvent, RoutedQuery, UnservedQuery
from streams.service.budget_state import DecisionExpiry, PartitionBudgets
from streams.service.contracts import Engine, Weights
from streams.service.ledger import state_key
from streams.service.messages import Outgoing, Record
from streams.service.prepare import Prepared, dead_letter, validation_reason
from streams.service.shares import handover_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CostBound:
    """The most dollars a completion may claim for a decision: max(factor x its reserved estimate, cap).
    A claim beyond it is implausible (a forged or broken worker): it goes to the DLQ, the reservation stays."""

    factor: float = 10.0
    cap: float = 0.0

    def limit(self, reserved: float) -> float:
        """The bound for a decision that reserved ``reserved`` dollars."""
        return max(self.factor * reserved, self.cap)


@dataclass(frozen=True)
class TopicNames:
    """The topics the router writes to."""

    observations: str
    unserved: str
    dlq: str
    routed: dict[str, str]  # model -> topic
    queries: str  # the input topic: a query handed over to another input partition goes back there


def finite_or_none(value: float) -> float | None:
    """``value``, or None when it is NaN or infinite (JSON has no such numbers)."""
    return value if np.isfinite(value) else None


def decision_record(message: Outgoing, model: str | None, held: float, offset: int, decided_at: float,
                    version: int = 0, period: int = 0) -> dict:
    """The decisions table's record of one query: the message to re-emit, its charge (the reservation, with
    ``actual`` and ``settled_by`` set once a completion settles it), its input offset, the weights version it
    used (0: none) and its budget period. A query handed over to another input partition is recorded with the
    handover (``message.partition`` set, no model, no charge)."""
    return {"topic": message.topic, "partition": message.partition, "value": message.value.decode(), "model": model,
            "reserved": held, "actual": None, "offset": offset, "decided_at": decided_at, "settled_by": None,
            "weights_version": version, "period": period}


class Router:
    """Routes batches of query records with a RoutingEngine (any :class:`Engine`) under per-partition
    budget shares."""

    def __init__(self, engine: Engine, budgets: np.ndarray, partitions: int, topics: TopicNames,
                 weights: Callable[[], Weights | None], seed: int = 0,
                 cost_bound: CostBound = CostBound(), reserve_factor: float = 1.0,
                 dedup_window_s: float = 86_400.0, periods: BudgetPeriods = BudgetPeriods(),
                 periods_kept: int = 24) -> None:
        self.engine = engine
        self.models = engine.models
        self.total = np.asarray(budgets, dtype=np.float64)
        self.partitions = partitions
        self.share = self.total / partitions
        self.topics = topics
        self.weights = weights
        self.rng = np.random.default_rng(seed)
        self.controller = engine.controller(np.asarray(budgets, dtype=np.float64), seed)  # choices only: the
        # optimizer learns the weights with its own controller, the routers follow them
        self.cost_bound = cost_bound
        self.periods = periods  # a decision belongs to the budget period of the router's clock when it is made
        self.budgets = PartitionBudgets(self.models, self.share, reserve_factor, periods_kept)
        self.expiry = DecisionExpiry(dedup_window_s)
        self.observed = 0  # observation-phase decisions known to this process
        self.stale = True  # rebuild the ledger from the decisions before the next batch
        self.held: set[int] | None = None  # input partitions assigned to this process (None: all)

    def on_assigned(self, partitions: set[int]) -> None:
        """The input partitions this process now holds; the spend is rebuilt before the next batch."""
        self.held = partitions
        self.stale = True

    # -- budget state derived from the decisions ------------------------------------------
    def rebuild(self, decisions: Mapping[str, dict], aggregates: Mapping[str, dict]) -> None:
        """Recover the budget state of the held partitions from their aggregates and decision records."""
        held = self.held if self.held is not None else {int(k.split("/", 1)[0]) for k in (*decisions, *aggregates)}
        redone = self.budgets.recover(held, aggregates, decisions)
        self.expiry.reset(decisions, self.held)
        self.stale = False
        log.info("budget state recovered for partitions %s: %d decision records in the window, %d redone beyond "
                 "the aggregates", sorted(held), len(self.expiry.heap), redone)

    def share_of(self, weights: Weights | None, partition: int) -> np.ndarray:
        """``partition``'s budget share per model under ``weights`` in the partition's budget period: B/P without
        weights or shares, or when the weights were solved in an earlier period (shares are of one period's
        budgets); its current share when they were solved in a later period than the partition's (its clock
        lags: the closed period's shares stay) or are malformed or sum to more than a budget (logged)."""
        if weights is None or weights.shares is None:
            return self.share
        period = self.budgets.periods.get(partition)
        if period is not None and weights.period < period:
            return self.share
        if period is not None and weights.period > period:
            return self.budgets.ledger(partition).limits
        table = self.share_table(weights)
        if table is None:
            log.error("weights v%d carry budget shares that are not one row per input partition and model, or sum to "
                      "more than the budgets %s: partition %d keeps its share", weights.version, self.total.tolist(),
                      partition)
            return self.budgets.ledger(partition).limits
        return table[partition]

    def share_table(self, weights: Weights) -> np.ndarray | None:
        """``weights``' shares as a (P, M) table, or None when they are absent, not one row per input partition and
        model, or sum to more than a budget."""
        try:
            table = np.asarray(weights.shares, dtype=np.float64)
        except (TypeError, ValueError):  # absent, or rows of different lengths
            return None
        if table.shape != (self.partitions, len(self.models)) or np.any(table.sum(axis=0) > self.total * (1 + 1e-9)):
            return None
        return table

    def headroom(self, weights: Weights | None, partition: int, period: int) -> np.ndarray | None:
        """(P, M): what each other input partition could still reserve under ``weights`` as the optimizer saw it
        when it published them (share less reported use; ``partition``'s own row is -inf), or None when the weights
        carry no valid shares and use, or are of another budget period than ``partition``'s."""
        if weights is None or self.partitions < 2 or weights.shares is None or weights.partition_spent is None \
                or weights.period != period:
            return None
        table = self.share_table(weights)
        used = np.asarray(weights.partition_spent, dtype=np.float64)
        if table is None or used.shape != table.shape:
            return None
        room = np.maximum(table - used, 0.0)
        room[partition] = -np.inf
        return room

    def follow(self, weights: Weights | None, partition: int) -> int:
        """Apply ``weights``' share to ``partition``; return the version (0: none)."""
        version = 0 if weights is None else weights.version
        self.budgets.follow(partition, version, self.share_of(weights, partition))
        return version

    def behind(self, weights: Weights | None, decisions: Mapping[str, dict], aggregates: Mapping[str, dict]
               ) -> list[int]:
        """Held partitions whose state already used a newer version than ``weights`` (must not route yet)."""
        if self.stale:
            self.rebuild(decisions, aggregates)
        version = 0 if weights is None else weights.version
        return sorted(p for p in (self.held or ()) if self.budgets.version(p) > version)

    def acknowledge(self, partitions: set[int], decisions: Mapping[str, dict], aggregates: Mapping[str, dict]
                    ) -> tuple[list[int], list[Outgoing]]:
        """For the ``partitions`` not yet following the newest weights: follow them, and the acknowledgement
        events to send once their aggregates are saved (the optimizer frees a lowered share only then)."""
        if self.stale:
            self.rebuild(decisions, aggregates)
        weights = self.weights()
        if weights is None:
            return [], []
        moved = sorted(p for p in partitions if self.budgets.version(p) < weights.version)
        events = []
        for partition in moved:
            self.follow(weights, partition)
            ledger = self.budgets.ledger(partition)
            event = ObservationEvent(partition=partition, observed_at=time.time(), phase="learned",
                                     partition_spent=np.maximum(ledger.spent + ledger.reserved, 0.0).tolist(),
                                     weights_version=weights.version, period=self.budgets.periods.get(partition, 0))
            events.append(Outgoing(self.topics.observations, str(partition), event.model_dump_json().encode()))
        return moved, events

    def budget_shares(self) -> list[tuple[str, int, float, float, float]]:
        """(model, partition, share limit, reserved, settled) for every held partition and model."""
        partitions = sorted(self.held if self.held is not None else self.budgets.ledgers)
        return [(m, p, float(self.budgets.ledger(p).limits[i]), float(self.budgets.ledger(p).reserved[i]),
                 float(self.budgets.ledger(p).spent[i]))
                for p in partitions for i, m in enumerate(self.models)]

    def spent_per_model(self) -> dict[str, float]:
        """Dollars spent per model over the partitions this process holds state for."""
        totals = {m: 0.0 for m in self.models}
        for ledger in self.budgets.ledgers.values():
            for i, m in enumerate(self.models):
                totals[m] += float(ledger.spent[i] + ledger.reserved[i])
        return totals

    # -- decisions (mutate state) ---------------------------------------------------------
    def decide(self, batch: Prepared, decisions: MutableMapping[str, dict], aggregates: Mapping[str, dict]
               ) -> tuple[list[Outgoing], list[Outgoing]]:
        """Decide every new query of the batch and record each decision with its reservation.

        Returns (decision messages, observation messages for the optimizer: one per input partition with new
        decisions, their estimates in decision order).
        A query id decided before gets its stored decision re-emitted, with no new charge.
        """
        if self.stale:
            self.rebuild(decisions, aggregates)
        weights = self.weights()
        gamma = self.gamma_of(weights)
        period_now = self.periods.index(time.time())
        emitted: list[Outgoing] = []
        observed: list[Outgoing] = []
        by_partition: dict[int, list[int]] = {}
        for row, (record, query) in enumerate(zip(batch.records, batch.queries)):
            previous = decisions.get(state_key(record.partition, query.id))
            if previous is not None:
                log.info("query %s decided before (partition %d): re-emitting, no new charge", query.id,
                         record.partition)
                emitted.append(Outgoing(previous["topic"], query.id, previous["value"].encode(),
                                        partition=previous.get("partition")))
            else:
                by_partition.setdefault(record.partition, []).append(row)
        assert batch.estimates is not None or not by_partition
        for partition, rows in by_partition.items():
            rows = self.first_of_each_id(batch.queries, rows)
            period, ledger = self.budgets.current(partition, period_now)
            version = self.follow(weights, partition)
            self.controller.follow(gamma)
            est = batch.estimates.take(rows)  # type: ignore[union-attr]
            targets = self.handover_targets(batch, rows, est, partition, period, None if gamma is None else weights)
            if np.any(targets >= 0):
                for row, target in zip(rows, targets):
                    if target >= 0:
                        emitted.append(self.hand_over(batch, row, int(target), decisions, version, period))
                kept = np.flatnonzero(targets < 0)
                rows, est = [rows[j] for j in kept], est.take(kept)
            remaining = ledger.remaining()
            choices, scores = self.controller.choices(est, remaining, self.rng)
            phase = "observation" if gamma is None else "learned"
            for j, row in enumerate(rows):
                query = batch.queries[row]
                if gamma is None:
                    self.observed += 1
                message, held, model = self.outcome(query, partition, est, j, int(choices[j]), float(scores[j]),
                                                    ledger, phase, weights)
                now = time.time()
                key = state_key(partition, query.id)
                decisions[key] = decision_record(message, model, held, batch.records[row].offset, now, version, period)
                self.expiry.add(key, now)
                emitted.append(message)
            observed.append(self.observation(partition, [batch.queries[row].id for row in rows], est, phase, version,
                                             period, ledger.spent + ledger.reserved))
        return emitted, observed

    def handover_targets(self, batch: Prepared, rows: list[int], est: Estimates, partition: int, period: int,
                         weights: Weights | None) -> np.ndarray:
        """Per row (``est``: their estimates), the input partition to hand the query over to (-1: decide it here)
        under learned ``weights`` (None in the observation phase: none), never for a query handed over already
        (``streams.service.shares``)."""
        headroom = self.headroom(weights, partition, period)
        if headroom is None or not rows:
            return np.full(len(rows), -1, dtype=np.int64)
        eligible = np.array([batch.queries[row].handed_over_from is None for row in rows])
        ledger = self.budgets.ledger(partition)
        return handover_targets(lambda budget: self.controller.choices(est, budget, self.rng)[0], est.cost,
                                ledger.remaining(), headroom, ledger.reserve_factor, eligible)

    def hand_over(self, batch: Prepared, row: int, target: int, decisions: MutableMapping[str, dict], version: int,
                  period: int) -> Outgoing:
        """The query at ``row``, marked as handed over, for input partition ``target``; recorded as decided here."""
        record, query = batch.records[row], batch.queries[row]
        handed = query.model_copy(update={"handed_over_from": record.partition})
        message = Outgoing(self.topics.queries, query.id, handed.model_dump_json(exclude_none=True).encode(),
                           partition=target, label=("handed-over", str(target)))
        now = time.time()
        key = state_key(record.partition, query.id)
        decisions[key] = decision_record(message, None, 0.0, record.offset, now, version, period)
        self.expiry.add(key, now)
        return message

    @staticmethod
    def first_of_each_id(queries: Sequence[QueryEvent], rows: list[int]) -> list[int]:
        """Rows with an id not seen earlier in the batch (a repeat within a batch is re-emitted by the
        next delivery, never decided twice)."""
        seen: set[str] = set()
        keep = []
        for row in rows:
            if queries[row].id not in seen:
                seen.add(queries[row].id)
                keep.append(row)
        return keep

    def gamma_of(self, weights: Weights | None) -> np.ndarray | None:
        """gamma in the engine's model order, or None (observation phase)."""
        if weights is None:
            return None
        if tuple(weights.models) != self.models:
            log.error("weights v%d are for models %s, the router has %s: ignored", weights.version,
                      weights.models, list(self.models))
            return None
        return np.asarray(weights.gamma, dtype=np.float64)

    def observation(self, partition: int, ids: Sequence[str], est: Estimates, phase: str, version: int,
                    period: int, spent: np.ndarray) -> Outgoing:
        """The observation event of a batch's decisions on ``partition`` (``ids`` with the estimates ``est``, in
        decision order): the weights version they were decided with, their budget period and the partition's
        spend in that period after them."""
        rows = [ObservedDecision(id=i, quality=q, cost=c) for i, q, c in zip(ids, est.quality.tolist(),
                                                                            est.cost.tolist())]
        event = ObservationEvent(partition=partition, observed_at=time.time(), phase=phase, weights_version=version,
                                 period=period, partition_spent=np.maximum(spent, 0.0).tolist(), rows=rows)
        return Outgoing(self.topics.observations, str(partition), event.model_dump_json().encode())

    def outcome(self, query: QueryEvent, partition: int, est: Estimates, j: int, choice: int, score: float,
                ledger: BudgetLedger, phase: str, weights: Weights | None
                ) -> tuple[Outgoing, float, str | None]:
        """(message, reserved dollars, model or None) for one query's choice; a routed query's reservation
        is held in ``ledger``."""
        version = None if weights is None else weights.version
        now = time.time()
        held = ledger.reserve(choice, float(est.cost[j, choice])) if choice >= 0 else None
        if held is not None:
            model = self.models[choice]
            routed = RoutedQuery(query=query, model=model, partition=partition, phase=phase,
                                 estimated_quality=float(est.quality[j, choice]), estimated_cost=float(est.cost[j, choice]),
                                 reserved_cost=held, score=score if np.isfinite(score) else None,
                                 weights_version=version, routed_at=now)
            return (Outgoing(self.topics.routed[model], query.id, routed.model_dump_json().encode(),
                             label=("routed", f"{model}/{phase}")), held, model)
        if choice >= 0 or not np.any(est.cost[j] <= ledger.remaining()):
            reason, detail = "no-budget", "the chosen model's remaining budget share does not cover the reservation"
        elif phase == "observation":
            reason, detail = "observation-skip", "the observation phase drew 'skip' (or declined: no model scores above zero under the history prior)"
        else:
            reason, detail = "declined", "no model scores above zero under the learned weights"
        unserved = UnservedQuery(query_id=query.id, partition=partition, reason=reason, detail=detail,
                                 phase=phase, weights_version=version, decided_at=now)
        return (Outgoing(self.topics.unserved, query.id, unserved.model_dump_json().encode(),
                         label=("unserved", reason)), 0.0, None)

    def reconcile(self, record: Record, decisions: MutableMapping[str, dict]) -> list[Outgoing]:
        """Replace a reservation by the actual cost of a completion (once per query); DLQ if invalid."""
        try:
            completion = Completion.model_validate_json(record.value or b"")
        except ValidationError as exc:
            return [dead_letter(self.topics.dlq, record, validation_reason(exc))]
        key = state_key(record.partition, completion.query_id)
        decision = decisions.get(key)
        if decision is None or decision["model"] != completion.model:
            log.warning("completion of %s by %s on partition %d matches no decision: ignored",
                        completion.query_id, completion.model, record.partition)
            return []
        if self.budgets.applied(record.partition, record.offset) or decision["actual"] is not None:
            return []  # in the sums already, or a second completion of the query
        bound = self.cost_bound.limit(decision["reserved"])
        if not completion.cost <= bound:
            reason = (f"completion of {completion.query_id} by {completion.model} claims ${completion.cost:.6g}, beyond "
                      f"the plausible bound ${bound:.6g} (max({self.cost_bound.factor:g} x the reserved estimate "
                      f"${decision['reserved']:.6g}, cap ${self.cost_bound.cap:g})); the reservation stays held")
            log.warning("dlq: %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
            return [dead_letter(self.topics.dlq, record, reason)]
        if completion.cost > decision["reserved"]:
            log.error("completion of %s by %s claims $%.6g, beyond its reservation $%.6g: the worker broke the budget "
                      "rule; charged in full", completion.query_id, completion.model, completion.cost,
                      decision["reserved"])
        decisions[key] = {**decision, "actual": completion.cost, "settled_by": record.offset}
        if not self.stale:
            self.budgets.settle(record.partition, completion.model, decision["reserved"], completion.cost, record.offset,
                                int(decision.get("period", 0)))
        return []
