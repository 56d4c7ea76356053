"""The learned weights on the compacted ``weights`` topic: follow them, and learn them continuously.

Every router process runs a ``WeightsWatcher`` (a confluent-kafka consumer without a group
that reads the topic from the beginning), so every instance applies the newest weights and
a restarted router recovers them instead of observing again. The ``Optimizer`` runs where
the single ``observations`` partition is consumed: every decision reports its estimates there.

Only records under the key ``weights`` count. A record there that is not applicable (not valid
JSON of ``RoutingWeights``, a tombstone, another set of models, an older version) is ignored,
and because compaction keeps only the newest record of the key, the watcher then publishes
the weights it applies again: the key's newest record is valid again and survives compaction.
Weights for the same models in another order are applied with gamma reordered by model name.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator, Sequence

import numpy as np
from pydantic import ValidationError

from router_core.dual import DualSolution
from router_core.engine import RoutingEngine
from router_core.params import BudgetParams
from router_core.periods import forecast_volume
from schemas import ObservationEvent, RoutingWeights
from schemas.events import ShareStep
from streams import kafka
from streams.service.shares import ShareBook
from streams.service.solve_job import SolveJob

log = logging.getLogger(__name__)

WEIGHTS_KEY = b"weights"


class WeightsWatcher:
    """Keeps the newest RoutingWeights of a topic; ``caught_up`` is set once the start-up backlog is read."""

    def __init__(self, kafka_conf: dict[str, str], topic: str, models: Sequence[str]) -> None:
        self.kafka_conf = kafka_conf
        self.topic = topic
        self.models = tuple(models)
        self.caught_up = threading.Event()
        self._latest: RoutingWeights | None = None
        self._damaged = False  # the weights key's newest record read is not the weights applied
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="weights-watcher", daemon=True)

    def start(self) -> None:
        """Start following the topic in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        self._thread.join(timeout=10)

    def latest(self) -> RoutingWeights | None:
        """The newest valid weights seen, or None (observation phase)."""
        return self._latest

    def _run(self) -> None:
        from confluent_kafka import KafkaError

        consumer = kafka.consumer(self.kafka_conf, "unused-weights-watcher", **{"enable.partition.eof": True})
        kafka.assign(consumer, self.topic, {0: None})
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        if not self.caught_up.is_set():
                            log.info("weights: start-up backlog read; current: %s", self.describe())
                        self.caught_up.set()
                        self._repair()
                    else:
                        log.warning("weights consumer: %s", message.error())
                    continue
                self._apply(message.key(), message.value(), message.offset())
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """Apply the record's weights, or note that the weights key's newest record is not applicable."""
        if key != WEIGHTS_KEY:
            log.error("weights topic %s: record at offset %d has key %r, not %r: ignored", self.topic, offset,
                      key, WEIGHTS_KEY)
            return
        weights = self._applicable(value)
        if isinstance(weights, str):
            log.error("weights topic %s: record at offset %d ignored: %s", self.topic, offset, weights)
            self._damaged = True
            return
        self._latest = weights
        self._damaged = False
        log.info("weights: applying %s", self.describe())

    def _applicable(self, value: bytes | None) -> RoutingWeights | str:
        """The record's weights in the router's model order, or why they do not apply."""
        if value is None:
            return "a tombstone"
        try:
            weights = RoutingWeights.model_validate_json(value)
        except ValidationError as exc:
            return f"not valid RoutingWeights: {exc}"
        aligned = align_weights(weights, self.models)
        if isinstance(aligned, RoutingWeights) and self._latest is not None and aligned.version < self._latest.version:
            return f"version {aligned.version} is older than the applied version {self._latest.version}"
        return aligned

    def _repair(self) -> None:
        """Once the topic is read to its end: if the weights key's newest record is not the applied weights,
        publish those again, so that what compaction keeps is valid."""
        if not self._damaged or self._latest is None:
            return
        log.warning("weights topic %s: republishing v%d over an inapplicable record", self.topic, self._latest.version)
        try:
            publish_weights(self.kafka_conf, self.topic, self._latest)
        except RuntimeError as exc:
            log.error("weights topic %s: could not republish the weights (will retry on the next record): %s",
                      self.topic, exc)

    def describe(self) -> str:
        """One line about the current weights."""
        w = self._latest
        if w is None:
            return "none (observation phase)"
        return f"v{w.version} solver={w.solver} objective={w.objective:.4g} sample={w.sample_size}"


