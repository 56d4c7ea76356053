"""A pass-through Faust agent: the baseline of the stream benchmark.

It consumes the queries topic with the same micro-batching as the router and forwards a
small record per query (id, produced_at, forwarded_at) to ``<prefix>passthrough.out``, so
the benchmark can subtract what Kafka and Faust cost from what routing costs.
Run: ``python -m streams.tools.passthrough --config CONFIG`` (the benchmark starts it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from streams.service.app import app_id, run_app
from streams.config import ServiceConfig, load_config
from streams.topics import QUERIES

OUTPUT = "passthrough.out"


def build_passthrough(config: ServiceConfig) -> Any:
    """The pass-through Faust app for ``config``'s brokers, topics and batching."""
    import faust

    data_dir = Path(config.router.data_dir) / f"{app_id(config)}-passthrough-{config.router.web_port}"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(f"{app_id(config)}-passthrough", broker=config.kafka.faust_broker(),
                    broker_credentials=config.kafka.faust_credentials(), store="memory://",
                    web_host=config.router.web_host, web_port=config.router.web_port,
                    web_bind=config.router.web_host, datadir=str(data_dir), producer_acks=-1,
                    consumer_auto_offset_reset="earliest", autodiscover=False, loghandlers=[])
    source = app.topic(config.topics.name(QUERIES), key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    output = config.topics.name(OUTPUT)

    @app.agent(source)
    async def forward(stream: Any) -> None:
        async for events in stream.take_events(config.router.batch_size, within=config.router.batch_window_s):
            futures = []
            for event in events:
                query = json.loads(event.message.value)
                record = {"id": query["id"], "produced_at": query.get("produced_at"), "forwarded_at": time.time()}
                futures.append(await app.producer.send(output, event.message.key, json.dumps(record).encode(),
                                                       None, None, None))
            await asyncio.gather(*futures)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        return web.json({"ready": not app.rebalancing}, status=503 if app.rebalancing else 200)

    return app


def main() -> None:
    """Run the pass-through agent until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = load_config(args.config)
    sys.argv = [sys.argv[0], "worker"]
    run_app(build_passthrough(config), loglevel="warning")


if __name__ == "__main__":
    main()
