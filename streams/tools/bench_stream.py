"""``port-router bench-stream``: end-to-end throughput and latency of the router on a real broker.

Three runs on the same broker, each under a fresh topic prefix: a pass-through Faust agent
(the cost of Kafka + Faust alone), the router with precomputed embeddings in the events,
and the router embedding the texts itself. Each run: start the process, warm up (for the
router: until the weights are learned, so the measured queries take the learned rule),
publish N queries as fast as possible, and read the outputs. Latency is the output's own
timestamp (routed_at / decided_at / forwarded_at) minus the query's produced_at (one
machine, one clock); throughput is N over the span from the first send to the last output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas import QueryEvent
from streams.config import ServiceConfig, load_config
from streams import kafka
from streams.tools import processes
from streams.tools.processes import REPO, ServiceProcess
from streams.tools.produce import QuerySource, publish
from streams.topics import QUERIES, TopicSpec, create_topics

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Measurements of one run."""

    name: str
    queries: int
    seconds: float
    queries_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def send_queries(config: ServiceConfig, queries: list[QueryEvent], rate: float = 0.0) -> dict[str, float]:
    """Publish ``queries`` (``rate`` per second, 0: as fast as possible) stamped with produced_at as
    they go; return {id: produced_at}."""
    sent_at: dict[str, float] = {}
    publish(config, queries, len(queries), rate, progress=False, produced_at=sent_at)
    return sent_at


def output_times(value: dict[str, Any]) -> tuple[str, float]:
    """(query id, output timestamp) of a routed, unserved or forwarded record."""
    if "query" in value:
        return value["query"]["id"], value["routed_at"]
    if "forwarded_at" in value:
        return value["id"], value["forwarded_at"]
    return value["query_id"], value["decided_at"]


def collect(config: ServiceConfig, topics: list[str], sent_at: dict[str, float],
            timeout: float) -> dict[str, tuple[float, float]]:
    """{id: (produced_at, output time)} for the ids of ``sent_at``, read from ``topics`` until all are seen."""
    seen: dict[str, tuple[float, float]] = {}

    def handle(message: Any) -> None:
        query_id, out_at = output_times(json.loads(message.value()))
        if query_id in sent_at and query_id not in seen:
            seen[query_id] = (sent_at[query_id], out_at)

    if not kafka.follow(config.kafka.confluent(), topics, f"bench-{uuid.uuid4().hex}", handle,
                        lambda: len(seen) >= len(sent_at), timeout):
        raise TimeoutError(f"only {len(seen)} of {len(sent_at)} outputs within {timeout:.0f}s")
    return seen


def measure(name: str, config: ServiceConfig, topics: list[str], queries: list[QueryEvent],
            timeout: float, rate: float = 0.0) -> RunResult:
    """Send ``queries`` and measure throughput and latency from their outputs."""
    sent_at = send_queries(config, queries, rate)
    started = min(sent_at.values())
    seen = collect(config, topics, sent_at, timeout)
    latencies = np.array([out - produced for produced, out in seen.values()]) * 1000
    span = max(out for _, out in seen.values()) - started
    result = RunResult(name, len(queries), round(span, 2), round(len(queries) / span, 1),
                       round(float(np.percentile(latencies, 50)), 1), round(float(np.percentile(latencies, 99)), 1),
                       round(float(latencies.max()), 1))
    log.info("bench %s: %s", name, result)
    return result


