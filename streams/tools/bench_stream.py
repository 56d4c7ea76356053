"""``port-router bench-stream``: end-to-end throughput and latency of the router on a real broker.

Runs on the same broker, each under a fresh topic prefix: a pass-through Faust agent (the
cost of Kafka + Faust alone), the router with precomputed embeddings in the events, the
router embedding the texts itself with each embedding backend asked for, and optionally a
scaling grid (pass-through and the router embedding texts with the configured backend, over
query partitions and processes). Budgets are scaled so that they do not bind over the run.
Each run: start the processes, warm up (for the router: until every process has the learned
weights, so the measured queries take the learned rule), publish N queries as fast as
possible, and read the outputs. Latency is the output's own
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from schemas import QueryEvent
from streams.config import ServiceConfig, load_config
from streams import kafka
from streams.service.batch_stages import per_batch
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
    partitions: int = 0
    processes: int = 1
    stages: dict[str, float] = field(default_factory=dict)  # the router's mean ms per batch of each stage


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


@dataclass(frozen=True)
class RunSpec:
    """One measured run: which process, which payload, how many partitions and processes."""

    name: str
    kind: str  # "passthrough" or "router"
    text: bool = False  # the router embeds query texts (else the events carry embeddings)
    backend: str | None = None  # the embedding backend of a text run (None: the configured one)
    partitions: int | None = None  # query partitions (None: the configured number)
    processes: int = 1
    queries: int | None = None  # measured queries (None: all of the source)


def fresh_config(path: str, tag: str, spec: RunSpec, budget_scale: float) -> tuple[ServiceConfig, Path, dict[str, str]]:
    """The configuration of one run: a fresh topic prefix, the run's partitions and embedding backend
    (with its own index directory), and budgets x ``budget_scale`` so that they do not bind over the
    whole run (N queries, not the configured stream). Returns (config, derived config file, env)."""
    base = load_config(path)
    data = yaml.safe_load(Path(path).read_text())
    for model in data["models"]:
        model["budget"] = float(model["budget"]) * budget_scale
    prefix = f"bench{tag}{uuid.uuid4().hex[:6]}."
    derived = REPO / ".cache" / "bench-stream" / f"{prefix}yaml"
    derived.parent.mkdir(parents=True, exist_ok=True)
    derived.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PORT_ROUTER__TOPICS__PREFIX": prefix}
    if spec.partitions is not None:
        env["PORT_ROUTER__TOPICS__QUERY_PARTITIONS"] = str(spec.partitions)
    if spec.backend is not None and spec.backend != base.embedding.backend:
        env["PORT_ROUTER__EMBEDDING__BACKEND"] = spec.backend
        if base.index_dir:
            env["PORT_ROUTER__INDEX_DIR"] = f"{base.index_dir}-{spec.backend}"  # an index per embedder
    return load_config(derived, env), derived, env


def queries_for(source: QuerySource, prefix: str, embeddings: np.ndarray | None) -> list[QueryEvent]:
    """QueryEvents with text only, or with embedding only."""
    if embeddings is None:
        return [QueryEvent(id=f"{prefix}{i}", text=t) for i, t in zip(source.ids, source.texts)]
    return [QueryEvent(id=f"{prefix}{i}", embedding=[float(x) for x in e]) for i, e in zip(source.ids, embeddings)]


def start_processes(spec: RunSpec, config_path: Path, env: dict[str, str], children: list[ServiceProcess],
                    timeout: float) -> list[ServiceProcess]:
    """Start the run's processes (each on a free web port) and wait until every one is ready."""
    label = spec.name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
    started = []
    for i in range(spec.processes):
        log_path = REPO / ".cache" / "bench-logs" / f"{label}-{i}.log"
        if spec.kind == "router":
            process = processes.router(config_path, log_path, f"{spec.name} #{i}", env=env)
        else:
            process = ServiceProcess(f"{spec.name} #{i}", ["--config", str(config_path)], log_path, env,
                                     web_port=processes.free_port(), module="streams.tools.passthrough")
        children.append(process.start())
        started.append(process)
    for process in started:
        process.wait_ready(timeout=timeout)
    return started


