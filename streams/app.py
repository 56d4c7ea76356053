"""The Faust application: router, optimizer and reconciler agents, state tables, health endpoints.

Delivery: at-least-once input. Per micro-batch the router (1) validates, embeds and
estimates in a worker thread, (2) records decisions and reservations in the changelog-backed
tables, (3) flushes the producer so those changelog records are on the broker, and only then
(4) sends the routed / unserved / observation / DLQ messages. A crash between (3) and (4)
re-delivers the queries, which find their decision and re-emit it without a new charge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from router_core.engine import RoutingEngine
from streams import metrics, telemetry
from streams import topics as T
from streams.config import ServiceConfig, topic_name
from streams.data import budgets_in_order
from streams.gaps import read_range
from streams.topics import topic_size
from streams.ledger import key_partition
from streams.router import Outgoing, Record, Router, TopicNames
from streams.weights import Optimizer, WeightsWatcher

log = logging.getLogger(__name__)


def app_id(config: ServiceConfig) -> str:
    """The Faust app id (consumer group, changelog topic prefix): topic prefix + configured id."""
    return topic_name(config.topics.prefix + config.router.app_id)


def topic_names(config: ServiceConfig) -> TopicNames:
    """The router's output topics."""
    t = config.topics
    return TopicNames(observations=t.name(T.OBSERVATIONS), unserved=t.name(T.UNSERVED), dlq=t.name(T.DLQ),
                      routed={m.name: config.routed_topic(m.name) for m in config.models})


def partition_keyed_table_class() -> type:
    """A faust.Table whose changelog partition is the input partition written in the key."""
    import faust

    class PartitionKeyedTable(faust.Table):
        def partition_for_key(self, key: Any) -> int:
            return key_partition(key)

    return PartitionKeyedTable


def to_record(event: Any) -> Record:
    """A Faust event as a plain Record."""
    message = event.message
    return Record(message.topic, message.partition, message.offset, message.key, message.value)