def fresh_config(path: str, tag: str) -> tuple[ServiceConfig, dict[str, str]]:
    """The configuration under a fresh topic prefix with budgets large enough not to bind, and its env."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PORT_ROUTER__TOPICS__PREFIX": f"bench{tag}{uuid.uuid4().hex[:6]}."}
    config = load_config(path, env)
    return config, env


def queries_for(source: QuerySource, prefix: str, embeddings: np.ndarray | None) -> list[QueryEvent]:
    """QueryEvents with text only, or with embedding only."""
    if embeddings is None:
        return [QueryEvent(id=f"{prefix}{i}", text=t) for i, t in zip(source.ids, source.texts)]
    return [QueryEvent(id=f"{prefix}{i}", embedding=[float(x) for x in e]) for i, e in zip(source.ids, embeddings)]


def run_router(args: argparse.Namespace, name: str, source: QuerySource, embeddings: np.ndarray | None,
               children: list[ServiceProcess]) -> RunResult:
    """One router run: start, warm up until the weights are learned, measure."""
    from streams.tools.outcomes import output_topics

    config, env = fresh_config(args.config, "r")
    create_topics(config)
    log_path = REPO / ".cache" / "bench-logs" / f"{name.replace(' ', '-').replace(',', '')}.log"
    process = processes.router(args.config, log_path, name, web_port=config.router.web_port, env=env)
    children.append(process.start())
    process.wait_ready(timeout=args.timeout)
    topics = [t for t, kind in output_topics(config).items() if kind != "completion"]
    warmup = queries_for(source, "w:", embeddings)[: max(64, 2 * config.port.n_expected // 40 + 32)]
    measure(f"{name} (warm-up)", config, topics, warmup, args.timeout)
    deadline = time.monotonic() + args.timeout
    while process.state()["weights_version"] is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the weights were not learned during the warm-up")
        time.sleep(0.5)
    result = measure(name, config, topics, queries_for(source, "m:", embeddings), args.timeout, args.rate)
    process.stop()
    return result


def run_passthrough(args: argparse.Namespace, source: QuerySource, embeddings: np.ndarray,
                    children: list[ServiceProcess]) -> RunResult:
    """The pass-through run, on the same events as the precomputed-embedding router run."""
    from streams.tools.passthrough import OUTPUT

    config, env = fresh_config(args.config, "p")
    output = config.topics.name(OUTPUT)
    create_topics(config, specs=[TopicSpec(config.topics.name(QUERIES), config.topics.query_partitions, {}),
                                 TopicSpec(output, config.topics.query_partitions, {})])
    process = ServiceProcess("passthrough", ["--config", args.config], REPO / ".cache" / "bench-logs" / "passthrough.log",
                             env, web_port=config.router.web_port, module="streams.tools.passthrough")
    children.append(process.start())
    process.wait_ready(timeout=args.timeout)
    measure("pass-through (warm-up)", config, [output], queries_for(source, "w:", embeddings)[:64], args.timeout)
    result = measure("pass-through Faust agent", config, [output], queries_for(source, "m:", embeddings),
                     args.timeout, args.rate)
    process.stop()
    return result


def run_bench(args: argparse.Namespace) -> int:
    """Run the three measurements and print (and optionally write) the results."""
    from streams.service.data import load_assembly

    config = load_config(args.config)
    assembly = load_assembly(config)
    stream = assembly.held_out
    if stream is None:
        raise RuntimeError("bench-stream needs history_rows in the configuration (a held-out query stream)")
    rows = [i % len(stream) for i in range(args.queries)]  # cycles the stream; ids stay unique
    source = QuerySource(tuple(f"{stream.ids[r]}#{i // len(stream)}" for i, r in enumerate(rows)),
                         tuple(stream.prompts[r] for r in rows))
    embeddings = assembly.held_out_vectors()[rows]
    children: list[ServiceProcess] = []
    try:
        results = [run_passthrough(args, source, embeddings, children),
                   run_router(args, "router, precomputed embeddings", source, embeddings, children),
                   run_router(args, "router, text (embeds in the router)", source, None, children)]
    finally:
        processes.stop_all(children)
    baseline = results[0].queries_per_second
    rows = [{**asdict(r), "throughput_vs_passthrough": round(r.queries_per_second / baseline, 3)} for r in results]
    for row in rows:
        print(f"{row['name']:40s} {row['queries']:5d} q in {row['seconds']:7.2f}s = {row['queries_per_second']:8.1f} "
              f"q/s  p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms  "
              f"ratio {row['throughput_vs_passthrough']:.3f}")
    if args.output:
        Path(args.output).write_text(json.dumps({"config": args.config, "rate": args.rate, "runs": rows}, indent=2)
                                     + "\n")
    return 0