def align_weights(weights: RoutingWeights, models: Sequence[str]) -> RoutingWeights | str:
    """``weights`` with gamma in the order of ``models``, or why they cannot apply (another set of models)."""
    if sorted(weights.models) != sorted(models):
        return f"weights v{weights.version} are for models {weights.models}, the router has {list(models)}"
    order = [list(weights.models).index(m) for m in models]
    update: dict[str, Any] = {"models": list(models), "gamma": [weights.gamma[i] for i in order]}
    if weights.shares is not None:
        update["shares"] = [[row[i] for i in order] for row in weights.shares]
    return weights.model_copy(update=update)


def weights_producer(kafka_conf: dict[str, str]) -> Any:
    """A producer for the weights topic: every acknowledgement from all replicas, idempotent."""
    return kafka.producer(kafka_conf, **{"enable.idempotence": True, "linger.ms": 0})


def publish_weights(kafka_conf: dict[str, str], topic: str, weights: RoutingWeights, producer: Any = None) -> None:
    """Write ``weights`` under the weights key and wait for the broker's acknowledgement (RuntimeError if none);
    through ``producer`` when given, else a new one."""
    producer = producer or weights_producer(kafka_conf)
    producer.produce(topic, key=WEIGHTS_KEY, value=weights.model_dump_json().encode())
    if producer.flush(30) != 0:
        raise RuntimeError(f"could not publish weights to {topic}")


def read_observations(kafka_conf: dict[str, str], topic: str, start: int, stop: int,
                      timeout: float = 60.0) -> Iterator[tuple[int, ObservationEvent]]:
    """(offset, event) for the valid observations at offsets ``start`` to ``stop - 1`` (partition 0)."""
    if start >= stop:
        return
    consumer = kafka.consumer(kafka_conf, "unused-observation-reader")
    kafka.assign(consumer, topic, {0: start})
    deadline = time.monotonic() + timeout
    try:
        last = start - 1
        while last < stop - 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {topic} to offset {last} of {start}..{stop - 1} in {timeout}s")
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            last = message.offset()
            if last >= stop:
                break
            event = parse_observation(message.value(), last)
            if event is not None:
                yield last, event
    finally:
        consumer.close()


def decisions_observed(kafka_conf: dict[str, str], topic: str) -> int:
    """Decisions reported in the observations topic so far (the rows of its valid events)."""
    return sum(len(event.rows) for _, event in read_observations(kafka_conf, topic, 0, kafka.topic_size(kafka_conf, topic)))


def parse_observation(value: bytes | None, offset: int) -> ObservationEvent | None:
    """The observation at ``offset``, or None (logged) when it is not valid."""
    try:
        return ObservationEvent.model_validate_json(value or b"")
    except ValidationError as exc:
        log.error("observations topic holds an invalid message at offset %d, skipped: %s", offset, exc)
        return None