def build_app(config: ServiceConfig, engine: RoutingEngine) -> Any:
    """Create the Faust app with its agents, tables, timers and web pages (does not start it)."""
    import faust

    kafka = config.kafka
    partitions = config.topics.query_partitions
    data_dir = Path(config.router.data_dir) / f"{app_id(config)}-{config.router.web_port}"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id(config), broker=kafka.faust_broker(), broker_credentials=kafka.faust_credentials(),
        store="memory://", topic_partitions=partitions, topic_replication_factor=config.topics.replication_factor,
        web_host=config.router.web_host, web_port=config.router.web_port, web_bind=config.router.web_host,
        datadir=str(data_dir),
        producer_acks=-1, consumer_auto_offset_reset="earliest", table_standby_replicas=0, autodiscover=False,
        broker_commit_interval=1.0, producer_max_request_size=4 * 1024 * 1024, loghandlers=[],
        broker_session_timeout=config.router.session_timeout_s,
        broker_heartbeat_interval=config.router.session_timeout_s / 4,
    )
    budgets = budgets_in_order(config, engine.models)
    names = topic_names(config)
    watcher = WeightsWatcher(kafka.confluent(), config.topics.name(T.WEIGHTS))
    router = Router(engine, budgets, partitions, names, watcher.latest, seed=config.router.seed)
    optimizer = Optimizer(engine, budgets, kafka.confluent(), names.observations, config.topics.name(T.WEIGHTS),
                          watcher)
    queries_topic = config.topics.name(T.QUERIES)
    table_class = partition_keyed_table_class()
    decisions = app.tables.add(table_class(app, name="decisions", default=None, partitions=partitions,
                                           help="decision and charge per (input partition, query id)"))
    progress = app.tables.add(table_class(app, name="progress", default=None, partitions=partitions,
                                          help="next input offset to route per input partition"))
    resumed: set[int] = set()  # input partitions routed since the last assignment
    phase_state = {"gave_up": False}  # True once waiting for the weights timed out
    stats: Counter = Counter()

    def raw_topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    async def send_all(messages: Sequence[Outgoing]) -> None:
        futures = [await app.producer.send(m.topic, None if m.key is None else m.key.encode(), m.value,
                                           m.partition, None, None) for m in messages]
        await asyncio.gather(*futures)
        for m in messages:
            stats[m.topic] += 1

    async def with_skipped(records: list[Record]) -> list[Record]:
        """Prepend the messages a partition skipped since its last routed offset (see streams.gaps)."""
        for partition in sorted({r.partition for r in records} - resumed):
            resumed.add(partition)
            first = min(r.offset for r in records if r.partition == partition)
            expected = progress.get(f"{partition}/next")
            log.info("routing partition %d from offset %d (next expected: %s)", partition, first, expected)
            if expected is not None and first > expected:
                skipped = await asyncio.get_running_loop().run_in_executor(
                    None, read_range, kafka.confluent(), queries_topic, partition, expected, first)
                log.warning("partition %d: the consumer skipped offsets %d..%d; routing those %d messages first",
                            partition, expected, first - 1, len(skipped))
                records = skipped + records
        return records

    async def route_records(records: list[Record]) -> None:
        """Validate, estimate and decide ``records``; persist the decisions; then send the outputs."""
        if not records:
            return
        started = time.perf_counter()
        prepared = await asyncio.get_running_loop().run_in_executor(None, router.prepare, records)
        emitted, observed = router.decide(prepared, decisions)
        for partition in {r.partition for r in records}:
            progress[f"{partition}/next"] = max(r.offset for r in records if r.partition == partition) + 1
        telemetry.record_batch(prepared, emitted, time.perf_counter() - started)
        await app.producer.flush()  # decisions and reservations reach the changelog first
        await send_all(prepared.dead + observed + emitted)

    async def wait_for_weights() -> bool:
        """Pause routing until the weights arrive (at most ``router.weights_wait_s``); False on time-out."""
        deadline = time.monotonic() + config.router.weights_wait_s
        while watcher.latest() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if watcher.latest() is None:
            log.warning("no weights %.0fs after this router's observation quota; observing on until they come",
                        config.router.weights_wait_s)
            return False
        return True

    async def route_observing(records: list[Record]) -> list[Record]:
        """Route at most the observation quota ceil(eps*N) in the observation phase, then wait for the
        weights; return the records left for the learned rule."""
        while records and watcher.latest() is None and not phase_state["gave_up"]:
            room = optimizer.target - router.observed
            if room <= 0:
                phase_state["gave_up"] = not await wait_for_weights()
                break
            await route_records(records[:room])
            records = records[room:]
        return records

    @app.agent(raw_topic(queries_topic))
    async def route(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, watcher.caught_up.wait)
        if watcher.latest() is None:
            router.observed = await loop.run_in_executor(None, topic_size, kafka.confluent(), names.observations)
        async for events in stream.take_events(config.router.batch_size, within=config.router.batch_window_s):
            records = await with_skipped([to_record(e) for e in events])
            await route_records(await route_observing(records))

    @app.agent(raw_topic(config.topics.name(T.COMPLETIONS)))
    async def reconcile(stream: Any) -> None:
        async for event in stream.events():
            await send_all(router.reconcile(to_record(event), decisions))

    @app.agent(raw_topic(names.observations))
    async def optimize(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            metrics.record_observations(event.message.offset + 1, optimizer.target)
            await loop.run_in_executor(None, optimizer.on_observation, event.message.offset)

    def budget_report() -> dict[str, dict[str, float]]:
        totals = router.spent_per_model()
        return {m: {"limit": float(b), "spent": totals[m]} for m, b in zip(engine.models, budgets)}

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        router.on_assigned({tp.partition for tp in assigned if tp.topic == queries_topic})
        resumed.clear()

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        is_ready = watcher.caught_up.is_set() and not app.rebalancing
        return web.json({"ready": is_ready, "weights": watcher.describe()}, status=200 if is_ready else 503)

    @app.page("/state")
    async def state(web: Any, request: Any) -> Any:
        weights = watcher.latest()
        return web.json({"budgets": budget_report(), "weights_version": None if weights is None else weights.version,
                         "sent": dict(stats), "partitions": sorted(router.held or [])})

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.render_metrics()
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.timer(5.0)
    async def export_state() -> None:
        telemetry.record_state(router, watcher.latest())

    @app.timer(10.0)
    async def report() -> None:
        burn = {m: round(v["spent"] / v["limit"], 3) if v["limit"] else None for m, v in budget_report().items()}
        log.info("router: sent %s; weights %s; budget used (share of limit, partitions held) %s",
                 dict(stats), watcher.describe(), burn)

    @app.task
    async def start_background() -> None:
        watcher.start()
        telemetry.start(router, kafka.confluent(), config.topics.prefix)

    return app


def run_app(app: Any, loglevel: str = "info") -> None:
    """Run the Faust worker in this process until it is stopped (SIGINT/SIGTERM)."""
    from faust import Worker

    Worker(app, loglevel=loglevel).execute_from_commandline()
