"""``port-router bench-recovery``: how long a restarted router takes to route again, and its memory,
after streams of several lengths, in one run.

For each length N, under a fresh topic prefix on the configured broker, the benchmark writes the
state a router leaves after routing N queries: N queries on the queries topic, one decision record
per query in the decisions changelog (``streams.service.router.decision_record``: a routed message of the
query and its reservation), the budget aggregate and position of each partition. With
``--expire`` (what the router does since the de-duplication window), every decision but the
``--live`` newest is followed by its tombstone, as the expiry timer writes it; without, every
record is kept (the state before the window existed). It waits until the broker's compaction has
dropped what it can (or ``--compaction-wait-s`` passes), starts ``serve`` and measures the seconds
from the process start until a probe query is decided, the seconds the tables take to recover
(from the web server's first answer, once the engine is loaded, until ``/ready``), the changelog
records recovered, and the router's resident and peak resident memory when the probe is decided.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from schemas import QueryEvent, RoutedQuery
from streams import kafka
from streams.tools import processes
from streams.service.app import app_id, changelog_compaction
from streams.service.budget_state import aggregate_key
from streams.config import ServiceConfig, load_config
from streams.service.ledger import state_key
from streams.tools.outcomes import follow_outcomes
from streams.tools.processes import REPO
from streams.tools.produce import publish
from streams.service.messages import Outgoing
from streams.service.router import decision_record
from streams.topics import QUERIES, TopicSpec, create_topics

log = logging.getLogger(__name__)
TABLES = ("decisions", "budgets", "progress")
PROBE_DIMENSION = 384  # all-MiniLM-L6-v2, the configured embedding model


@dataclass
class RecoveryResult:
    """One restart after a stream of ``queries`` queries."""

    queries: int
    expire: bool
    changelog_records: int  # records of the three changelogs when the router started
    seconds_to_route: float  # from the process start until the probe is decided
    seconds_recovering: float  # from the web server's first answer (engine loaded) until /ready
    rss_mib: float
    peak_rss_mib: float


def changelog(config: ServiceConfig, table: str) -> str:
    """The changelog topic of ``table``."""
    return f"{app_id(config)}-{table}-changelog"


def seed_state(config: ServiceConfig, n: int, expire: bool, live: int) -> None:
    """Write the state a router leaves after routing ``n`` queries (see the module docstring)."""
    partitions = config.topics.query_partitions
    window = config.router.dedup_window_s
    create_topics(config, specs=[TopicSpec(changelog(config, t), partitions, changelog_compaction(window))
                                 for t in TABLES])
    producer = kafka.producer(config.kafka.confluent(), **{"linger.ms": 20})
    model = config.models[0].name
    topic = config.routed_topic(model)
    counts = [0] * partitions
    now = time.time()
    for i in range(n):
        partition = i % partitions
        query = QueryEvent(id=f"s{i}", text=f"seeded query {i}: " + "x" * 200)
        producer.produce(config.topics.name(QUERIES), key=query.id.encode(), value=query.model_dump_json().encode(),
                         partition=partition)
        routed = RoutedQuery(query=query, model=model, partition=partition, phase="learned", estimated_quality=0.5,
                             estimated_cost=1e-9, reserved_cost=1e-9, routed_at=now)
        record = decision_record(Outgoing(topic, query.id, routed.model_dump_json().encode()), model, 1e-9,
                                 counts[partition], now - window if expire and i < n - live else now)
        key = json.dumps(state_key(partition, query.id)).encode()
        producer.produce(changelog(config, "decisions"), key=key, value=json.dumps(record).encode(),
                         partition=partition)
        if expire and i < n - live:
            producer.produce(changelog(config, "decisions"), key=key, value=None, partition=partition)
        counts[partition] += 1
        if i % 10_000 == 0:
            producer.flush()
    for partition, count in enumerate(counts):
        aggregate = {"reserved": {model: 1e-9 * count}, "settled": {}, "queries_next": count, "completions_next": 0}
        producer.produce(changelog(config, "budgets"), key=json.dumps(aggregate_key(partition)).encode(),
                         value=json.dumps(aggregate).encode(), partition=partition)
        producer.produce(changelog(config, "progress"), key=json.dumps(state_key(partition, "next")).encode(),
                         value=json.dumps(count).encode(), partition=partition)
    producer.flush()


def changelog_records(config: ServiceConfig) -> int:
    """Records now in the three changelogs (what a recovery reads)."""
    return sum(sum(1 for _ in kafka.read_to_end(config.kafka.confluent(), changelog(config, t), 120.0)) for t in TABLES)


def wait_for_compaction(config: ServiceConfig, floor: int, deadline_s: float) -> int:
    """Roll the changelogs' segments and wait until compaction brings them to ``floor`` records or the
    deadline passes; return the records left."""
    roll_s = min(config.router.dedup_window_s / 10, 3600.0)
    deadline = time.monotonic() + deadline_s
    producer = kafka.producer(config.kafka.confluent())
    while True:
        time.sleep(roll_s + 1)
        for table in TABLES:  # a write after segment.ms rolls the active segment, so the cleaner may take it
            for partition in range(config.topics.query_partitions):
                producer.produce(changelog(config, table), key=json.dumps(state_key(partition, "bench-roll")).encode(),
                                 value=None, partition=partition)
        producer.flush()
        left = changelog_records(config)
        log.info("changelogs hold %d records (floor %d)", left, floor)
        if left <= floor or time.monotonic() > deadline:
            return left


def http_status(url: str) -> int | None:
    """The HTTP status of GET ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5.0) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def recovering_seconds(web_port: int, deadline_s: float) -> float:
    """Seconds from the router's web server's first answer (the engine is loaded, the tables start to
    recover) until /ready answers 200 (the tables are recovered)."""
    base = f"http://127.0.0.1:{web_port}"
    deadline = time.monotonic() + deadline_s
    while http_status(f"{base}/health") is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the router's web server never answered")
        time.sleep(0.1)
    up = time.monotonic()
    while http_status(f"{base}/ready") != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the router never became ready")
        time.sleep(0.1)
    return time.monotonic() - up