class Optimizer:
    """Learns the weights from every decision, on the single ``observations`` partition, with
    ``router_core.controller.PortController``: the first solve once ceil(eps * N) decisions were
    observed, then a re-solve every ``port.resolve_every`` decisions on the bounded sample with the
    budgets left; each solution is a new ``RoutingWeights`` version on the compacted topic. Each
    observation event holds one batch's decisions on one input partition: its rows are accounted in
    order and a solve due within the batch is taken once after it.

    A solve is four steps: ``job`` (cheap, in order with ``on_observation``), ``solve_job`` (pure: any
    thread or process), ``controller.apply`` (in order with ``on_observation``) and ``publish`` (blocks).

    The budgets left are the configured budgets less what every input partition has spent
    (reserved and settled), as its newest observation reports it. Each version also carries the
    input partitions' budget shares, reassigned by ``streams.service.shares.ShareBook``. After a restart, or when the
    partition comes back after a rebalance, it resumes from the newest weights: their gamma, the
    decisions and spend they had seen, and the observations read again from the topic (the
    sample's last ``port.resolve_window`` and every one after). A version is always above the
    newest one followed.

    Budget periods (``budget.period``): the first observation of a later period restarts the
    controller (``PortController.restart_period``) with the full budgets and the period's expected
    volume (``expected_volume``); the spend of the closed period no longer counts. An observation of
    an earlier period (a late batch) still teaches its estimates, but its spend is not the current
    period's.
    """

    def __init__(self, engine: RoutingEngine, budgets: np.ndarray, kafka_conf: dict[str, str],
                 observations_topic: str, weights_topic: str, watcher: WeightsWatcher, partitions: int,
                 budget: BudgetParams = BudgetParams()) -> None:
        self.engine = engine
        self.budgets = np.asarray(budgets, dtype=np.float64)
        self.kafka_conf = kafka_conf
        self.observations_topic = observations_topic
        self.weights_topic = weights_topic
        self.watcher = watcher
        self.controller = engine.controller(self.budgets)
        if budget.period_queries is not None:  # the first period's volume too
            self.controller.restart_period(self.budgets, budget.period_queries)
        self.target = self.controller.n_observe
        self.book = ShareBook(self.budgets, partitions, engine.port.resolve_window)
        self.budget = budget
        self.grid = budget.grid()
        self.period: int | None = None  # the budget period accounted for (None: none yet)
        self.period_first_at: float | None = None  # when the period's first decision seen was made
        self.next_offset: int | None = None  # None until resumed from the topic
        self.version = 0
        self.producer: Any = None  # created with the first solve

    def on_observation(self, offset: int, value: bytes | None) -> bool:
        """Account for one observation (its offset and value), in order; True when a solve is due
        (then call ``publish``). Cheap: the caller may run it on its event loop, but ``resume`` first."""
        assert self.next_offset is not None, "resume() before the first observation"
        if offset < self.next_offset:
            return False  # accounted for before a restart
        self.next_offset = offset + 1
        event = parse_observation(value, offset)
        if event is None:
            return False
        self.account(event)
        return event.decided and self.controller.due()  # an acknowledgement adds no decision: nothing falls due

    def account(self, event: ObservationEvent) -> None:
        """Add the event's decisions to the sample and the count, in order (an acknowledgement adds none); take its
        partition's weights version, and its spend when the event is of the current budget period."""
        if self.period is None or event.period > self.period:
            self.start_period(event.period, event.observed_at)
        for row in event.rows:
            self.controller.record(np.asarray(row.quality), np.asarray(row.cost))
        spent = event.partition_spent
        if event.partition >= self.book.partitions:
            log.error("observation of input partition %d, beyond the %d configured: ignored by the budget shares",
                      event.partition, self.book.partitions)
            return
        used = (np.asarray(spent, dtype=np.float64)
                if event.period == self.period and spent is not None and len(spent) == len(self.budgets) else None)
        self.book.observe(event.partition, event.weights_version, used,
                          np.array([row.cost for row in event.rows], dtype=np.float64) if event.decided else None)

    def expected_volume(self, period: int) -> int:
        """Decisions expected in ``period``: ``budget.period_queries`` when set; else, after a closed period, its
        arrival rate (decisions seen from its start, or its first decision when later, to the new period's start)
        x the period's length; else (the first period, or periods off) the controller's ``port.n_expected``."""
        fallback = self.engine.port.n_expected
        if self.budget.period_queries is not None:
            return self.budget.period_queries
        if self.period is None or self.grid.length_s is None:
            return fallback
        since = max(self.grid.start(self.period), self.period_first_at or 0.0)
        return forecast_volume(self.controller.seen, since, self.grid.start(period), self.grid.length_s, fallback)

    def start_period(self, period: int, first_at: float) -> None:
        """Move on to ``period`` at its first observation (made at ``first_at``): full budgets, the period's
        expected volume, no spend yet, the re-solve schedule from zero (the controller's ``restart_period``)."""
        if self.period is not None:
            self.controller.restart_period(self.budgets, self.expected_volume(period))
            log.info("optimizer: budget period %d starts, %d decisions expected", period, self.controller.n_expected)
            self.book.restart_period(self.version)
        self.period, self.period_first_at = period, first_at

    def remaining(self) -> np.ndarray:
        """The budgets left: the configured budgets less every partition's spend."""
        return self.budgets - self.book.used().sum(axis=0)

    def needs_resume(self, offset: int) -> bool:
        """Whether ``resume`` must run before the observation at ``offset``: at the start, and after a gap
        (observations another router's optimizer accounted for while it held the partition)."""
        return self.next_offset is None or offset > self.next_offset

    def resume(self, offset: int) -> None:
        """Before the first observation at ``offset``: take up the newest weights' state and read the
        observations since again (those before them only refill the sample). Blocks (reads the topic)."""
        self.watcher.caught_up.wait()  # weights published before a restart count
        latest = self.watcher.latest()
        self.controller.sample.clear()
        self.book = ShareBook(self.budgets, self.book.partitions, self.book.recent.maxlen or 1)
        start = 0
        if latest is not None and latest.next_offset > 0:
            self.version = latest.version
            self.controller.follow(np.asarray(latest.gamma))
            if latest.period_expected:  # the period's schedule as the optimizer that published them had it
                self.controller.restart_period(self.budgets, latest.period_expected)
                self.controller.start = latest.schedule_start
            self.period, self.period_first_at = latest.period, latest.period_first_at
            self.controller.seen = self.controller.solved_at = latest.decisions_seen
            self.resume_shares(latest)
            start = latest.next_offset
            window = self.engine.port.resolve_window
            rows = [row for _, event in read_observations(self.kafka_conf, self.observations_topic,
                                                          max(start - window, 0), start) for row in event.rows]
            for row in rows[-window:]:  # events with rows hold one decision or more: window events cover the sample
                self.controller.sample.add(np.asarray(row.quality), np.asarray(row.cost))
        elif latest is not None:  # weights from elsewhere (an operator): follow them, learn on from here
            self.version = latest.version
            self.controller.follow(np.asarray(latest.gamma))
            self.resume_shares(latest)
            start = offset
        for _, event in read_observations(self.kafka_conf, self.observations_topic, start, offset):
            self.account(event)
        self.next_offset = max(start, offset)
        log.info("optimizer: resumed at observation %d (weights v%d, %d decisions seen, sample %d)", offset,
                 self.version, self.controller.seen, len(self.controller.sample))

    def resume_shares(self, latest: RoutingWeights) -> None:
        """Take up the share bounds of the newest weights (weights without them: every partition at B/P from
        their version on)."""
        used = latest.partition_spent or []
        if latest.share_acks is not None and latest.share_steps is not None:
            self.book.restore(latest.share_acks, [[(s.version, s.share) for s in steps] for steps in latest.share_steps],
                              used)
            return
        self.book.restore_even(latest.version, used)

    def job(self) -> SolveJob:
        """The solve due now, on the sample and the budgets left (call in order with ``on_observation``)."""
        assert self.next_offset is not None
        observed, budgets, eps = self.controller.problem(self.remaining())
        return SolveJob(observed, budgets, eps, self.controller.seen, self.next_offset, self.period or 0)

    def current(self, job: SolveJob) -> bool:
        """Whether ``job`` is of the current budget period (a solution of a closed one is dropped: its budgets
        and schedule are gone, and its shares would be another period's)."""
        return job.period == (self.period or 0)

    def weights(self, job: SolveJob, solution: DualSolution, seconds: float = 0.0) -> RoutingWeights:
        """The next version: ``solution`` of ``job`` (solved in ``seconds``; ``controller.apply`` it first) with the
        budget shares proposed now. Call in order with ``on_observation`` (the share book is not thread-safe), then
        ``publish`` it."""
        latest = self.watcher.latest()
        self.version = max(self.version, 0 if latest is None else latest.version) + 1
        shares = self.book.propose()
        self.book.publish(self.version, shares)
        acks, steps = self.book.state()
        weights = RoutingWeights(
            version=self.version, models=list(self.engine.models), gamma=[float(g) for g in solution.gamma],
            alpha=self.engine.port.alpha, eps=self.engine.port.eps, solver=solution.solver,
            objective=float(solution.objective), cost_scale=float(self.engine.cost_scale),
            sample_size=max(len(job.observed), 1), created_at=time.time(),
            decisions_seen=job.seen, next_offset=job.next_offset, period=job.period,
            period_expected=self.controller.n_expected, period_first_at=self.period_first_at,
            schedule_start=self.controller.start,
            partition_spent=self.book.used().tolist(), shares=shares.tolist(), share_acks=acks,
            share_steps=[[ShareStep(version=v, share=s) for v, s in part] for part in steps],
        )
        log.info("optimizer: solved on %d of %d decisions in %.3fs (%s), gamma=%s", len(job.observed), job.seen,
                 seconds, solution.solver, np.round(solution.gamma, 4).tolist())
        return weights

    def publish(self, weights: RoutingWeights) -> RoutingWeights:
        """Write ``weights`` to the weights topic and return them. Blocks until the broker acknowledged them."""
        if self.producer is None:
            self.producer = weights_producer(self.kafka_conf)
        publish_weights(self.kafka_conf, self.weights_topic, weights, self.producer)
        log.info("optimizer: published weights v%d to %s", weights.version, self.weights_topic)
        return weights
