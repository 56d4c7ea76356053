"""The Faust application: router, optimizer and reconciler agents, state tables, health endpoints.

Delivery: at-least-once input. The router reads the queries topic itself
(streams.service.query_input), from the positions in its changelog-backed ``progress`` table, for
exactly the partitions whose state Faust assigned to this process. Per micro-batch it (1)
validates, embeds and estimates in a worker thread, (2) records decisions and reservations in
the changelog-backed ``decisions`` table, (3) flushes the producer so those changelog records
are on the broker, (4) sends the routed / unserved / observation / DLQ messages and waits for
the broker's acknowledgements, and only then (5) records the new positions. A crash before (5)
re-reads the queries, which find their decisions and re-emit them without a new charge.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from router_core.engine import RoutingEngine
from streams import metrics
from streams.service import telemetry
from streams.config import ServiceConfig, topic_name
from streams.topics import COMPLETIONS
from streams.service.ledger import key_partition
from streams.service.messages import Record
from streams.service.service import RouterService

log = logging.getLogger(__name__)


def app_id(config: ServiceConfig) -> str:
    """The Faust app id (consumer group, changelog topic prefix): topic prefix + configured id."""
    return topic_name(config.topics.prefix + config.router.app_id)


def partition_keyed_table_class() -> type:
    """A faust.Table whose changelog partition is the input partition written in the key."""
    import faust

    class PartitionKeyedTable(faust.Table):
        def partition_for_key(self, key: Any) -> int:
            return key_partition(key)

    return PartitionKeyedTable


def changelog_compaction(window_s: float) -> dict[str, str]:
    """Changelog topic settings under which the tables' size, not the stream's length, bounds a recovery:
    segments roll within a tenth of the de-duplication window (at most an hour), and a record waits at most as
    long to be compacted, so compaction drops the superseded records and the expired decisions' tombstones
    soon after the window."""
    roll_ms = int(min(window_s / 10, 3600.0) * 1000)
    return {"cleanup.policy": "compact", "segment.ms": str(roll_ms), "delete.retention.ms": str(roll_ms),
            "max.compaction.lag.ms": str(roll_ms), "min.cleanable.dirty.ratio": "0.1"}


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
        # One record batch per partition per produce request, and aiokafka keeps one request in flight: with
        # its 16 KB batches a micro-batch's decision records (each with its routed message) took several
        # round trips to reach the changelog. 1 MB batches take them in one.
        producer_max_batch_size=1024 * 1024,
        broker_session_timeout=config.router.session_timeout_s,
        broker_heartbeat_interval=config.router.session_timeout_s / 4,
        # Refresh topic metadata every 15 s (aiokafka's default: 5 min). After a broker restart the group
        # can be assigned while the topics still show no partitions ("Ignoring missing topic"); the
        # consumer rejoins only when a metadata refresh shows them, so this bounds that idle time.
        consumer_metadata_max_age_ms=15_000,
    )
    table_class = partition_keyed_table_class()
    compaction = changelog_compaction(config.router.dedup_window_s)
    decisions = app.tables.add(table_class(
        app, name="decisions", default=None, partitions=partitions, extra_topic_configs=compaction,
        help="decision and charge per (input partition, query id), for the de-duplication window"))
    aggregates = app.tables.add(table_class(app, name="budgets", default=None, partitions=partitions,
                                            extra_topic_configs=compaction,
                                            help="budget aggregate per input partition (streams.budget_state)"))
    progress = app.tables.add(table_class(app, name="progress", default=None, partitions=partitions,
                                          extra_topic_configs=compaction,
                                          help="next input offset to route per input partition"))
    service = RouterService(config, engine, app.producer, decisions, progress, aggregates)
    register_agents(app, service)
    register_pages(app, service)
    return app


def raw_topic(app: Any, name: str) -> Any:
    """A topic of raw bytes keys and values."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def register_agents(app: Any, service: RouterService) -> None:
    """The router, reconciler and optimizer agents, the rebalance hook and the background start."""
    config = service.config

    @app.agent(raw_topic(app, config.topics.name(COMPLETIONS)))
    async def reconcile(stream: Any) -> None:
        async for event in stream.events():
            await service.reconcile(to_record(event))

    @app.agent(raw_topic(app, service.names.observations))
    async def optimize(stream: Any) -> None:
        async for event in stream.events():
            await service.on_observation(event.message.offset, event.message.value)

    state_changelog = service.progress.changelog_topic.get_topic_name()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        service.on_assigned({tp.partition for tp in assigned if tp.topic == state_changelog})

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await service.on_revoked()

    @app.task
    async def start_background() -> None:
        service.start_background()

    @app.task
    async def route() -> None:
        await service.run(recovered=lambda: not app.rebalancing)

    @app.timer(5.0)
    async def watch_input() -> None:
        await service.watch()

    @app.timer(min(60.0, config.router.dedup_window_s / 10))
    async def expire_decisions() -> None:
        await service.expire()


def register_pages(app: Any, service: RouterService) -> None:
    """/health, /ready, /state and /metrics on Faust's web server, and the periodic exports. Nothing else is
    served: Faust's built-in views (/table/ shows decision records with query texts, /router/ the cluster's
    addresses, / and /stats/ internals) are dropped (docs/SECURITY.md)."""
    from faust.web.base import BlueprintManager

    app.web.blueprints = BlueprintManager()  # no built-in blueprint; the pages below are added as views

    @app.on_rebalance_complete.connect
    async def tables_recovered(sender: Any, **kwargs: Any) -> None:
        # /state and the metrics show the spend before the first batch
        service.router.rebuild(service.decisions, service.aggregates)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        healthy = service.watchdog.healthy()
        return web.json({"status": "ok" if healthy else "input stalled", "stalled_seconds": {
            str(p): round(s, 1) for p, s in service.watchdog.stalled_seconds().items()}}, status=200 if healthy else 503)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        is_ready = service.watcher.caught_up.is_set() and service.solver.settled and not app.rebalancing
        return web.json({"ready": is_ready, "weights": service.watcher.describe()}, status=200 if is_ready else 503)

    @app.page("/state")
    async def state(web: Any, request: Any) -> Any:
        return web.json(service.state())

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.render_metrics()
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.timer(5.0)
    async def export_state() -> None:
        telemetry.record_state(service.router, service.watcher.latest())

    @app.timer(10.0)
    async def report() -> None:
        service.log_report()


def run_app(app: Any, loglevel: str = "info") -> None:
    """Run the Faust worker in this process until it is stopped (SIGINT/SIGTERM)."""
    from faust import Worker

    Worker(app, loglevel=loglevel).execute_from_commandline()
