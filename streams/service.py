"""The router process's stream work, between Faust's agents and the per-batch Router.

One ``RouterService`` per process holds the Router, the weights watcher, the optimizer and
the two changelog-backed tables (decisions, progress). ``streams.app`` wires its methods
to Faust agents, pages and timers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, MutableMapping, Sequence

from router_core.engine import RoutingEngine
from streams import metrics, telemetry
from streams import topics as T
from streams.config import ServiceConfig
from streams.data import budgets_in_order
from streams.gaps import log_start, read_range
from streams.router import CostBound, Outgoing, Record, Router, TopicNames, finite_or_none
from streams.weights import Optimizer, WeightsWatcher

log = logging.getLogger(__name__)


def topic_names(config: ServiceConfig) -> TopicNames:
    """The router's output topics."""
    t = config.topics
    return TopicNames(observations=t.name(T.OBSERVATIONS), unserved=t.name(T.UNSERVED), dlq=t.name(T.DLQ),
                      routed={m.name: config.routed_topic(m.name) for m in config.models})


class RouterService:
    """Routes micro-batches: skipped-input repair, the observation quota, persist-then-send."""

    def __init__(self, config: ServiceConfig, engine: RoutingEngine, producer: Any,
                 decisions: MutableMapping[str, Any], progress: MutableMapping[str, Any]) -> None:
        self.config = config
        self.producer = producer  # Faust's producer: the changelog writes go through it too
        self.decisions = decisions
        self.progress = progress
        self.kafka_conf = config.kafka.confluent()
        self.names = topic_names(config)
        self.queries_topic = config.topics.name(T.QUERIES)
        self.budgets = budgets_in_order(config, engine.models)
        self.watcher = WeightsWatcher(self.kafka_conf, config.topics.name(T.WEIGHTS), engine.models)
        self.router = Router(engine, self.budgets, config.topics.query_partitions, self.names, self.watcher.latest,
                             seed=config.router.seed, cost_bound=CostBound(config.router.completion_cost_factor,
                                                                           config.router.completion_cost_cap))
        self.optimizer = Optimizer(engine, self.budgets, self.kafka_conf, self.names.observations,
                                   config.topics.name(T.WEIGHTS), self.watcher)
        self.resumed: set[int] = set()  # input partitions routed since the last assignment
        self.gave_up_waiting = False  # True once waiting for the weights timed out
        self.sent: Counter = Counter()

    def start_background(self) -> None:
        """Follow the weights topic; export metrics and consumer lag."""
        self.watcher.start()
        telemetry.start(self.router, self.kafka_conf, self.config.topics.prefix)

    async def wait_until_ready(self) -> None:
        """Before routing: read the weights topic to its end, and count the observations so far."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.watcher.caught_up.wait)
        if self.watcher.latest() is None:
            self.router.observed = await loop.run_in_executor(None, T.topic_size, self.kafka_conf,
                                                              self.names.observations)

    def on_assigned(self, partitions: set[int]) -> None:
        """A rebalance gave this process ``partitions`` of the queries topic."""
        self.router.on_assigned(partitions)
        self.resumed.clear()

    async def route_batch(self, records: list[Record]) -> None:
        """Route one micro-batch taken from the queries topic."""
        records = await self.with_skipped(records)
        await self.route_records(await self.route_observing(records))

    async def with_skipped(self, records: list[Record]) -> list[Record]:
        """Prepend the messages a partition skipped since its last routed offset (see streams.gaps)."""
        for partition in sorted({r.partition for r in records} - self.resumed):
            self.resumed.add(partition)
            first = min(r.offset for r in records if r.partition == partition)
            loop = asyncio.get_running_loop()
            expected = self.progress.get(f"{partition}/next")
            if expected is None:  # nothing routed from this partition yet: expect its first offset
                expected = await loop.run_in_executor(None, log_start, self.kafka_conf, self.queries_topic, partition)
            log.info("routing partition %d from offset %d (next expected: %d)", partition, first, expected)
            if first > expected:
                skipped = await loop.run_in_executor(
                    None, read_range, self.kafka_conf, self.queries_topic, partition, expected, first)
                log.warning("partition %d: the consumer skipped offsets %d..%d; routing those %d messages first",
                            partition, expected, first - 1, len(skipped))
                records = skipped + records
        return records

    async def route_observing(self, records: list[Record]) -> list[Record]:
        """Route at most the observation quota ceil(eps*N) in the observation phase, then wait for the
        weights; return the records left for the learned rule."""
        while records and self.watcher.latest() is None and not self.gave_up_waiting:
            room = self.optimizer.target - self.router.observed
            if room <= 0:
                self.gave_up_waiting = not await self.wait_for_weights()
                break
            await self.route_records(records[:room])
            records = records[room:]
        return records

    async def wait_for_weights(self) -> bool:
        """Pause routing until the weights arrive (at most ``router.weights_wait_s``); False on time-out."""
        wait = self.config.router.weights_wait_s
        deadline = time.monotonic() + wait
        while self.watcher.latest() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.watcher.latest() is None:
            log.warning("no weights %.0fs after this router's observation quota; observing on until they come", wait)
            return False
        return True

    async def route_records(self, records: list[Record]) -> None:
        """Validate, estimate and decide ``records``; persist the decisions; then send the outputs."""
        if not records:
            return
        started = time.perf_counter()
        prepared = await asyncio.get_running_loop().run_in_executor(None, self.router.prepare, records)
        emitted, observed = self.router.decide(prepared, self.decisions)
        for partition in {r.partition for r in records}:
            self.progress[f"{partition}/next"] = max(r.offset for r in records if r.partition == partition) + 1
        telemetry.record_batch(prepared, emitted, time.perf_counter() - started)
        await self.producer.flush()  # decisions and reservations reach the changelog first
        await self.send_all(prepared.dead + observed + emitted)

    async def reconcile(self, record: Record) -> None:
        """Apply one completion to the budget state."""
        await self.send_all(self.router.reconcile(record, self.decisions))

    async def on_observation(self, offset: int) -> None:
        """One observation arrived at ``offset``: solve when the quota is complete."""
        metrics.record_observations(offset + 1, self.optimizer.target)
        await asyncio.get_running_loop().run_in_executor(None, self.optimizer.on_observation, offset)

    async def send_all(self, messages: Sequence[Outgoing]) -> None:
        """Send ``messages`` and wait until the broker acknowledged all of them."""
        futures = [await self.producer.send(m.topic, None if m.key is None else m.key.encode(), m.value,
                                            m.partition, None, None) for m in messages]
        await asyncio.gather(*futures)
        for message in messages:
            self.sent[message.topic] += 1

    def budget_report(self) -> dict[str, dict[str, float]]:
        """Limit and spent dollars per model, over the partitions this process holds."""
        totals = self.router.spent_per_model()
        return {m: {"limit": float(b), "spent": totals[m]} for m, b in zip(self.router.models, self.budgets)}

    def state(self) -> dict[str, Any]:
        """The /state page."""
        weights = self.watcher.latest()
        budgets = {m: {k: finite_or_none(v) for k, v in b.items()} for m, b in self.budget_report().items()}
        return {"budgets": budgets, "weights_version": None if weights is None else weights.version,
                "sent": dict(self.sent), "partitions": sorted(self.router.held or [])}

    def log_report(self) -> None:
        """One log line for operators: messages sent, weights, budget burn."""
        burn = {m: round(v["spent"] / v["limit"], 3) if v["limit"] else None for m, v in self.budget_report().items()}
        log.info("router: sent %s; weights %s; budget used (share of limit, partitions held) %s",
                 dict(self.sent), self.watcher.describe(), burn)
