"""The router process's stream work, between Faust's agents and the per-batch Router.

One ``RouterService`` per process holds the Router, the weights watcher, the optimizer and
the three changelog-backed tables (decisions, budgets, progress). ``streams.service.app`` wires its methods
to Faust agents, pages and timers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, MutableMapping, Sequence

from router_core.engine import RoutingEngine
from streams import metrics
from streams.service import telemetry
from streams import topics as T
from streams.service.batch_stages import BatchStages, Stopwatch
from streams.config import ServiceConfig, topic_name
from streams.service.budget_state import aggregate_key
from streams.service.data import budgets_in_order
from streams.service.ledger import state_key
from streams.service.output import OutputProducer
from streams.service.pipeline import BatchPipeline, InFlight, after, sent_before
from streams.service.query_input import InputPositions, Polled, QueryInput
from streams.service.messages import Outgoing, Record
from streams.service.prepare import Prepared, Preparer
from streams.service.prepare_process import PrepareProcess
from streams.service.router import CostBound, Router, TopicNames, finite_or_none
from streams.service.watchdog import StallWatchdog
from streams.service.solver import CoalescingSolver
from streams.service.weights import Optimizer, WeightsWatcher, decisions_observed

log = logging.getLogger(__name__)

FETCHES_AHEAD = 2  # batches polled and prepared ahead of the one being decided: one is prepared while the
# next is polled (docs/PERFORMANCE-STREAMS.md, "Session 19": 1.23x and 1.35x one ahead at batch 128)


def progress_key(partition: int) -> str:
    """Key of the next offset to route of input ``partition`` in the progress table."""
    return state_key(partition, "next")


def input_hint_group(config: ServiceConfig) -> str:
    """The consumer group under which the router commits its input positions, for lag dashboards only."""
    return topic_name(config.topics.prefix + config.router.app_id + "-queries")


async def flush_changelog(producer: Any, deadline_s: float = 120.0) -> None:
    """Wait until every table write so far is on the broker. Faust's ``Producer.flush`` is not enough: its
    buffer's flush returns once no message left the buffer for 0.1 s (as when aiokafka waits for a full batch
    to drain), and it does not wait for the message its sender task is handing to aiokafka. So: wait until
    the buffer is empty and its sender task idle (waiting for the next message), then flush. RuntimeError
    after ``deadline_s`` (the caller's persist fails and the loop re-reads)."""
    buffer = producer.buffer
    give_up = time.monotonic() + deadline_s
    while buffer.size or not (buffer.pending._getters or buffer.state != "running"):  # asyncio.Queue: a getter
        # waiting = the sender task idles (a stopped buffer sends nothing: its flush below raises if it holds any)
        if time.monotonic() > give_up:
            raise RuntimeError(f"Faust's producer buffer did not drain within {deadline_s:.0f}s ({buffer.size} left)")
        await buffer.flush()
        await asyncio.sleep(0.001)
    await producer.flush()


def topic_names(config: ServiceConfig) -> TopicNames:
    """The router's output topics."""
    t = config.topics
    return TopicNames(observations=t.name(T.OBSERVATIONS), unserved=t.name(T.UNSERVED), dlq=t.name(T.DLQ),
                      queries=t.name(T.QUERIES),
                      routed={m.name: config.routed_topic(m.name) for m in config.models})


@dataclass
class Acknowledgement:
    """Partitions that followed a new weights version outside a batch: their budget aggregates (with the new
    version) and the observation events, without rows, that tell the optimizer."""

    snapshots: dict[int, dict]
    events: list[Outgoing]


@dataclass
class Fetched:
    """A batch polled and prepared ahead of its decisions, with its stage laps so far."""

    polled: Polled
    prepared: Prepared
    watch: Stopwatch


class RouterService:
    """Routes micro-batches read from the positions the service owns; persists, then sends."""

    def __init__(self, config: ServiceConfig, engine: RoutingEngine, producer: Any,
                 decisions: MutableMapping[str, Any], progress: MutableMapping[str, Any],
                 aggregates: MutableMapping[str, Any]) -> None:
        self.config = config
        self.producer = producer  # Faust's producer: the changelog writes of the tables
        self.decisions = decisions
        self.progress = progress
        self.aggregates = aggregates
        self.kafka_conf = config.kafka.confluent()
        self.output = OutputProducer(self.kafka_conf)  # everything the router sends besides the changelogs
        self.names = topic_names(config)
        self.queries_topic = config.topics.name(T.QUERIES)
        self.budgets = budgets_in_order(config, engine.models)
        self.watcher = WeightsWatcher(self.kafka_conf, config.topics.name(T.WEIGHTS), engine.models)
        self.router = Router(engine, self.budgets, config.topics.query_partitions, self.names, self.watcher.latest,
                             seed=config.router.seed, cost_bound=CostBound(config.router.completion_cost_factor,
                                                                           config.router.completion_cost_cap),
                             reserve_factor=config.budget.reserve_factor, dedup_window_s=config.router.dedup_window_s,
                             periods=config.budget.grid(), periods_kept=config.budget.periods_kept)
        self.preparer = PrepareProcess(config, Preparer(engine, self.names.dlq))
        self.optimizer = Optimizer(engine, self.budgets, self.kafka_conf, self.names.observations,
                                   config.topics.name(T.WEIGHTS), self.watcher, config.topics.query_partitions,
                                   config.budget)
        self.solver = CoalescingSolver(self.optimizer)
        self.positions = InputPositions()
        self.watchdog = StallWatchdog(config.router.stall_timeout_s)
        self.input: QueryInput | None = None
        self.polling = asyncio.Lock()  # one poll at a time (``fetch``)
        self.lock = asyncio.Lock()  # one decision at a time; held with every batch in flight drained by a
        # revocation, a re-read and the expiry
        self.pipeline = BatchPipeline(config.router.batches_in_flight)  # decided batches being persisted
        self.persist_failed = False  # a persist failed: drain, re-read the input, drop the batch prepared meanwhile
        self.pending: set[int] | None = None  # partitions assigned by the last rebalance, not yet read
        self.paused = False  # True while routing waits for the learned weights
        self.gave_up_waiting = False  # True once waiting for the weights timed out
        self.sent: Counter = Counter()
        self.stages = BatchStages()  # where the routed batches spent their time (the /state page)

    def start_background(self) -> None:
        """Follow the weights topic; spawn the solver and prepare processes; export metrics and consumer lag."""
        self.watcher.start()
        self.solver.start()
        self.preparer.start()
        telemetry.start(self.router, self.kafka_conf, self.config.topics.prefix)

    async def wait_until_ready(self) -> None:
        """Before routing: read the weights topic to its end, count the observations so far, and let the solver
        process come up (``CoalescingSolver.wait_up``)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.watcher.caught_up.wait)
        await self.solver.wait_up()
        if self.watcher.latest() is None:
            self.router.observed = await loop.run_in_executor(None, decisions_observed, self.kafka_conf,
                                                              self.names.observations)

    # -- ownership of the input, following Faust's assignment of the state --------------------
    def on_assigned(self, partitions: set[int]) -> None:
        """A rebalance gave this process the state of ``partitions``; read them once it is recovered."""
        self.pending = partitions
        self.router.on_assigned(partitions)

    async def on_revoked(self) -> None:
        """A rebalance is taking partitions away: finish the batches in flight, stop reading."""
        async with self.lock:
            await self.pipeline.drain()
            self.pending = None
            if self.input is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.input.assign, {})
            self.positions.hold({})
            await flush_changelog(self.producer)

    async def resume(self, partitions: set[int]) -> None:
        """Read ``partitions`` from the positions recorded in the recovered progress table."""
        positions = {p: self.progress.get(progress_key(p)) for p in sorted(partitions)}
        async with self.lock:
            await self.pipeline.drain()
            assert self.input is not None
            await asyncio.get_running_loop().run_in_executor(None, self.input.assign, positions)
            self.positions.hold(positions)
        log.info("reading queries from %s", ", ".join(
            f"partition {p} at {'the beginning' if o is None else f'offset {o}'}" for p, o in positions.items())
            or "no partition")

    async def run(self, recovered: Callable[[], bool]) -> None:
        """The routing loop: decide the batch polled and prepared ahead (``fetch``) while the next ones are
        polled and prepared (``FETCHES_AHEAD``), check its continuity, decide it, then persist it in the
        background while the next batches are decided (at most ``router.batches_in_flight`` persisting,
        chained in input order by ``pipeline``); follows assignments once ``recovered()``. After a failed
        persist every batch in flight is drained and the input re-read from the recorded positions."""
        await self.wait_until_ready()
        loop = asyncio.get_running_loop()
        self.input = await loop.run_in_executor(None, QueryInput, self.kafka_conf, self.queries_topic,
                                                input_hint_group(self.config))
        ahead: deque[asyncio.Future[Fetched]] = deque()  # polled and prepared while a batch is decided
        try:
            while True:
                if self.pending is not None and recovered():
                    partitions, self.pending = self.pending, None
                    await self.resume(partitions)
                if not self.positions.held():
                    await asyncio.sleep(self.config.router.batch_window_s)
                    continue
                while len(ahead) < FETCHES_AHEAD:
                    ahead.append(asyncio.ensure_future(self.fetch()))
                await self.route_fetched(await ahead.popleft())
        finally:
            for fetch in ahead:
                fetch.cancel()

    async def route_fetched(self, fetched: Fetched) -> None:
        """Route one fetched batch (or, after a failed persist, drop it and re-read), then pause for the learned
        weights if the observation quota is reached."""
        assert self.input is not None
        watch = fetched.watch
        watch.restart()
        await self.pipeline.room()
        wait, failed = False, False
        async with self.lock:
            watch.lap("wait")
            records, ends = self.input.moves.current(fetched.polled)  # without what a seek since the poll re-reads
            try:
                if self.persist_failed:  # a persist failed: drop this batch, polled before the re-read
                    failed, self.persist_failed = True, False
                    log.error("persisting a batch failed; reading again from %s", self.positions.next)
                    await self.pipeline.drain()
                    await self.reread()
                elif self.positions.held():  # else revoked while polling: the next owner reads from progress
                    wait = await self.route_polled(records, ends, watch, fetched.prepared)
            except Exception as exc:  # e.g. the broker unreachable for longer than the clients retry
                log.error("routing a batch failed (%r); reading it again from %s", exc, self.positions.next)
                await self.pipeline.drain()
                await self.reread()
                failed = True
        if wait:
            await self.wait_for_weights()
        if failed:
            await asyncio.sleep(1.0)

    async def fetch(self) -> Fetched:
        """Poll the next batch (in a thread) and prepare it (validate, embed, estimate: no routing state; in the
        prepare process, ``streams.service.prepare_process``)."""
        assert self.input is not None
        loop = asyncio.get_running_loop()
        async with self.polling:  # polls in the order the fetches started
            watch = Stopwatch()
            polled = await loop.run_in_executor(None, self.input.poll, self.config.router.batch_size,
                                                self.config.router.batch_window_s)
            watch.lap("poll")
        prepared = await self.preparer.prepare(polled.records) if polled.records else Prepared()
        watch.lap("prepare")
        return Fetched(polled, prepared, watch)

    async def reread(self) -> None:
        """Read every held partition again from its position (call with the lock held and no batch in flight).
        Decisions made but not recorded as progress are found in the decisions table and re-emitted."""
        assert self.input is not None
        self.positions.restart()
        await asyncio.get_running_loop().run_in_executor(None, self.input.assign, dict(self.positions.next))

    async def route_polled(self, records: list[Record], ends: dict[int, int], watch: Stopwatch,
                           prepared: Prepared) -> bool:
        """Decide the contiguous part of a polled batch (``records``: what is current of it; ``prepared``: all
        of it as polled, prepared), start persisting
        it in the pipeline and seek back to re-read the rest; return whether routing must pause for the
        learned weights."""
        accepted = self.positions.accept(records)
        for partition, (start, stop) in accepted.holes.items():
            log.warning("partition %d: offsets %d..%d are not in the log (deleted or transaction markers); "
                        "continuing at %d", partition, start, stop - 1, stop)
        routable, pause = self.observation_quota(accepted.records)
        behind = self.router.behind(self.watcher.latest(), self.decisions, self.aggregates)
        if behind:  # this process's weights are older than what those partitions' state used: wait for newer
            log.warning("partitions %s used weights newer than %s: waiting for them before routing", behind,
                        self.watcher.describe())
            routable, pause = [], False
            await asyncio.sleep(self.config.router.batch_window_s)
        if len(routable) != len(prepared.records) + len(prepared.dead):  # rare: a seek since the poll, a discontinuity,
            # the observation quota or the weights cut the batch (``routable`` is a part of the records prepared)
            prepared = prepared.only(routable)
        emitted, observed = self.decide(routable, prepared, watch)
        for partition, offset in accepted.rewind.items():
            log.warning("partition %d: the consumer skipped offset %d; reading again from it", partition, offset)
        rewind = dict(accepted.rewind)
        for record in accepted.records[len(routable):]:
            rewind.setdefault(record.partition, record.offset)  # beyond the observation quota: read later
        assert self.input is not None
        for partition, offset in rewind.items():
            self.input.seek(partition, offset)
        ends = {p: o for p, o in ends.items() if p not in rewind}
        moved = self.positions.decide(routable, ends)
        snapshots = {p: self.router.budgets.snapshot(p, o) for p, o in moved.items()}  # exactly this batch and
        # the ones before it: written with this batch's progress (streams/service/budget_state.py)
        messages = prepared.dead + observed + emitted
        acknowledgement = self.acknowledgement()
        self.pipeline.start(lambda previous, sent: self.persist(previous, sent, routable, ends, messages, snapshots,
                                                                watch, acknowledgement))
        return pause

    def acknowledgement(self) -> Acknowledgement:
        """Held partitions that have not followed the newest weights yet (idle ones: the batch just decided
        followed them for the others) follow them now; their aggregates, taken at their decided positions, are
        saved with the batch's progress and only then is the optimizer told (call with the lock held, after
        ``decide``). Riding on the batch keeps the pipeline full: no drain on a new version."""
        moved, events = self.router.acknowledge(self.positions.held(), self.decisions, self.aggregates)
        return Acknowledgement({p: self.router.budgets.snapshot(p, self.positions.decided.get(p) or 0)
                                for p in moved}, events)

    def observation_quota(self, records: list[Record]) -> tuple[list[Record], bool]:
        """(the leading records to route now, whether to pause for the weights afterwards): in the
        observation phase a router routes at most ceil(eps*N) queries, then waits for the weights."""
        if self.watcher.latest() is not None or self.gave_up_waiting:
            return records, False
        room = max(self.optimizer.target - self.router.observed, 0)
        return records[:room], len(records) >= room

    async def wait_for_weights(self) -> None:
        """Pause routing until the weights arrive (at most ``router.weights_wait_s``), then observe on."""
        wait = self.config.router.weights_wait_s
        deadline = time.monotonic() + wait
        self.paused = True
        try:
            while self.watcher.latest() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            self.paused = False
        if self.watcher.latest() is None:
            log.warning("no weights %.0fs after this router's observation quota; observing on until they come", wait)
            self.gave_up_waiting = True

    def decide(self, records: list[Record], prepared: Prepared, watch: Stopwatch) -> tuple[list[Outgoing], list[Outgoing]]:
        """Decide the prepared ``records`` and record the decisions and reservations in the decisions table;
        return (decision messages, observation messages)."""
        if not records:
            return [], []
        started = time.perf_counter()
        emitted, observed = self.router.decide(prepared, self.decisions, self.aggregates)
        telemetry.record_batch(prepared, emitted, time.perf_counter() - started + watch.laps.get("prepare", 0.0))
        watch.lap("decide")
        return emitted, observed

    async def persist(self, previous: InFlight | None, sent: asyncio.Future[None], records: list[Record],
                      ends: dict[int, int], messages: list[Outgoing], snapshots: dict[int, dict],
                      watch: Stopwatch, acknowledgement: Acknowledgement) -> bool:
        """After ``decide``: flush the decisions to the changelog, send ``messages`` (after the ``previous``
        batch's) and wait for their acknowledgements, then, once the previous batch recorded its progress,
        record the new input positions with the budget ``snapshots`` taken at the decisions (a crash before
        that re-reads the records: they find their decisions) and the partitions read to their ``ends``; last,
        save the ``acknowledgement``'s aggregates and, once they reach the changelog, send its events.
        Returns whether the progress was recorded; a failure sets ``persist_failed`` (the loop re-reads)."""
        try:
            delivered: Sequence[Outgoing] = []
            if records:
                await flush_changelog(self.producer)  # decisions and reservations reach the changelog first
                watch.lap("flush")
                await sent_before(previous)
                delivered = messages
            acknowledged = self.output.send(delivered)
            sent.set_result(None)
            await acknowledged
            self.count(delivered)
            watch.lap("send")
            if not await after(previous):
                return False  # an earlier batch failed: the re-read covers this one
            if records:
                moved = self.positions.advance(records)
                for partition, offset in moved.items():
                    self.aggregates[aggregate_key(partition)] = snapshots[partition]
                    self.progress[progress_key(partition)] = offset
                assert self.input is not None
                self.input.commit_hint(moved)
                watch.lap("progress")
                self.stages.add(len(records), watch.laps)
            for partition, offset in ends.items():
                self.positions.at_end(partition, offset)
            if acknowledgement.events:
                for partition, snapshot in acknowledgement.snapshots.items():
                    self.aggregates[aggregate_key(partition)] = snapshot
                await flush_changelog(self.producer)  # the version reaches the changelog before the optimizer may lower the cap
                await self.send_all(acknowledgement.events)
            return True
        except Exception as exc:  # e.g. the broker unreachable for longer than the clients retry
            log.error("persisting a batch failed (%r)", exc)
            self.persist_failed = True
            return False
        finally:
            if not sent.done():
                sent.set_result(None)

    async def watch(self) -> None:
        """One watchdog round over every partition of the queries topic: the held ones by their
        positions, the others by the positions their routers commit as a hint. A stalled held partition
        is read again from its position; a stalled one held elsewhere (or by nobody: e.g. an
        assignment made while the topics' metadata was missing) is reported, and /health fails for
        either once the stall lasts twice ``router.stall_timeout_s``."""
        if self.input is None:
            return
        held = dict(self.positions.next)
        partitions = range(self.config.topics.query_partitions)
        try:
            ends, hints = await asyncio.get_running_loop().run_in_executor(None, self.input.broker_view, partitions)
        except Exception as exc:  # the broker may be briefly unreachable; the next round tries again
            log.warning("watchdog: cannot read the queries topic's end offsets: %s", exc)
            self.watchdog.reset()  # a broker outage is not a stall of this router: clocks start again after it
            return
        positions = {p: held[p] if p in held else hints.get(p) for p in partitions}
        stalled = self.watchdog.check(time.monotonic(), positions, ends, self.paused)
        mine = [p for p in stalled if p in held]
        if mine:
            async with self.lock:
                await self.pipeline.drain()
                log.warning("input stalled on partitions %s (lag without progress for %.0fs): reading them again "
                            "from %s", mine, self.config.router.stall_timeout_s, self.positions.next)
                await self.reread()
            metrics.INPUT_STALL_RECOVERIES.inc()
        others = sorted(set(stalled) - set(mine))
        if others:
            log.warning("partitions %s have lag and their recorded progress has not moved for %.0fs; this process "
                        "does not hold them (another router stalls, or no router holds them)", others,
                        self.config.router.stall_timeout_s)
        if not self.watchdog.healthy():
            log.error("input stalled for more than %.0fs on partitions %s: /health fails",
                      2 * self.config.router.stall_timeout_s, sorted(self.watchdog.stalled_seconds()))
        metrics.record_input_stalls(self.watchdog.stalled_seconds(), partitions, self.watchdog.healthy())

    async def expire(self) -> None:
        """Delete the decision records past the de-duplication window (tombstones; their charges stay in the
        aggregates)."""
        async with self.lock:
            await self.pipeline.drain()
            if not self.router.stale:
                deleted = self.router.expiry.expire(self.decisions, time.time(), self.positions.held())
                if deleted:
                    log.info("deleted %d decision records past the %.0fs de-duplication window", deleted,
                             self.config.router.dedup_window_s)

    async def reconcile(self, record: Record) -> None:
        """Apply one completion to the budget state."""
        await self.send_all(self.router.reconcile(record, self.decisions))

    async def on_observation(self, offset: int, value: bytes | None) -> None:
        """One observation event (a batch's decisions on one input partition) arrived at ``offset``: account
        for it, and start a solve when one is due and none is in flight (``solver``)."""
        loop = asyncio.get_running_loop()
        if self.optimizer.needs_resume(offset):
            await self.solver.idle()
            await loop.run_in_executor(None, self.optimizer.resume, offset)
        if self.optimizer.on_observation(offset, value):
            self.solver.request()
        metrics.record_observations(self.optimizer.controller.seen, self.optimizer.target)

    async def send_all(self, messages: Sequence[Outgoing]) -> None:
        """Send ``messages`` and wait until the broker acknowledged all of them."""
        await self.output.send(messages)
        self.count(messages)

    def count(self, messages: Sequence[Outgoing]) -> None:
        """Count ``messages``, acknowledged by the broker, per topic."""
        for message in messages:
            self.sent[message.topic] += 1

    def budget_report(self) -> dict[str, dict[str, float]]:
        """Limit and spent dollars per model, over the partitions this process holds."""
        totals = self.router.spent_per_model()
        return {m: {"limit": float(b), "spent": totals[m]} for m, b in zip(self.router.models, self.budgets)}

    def period_report(self) -> list[dict[str, Any]]:
        """Each kept budget period of the partitions this process holds, oldest first: its number, start and end
        (Unix seconds; end None when periods are off) and per model the limit, reserved and settled dollars."""
        grid = self.router.periods
        held = self.router.held if self.router.held is not None else self.router.budgets.periods
        return [{"period": k, "start": grid.start(k), "end": finite_or_none(grid.end(k)), "models": models}
                for k, models in self.router.budgets.report(sorted(held)).items()]

    def state(self) -> dict[str, Any]:
        """The /state page."""
        weights = self.watcher.latest()
        budgets = {m: {k: finite_or_none(v) for k, v in b.items()} for m, b in self.budget_report().items()}
        return {"budgets": budgets, "periods": self.period_report(),
                "weights_version": None if weights is None else weights.version,
                "sent": dict(self.sent), "partitions": sorted(self.router.held or []),
                "input": {str(p): o for p, o in sorted(self.positions.next.items())},
                "batch_stages": self.stages.snapshot()}

    def log_report(self) -> None:
        """One log line for operators: messages sent, weights, budget burn."""
        burn = {m: round(v["spent"] / v["limit"], 3) if v["limit"] else None for m, v in self.budget_report().items()}
        periods = [row["period"] for row in self.period_report()]
        log.info("router: sent %s; weights %s; budget used (share of limit, partitions held) %s; budget periods kept %s "
                 "(per model on /state)", dict(self.sent), self.watcher.describe(), burn, periods)