def memory_mib(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MiB of process ``pid``."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def measure(config_path: Path, n: int, expire: bool, live: int, compaction_wait_s: float,
            work_dir: Path) -> RecoveryResult:
    """Seed a stream of ``n`` queries, restart the router on it and measure."""
    prefix = f"rec{uuid.uuid4().hex[:8]}."
    config = load_config(config_path, {"PORT_ROUTER__TOPICS__PREFIX": prefix})
    create_topics(config)
    seed_state(config, n, expire, live)
    records = wait_for_compaction(config, live + 4 * config.topics.query_partitions, compaction_wait_s) if expire \
        else changelog_records(config)
    env = {"PORT_ROUTER__TOPICS__PREFIX": prefix,
           "PORT_ROUTER__ROUTER__DATA_DIR": str(work_dir / f"faust-{prefix}")}
    router = processes.router(config_path, work_dir / f"router-{prefix}log", "router", env=env)
    started = time.monotonic()
    router.start()
    try:
        probe = QueryEvent(id="probe", embedding=np.random.default_rng(0).normal(size=PROBE_DIMENSION).tolist())
        publish(config, [probe], 1, progress=False)
        assert router.web_port is not None
        recovering = recovering_seconds(router.web_port, 1800.0)
        tally = follow_outcomes(config, 1, timeout=1800.0, wait_completions=False)
        seconds = time.monotonic() - started
        if "probe" not in tally.placements:
            raise RuntimeError(f"the router did not decide the probe within 1800 s (log: {router.log_path})")
        assert router.process is not None
        rss, peak = memory_mib(router.process.pid)
    finally:
        router.stop()
    return RecoveryResult(n, expire, records, round(seconds, 2), round(recovering, 2), round(rss, 1), round(peak, 1))


def run_bench_recovery(args: argparse.Namespace) -> int:
    """``port-router bench-recovery``: every size, without then with expiry; a table and optional JSON."""
    processes.exit_on_sigterm()  # a SIGTERM stops the processes this command started, then exits
    config_path = Path(args.config)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for expire in args.modes:
        for n in args.sizes:
            result = measure(config_path, n, expire == "expire", args.live, args.compaction_wait_s, work_dir)
            log.info("%s", result)
            print(json.dumps(asdict(result)), flush=True)
            results.append(result)
    for expire in args.modes:
        rows = [r for r in results if r.expire == (expire == "expire")]
        base = rows[0]
        print(f"\n{expire}: queries | changelog records | seconds to route (ratio) | seconds recovering (ratio) | "
              "RSS MiB (ratio) | peak RSS MiB")
        for r in rows:
            print(f"{r.queries:,} | {r.changelog_records:,} | {r.seconds_to_route:.1f} "
                  f"({r.seconds_to_route / base.seconds_to_route:.2f}) | {r.seconds_recovering:.1f} "
                  f"({r.seconds_recovering / base.seconds_recovering:.2f}) | {r.rss_mib:.0f} "
                  f"({r.rss_mib / base.rss_mib:.2f}) | {r.peak_rss_mib:.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench-recovery``."""
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[10_000, 100_000, 500_000])
    parser.add_argument("--modes", type=lambda v: v.split(","), default=["keep", "expire"],
                        help="keep: every decision record kept (before the window); expire: tombstones past it")
    parser.add_argument("--live", type=int, default=5_000, help="decisions still inside the window (expire mode)")
    parser.add_argument("--compaction-wait-s", type=float, default=300.0)
    parser.add_argument("--work-dir", default=str(REPO / ".cache" / "bench-recovery"))
    parser.add_argument("--json", help="write the results here")