def run_one(args: argparse.Namespace, spec: RunSpec, source: QuerySource, embeddings: np.ndarray,
            children: list[ServiceProcess]) -> RunResult:
    """One run: start the processes, warm up (a router until every process has the learned weights, so the
    measured queries take the learned rule), measure, stop."""
    from streams.tools.outcomes import output_topics
    from streams.tools.passthrough import OUTPUT

    if spec.queries is not None:
        source = QuerySource(source.ids[: spec.queries], source.texts[: spec.queries])
        embeddings = embeddings[: spec.queries]
    base = load_config(args.config)
    scale = max(1.0, 2 * len(source) / base.port.n_expected)
    config, derived, env = fresh_config(args.config, "r" if spec.kind == "router" else "p", spec, scale)
    payload = None if spec.text else embeddings
    if spec.kind == "router":
        create_topics(config)
        topics = [t for t, kind in output_topics(config).items() if kind != "completion"]
        warmup = max(64, 2 * config.port.n_expected // 40 + 32)
    else:
        topics = [config.topics.name(OUTPUT)]
        partitions = config.topics.query_partitions
        create_topics(config, specs=[TopicSpec(config.topics.name(QUERIES), partitions, {}),
                                     TopicSpec(topics[0], partitions, {})])
        warmup = 64
    started = start_processes(spec, derived, env, children, args.timeout)
    measure(f"{spec.name} (warm-up)", config, topics, queries_for(source, "w:", payload)[:warmup], args.timeout)
    deadline = time.monotonic() + args.timeout
    while spec.kind == "router" and any(p.state()["weights_version"] is None for p in started):
        if time.monotonic() > deadline:
            raise TimeoutError("the weights were not learned during the warm-up")
        time.sleep(0.5)
    routers = started if spec.kind == "router" else []
    before = [p.state()["batch_stages"] for p in routers]
    result = measure(spec.name, config, topics, queries_for(source, "m:", payload), args.timeout, args.rate)
    result.partitions, result.processes = config.topics.query_partitions, spec.processes
    result.stages = per_batch(before, [p.state()["batch_stages"] for p in routers])
    for process in started:
        process.stop()
    return result


def minilm_available() -> bool:
    """True when the MiniLM backend's packages are installed (the extra [minilm])."""
    from importlib.util import find_spec

    return find_spec("sentence_transformers") is not None


def run_specs(args: argparse.Namespace, default_backend: str) -> list[RunSpec]:
    """The main runs (pass-through, router with embeddings, router with text per backend) and the
    scaling cells (pass-through and the router with text on the default backend, per partitions and
    processes)."""
    specs = [RunSpec("pass-through Faust agent", "passthrough"),
             RunSpec("router, precomputed embeddings", "router")]
    for backend in args.backends:
        if backend == "minilm" and not minilm_available():
            log.warning("bench-stream: the minilm run is skipped: sentence-transformers is not installed "
                        "(pip install 'port-router[minilm]')")
            continue
        limit = args.minilm_queries if backend == "minilm" and args.minilm_queries else None
        specs.append(RunSpec(f"router, text ({backend})", "router", text=True, backend=backend, queries=limit))
    for partitions in args.scaling_partitions:
        for count in args.scaling_processes:
            if count > partitions:
                continue  # a process without a partition only waits
            specs.append(RunSpec(f"pass-through, {partitions} partitions, {count} processes", "passthrough",
                                 partitions=partitions, processes=count))
            specs.append(RunSpec(f"router, text ({default_backend}), {partitions} partitions, {count} processes",
                                 "router", text=True, backend=default_backend, partitions=partitions,
                                 processes=count))
    return specs


def run_bench(args: argparse.Namespace) -> int:
    """Run every measurement on the same broker and print (and optionally write) the results."""
    processes.exit_on_sigterm()  # a SIGTERM stops the processes this command started, then exits
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
    load_before = os.getloadavg()
    children: list[ServiceProcess] = []
    results = []
    try:
        for spec in run_specs(args, config.embedding.backend):
            results.append(run_one(args, spec, source, embeddings, children))
    finally:
        processes.stop_all(children)
    baseline = results[0].queries_per_second
    out = [{**asdict(r), "throughput_vs_passthrough": round(r.queries_per_second / baseline, 3)} for r in results]
    for row in out:
        print(f"{row['name']:58s} {row['queries']:6d} q in {row['seconds']:7.2f}s = {row['queries_per_second']:8.1f} "
              f"q/s  p50 {row['p50_ms']:9.1f} ms  p99 {row['p99_ms']:9.1f} ms  "
              f"ratio {row['throughput_vs_passthrough']:.3f}")
        if row["stages"]:
            print("    ms per batch: " + ", ".join(f"{k.removesuffix('_ms')} {v}" for k, v in row["stages"].items()))
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    if args.output:
        Path(args.output).write_text(json.dumps({"config": args.config, "rate": args.rate, "load_average": load,
                                                 "runs": out}, indent=2) + "\n")
    return 0
