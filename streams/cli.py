"""``port-router``: the command line of the stream service (plus the offline commands of router_core).

Heavy modules (faust, torch, confluent-kafka) are imported inside the command handlers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from router_core.argtypes import ints
from router_core.embedders.cli import backend_names
from streams.tools.acls import Principals
from streams.config import ConfigError, ServiceConfig, load_config
from streams.kafka import BrokerUnavailable, require_broker
from streams.logs import configure_logging

DEFAULT_CONFIG = "examples/config.yaml"
log = logging.getLogger("port-router")


def _config(args: argparse.Namespace) -> ServiceConfig:
    return load_config(args.config)


def cmd_schemas_export(args: argparse.Namespace) -> int:
    """Write the JSON Schema of every event."""
    from schemas import export_json_schemas

    for path in export_json_schemas(Path(args.directory)):
        print(path)
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    """Create the service's topics (idempotent)."""
    from streams.topics import create_topics

    for name, state in sorted(create_topics(_config(args)).items()):
        print(f"{state:8s} {name}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the router (Faust worker) until stopped."""
    from streams.service.app import build_app, run_app
    from streams.service.data import load_engine

    config = _config(args)
    require_broker(config.kafka.confluent())
    engine = load_engine(config)
    sys.argv = [sys.argv[0], "worker"]  # Faust's worker reads its own command line
    run_app(build_app(config, engine), loglevel=args.loglevel)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    """Publish queries from a file, or the configured held-out stream."""
    from streams.tools.produce import QuerySource, events, publish, read_source

    config = _config(args)
    from streams.service.data import load_assembly, load_split

    assembly = load_assembly(config) if args.embeddings else None  # loads the history once for both
    if args.file:
        source = read_source(Path(args.file))
    else:
        stream = load_split(config)[1] if assembly is None else assembly.held_out
        if stream is None:
            raise ConfigError("produce: give --file, or set history_rows in the configuration to hold out a stream")
        source = QuerySource(stream.ids, stream.prompts)
    if args.limit:
        source = QuerySource(source.ids[: args.limit], source.texts[: args.limit])
    if assembly is not None:
        source = QuerySource(source.ids, source.texts, assembly.embed_cached(source.texts))
    sent = publish(config, events(source, args.id_prefix, with_text=not args.no_text), len(source), rate=args.rate,
                   progress=not args.quiet)
    print(f"produced {len(sent)} queries")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Serve one model's routed topic with the replay or openai backend."""
    from streams.service.app import app_id
    from streams.worker import OpenAIBackend, ReplayBackend, Worker

    config = _config(args)
    require_broker(config.kafka.confluent())
    if args.backend == "replay":
        from router_core.history import load_history

        history, _ = load_history(config.history)
        backend = ReplayBackend(history, args.model)
    else:
        backend = OpenAIBackend(config.model(args.model))
    if args.metrics_port:
        from streams.metrics import serve_metrics

        serve_metrics(args.metrics_port)
    Worker(config, args.model, backend, app_id(config)).run(max_idle=args.max_idle)
    return 0


def cmd_acls(args: argparse.Namespace) -> int:
    """Print the kafka-acls.sh commands of the trust model (docs/SECURITY.md)."""
    from streams.tools.acls import command, grants

    config = _config(args)
    who = Principals(producer=args.producer, router=args.router, worker=args.worker, operator=args.operator)
    for grant in grants(config, who):
        print(command(grant, config.kafka.bootstrap_servers, args.admin_config))
    return 0


def cmd_lag(args: argparse.Namespace) -> int:
    """Consumer lag (streams.tools.lag, written by ops)."""
    from streams.tools import lag

    return lag.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """The end-to-end demo on a local broker."""
    from streams.tools.demo import run_demo

    return run_demo(args)


def cmd_chaos(args: argparse.Namespace) -> int:
    """The chaos soak on the local broker."""
    from streams.tools.chaos import run_chaos

    return run_chaos(args)


def cmd_bench_stream(args: argparse.Namespace) -> int:
    """Throughput and latency of the router against a pass-through agent."""
    from streams.tools.bench_stream import run_bench

    return run_bench(args)


def cmd_bench_parity(args: argparse.Namespace) -> int:
    """The offline benchmark's test stream through the service, side by side with offline port."""
    from streams.tools.parity import run_parity

    return run_parity(args)


def cmd_bench_recovery(args: argparse.Namespace) -> int:
    """Restart time and memory of the router after streams of several lengths."""
    from streams.tools.bench_recovery import run_bench_recovery

    return run_bench_recovery(args)


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"service configuration (default {DEFAULT_CONFIG})")
    return parser


def add_lag_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``lag`` command; its arguments come from streams.tools.lag."""
    from streams.tools import lag

    parser = subparsers.add_parser("lag", help="consumer lag per group and topic")
    parser.set_defaults(handler=cmd_lag)
    lag.add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    from router_core import cli as core_cli
    from streams.tools import bench_recovery
    from streams.tools import chaos as chaos_module

    parser = argparse.ArgumentParser(prog="port-router", description="PORT router: stream service and offline tools")
    parser.add_argument("--log-level", dest="loglevel", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    schemas = sub.add_parser("schemas", help="event schemas").add_subparsers(dest="schemas_command", required=True)
    export = schemas.add_parser("export", help="write JSON Schema files")
    export.add_argument("directory")
    export.set_defaults(handler=cmd_schemas_export)

    topics = sub.add_parser("topics", help="Kafka topics").add_subparsers(dest="topics_command", required=True)
    _with_config(topics.add_parser("create", help="create the topics (idempotent)")).set_defaults(
        handler=cmd_topics_create)

    _with_config(sub.add_parser("serve", help="run the router (Faust worker)")).set_defaults(handler=cmd_serve)

    produce = _with_config(sub.add_parser("produce", help="publish queries"))
    produce.add_argument("--file", help="RouterBench-schema file or JSONL of texts (default: the held-out stream)")
    produce.add_argument("--limit", type=int, default=0, help="publish at most this many (0: all)")
    produce.add_argument("--rate", type=float, default=0.0, help="queries per second (0: as fast as possible)")
    produce.add_argument("--embeddings", action="store_true", help="attach precomputed embeddings")
    produce.add_argument("--no-text", action="store_true", help="with --embeddings, leave the text out")
    produce.add_argument("--id-prefix", default="", help="prepended to every query id (e.g. 'run1:')")
    produce.add_argument("--quiet", action="store_true", help="no progress bar")
    produce.set_defaults(handler=cmd_produce)

    worker = _with_config(sub.add_parser("worker", help="LLM worker for one model"))
    worker.add_argument("--model", required=True)
    worker.add_argument("--backend", choices=["replay", "openai"], default="replay")
    worker.add_argument("--max-idle", type=float, default=None, help="exit after this many idle seconds")
    worker.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port")
    worker.set_defaults(handler=cmd_worker)

    demo = _with_config(sub.add_parser("demo", help="end-to-end demo on a local broker"))
    demo.add_argument("--queries", type=int, default=300)
    demo.add_argument("--json", help="write the summary here")
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    demo.set_defaults(handler=cmd_demo)

    bench = _with_config(sub.add_parser("bench-stream", help="stream throughput/latency vs a pass-through agent"))
    bench.add_argument("--queries", type=int, default=1000)
    bench.add_argument("--output", help="write the measurements as JSON here")
    bench.add_argument("--timeout", type=float, default=600.0, help="limit for each wait (seconds)")
    bench.add_argument("--rate", type=float, default=0.0,
                       help="queries per second in the measured runs (0: as fast as possible)")
    bench.add_argument("--backends", type=backend_names, default=("static", "minilm"),
                       help="embedding backends of the router-with-text runs (minilm is skipped, with a warning, "
                            "when it is not installed)")
    bench.add_argument("--minilm-queries", type=int, default=0,
                       help="measured queries of the minilm text run (0: --queries; MiniLM routes ~30 q/s)")
    bench.add_argument("--scaling-partitions", type=ints, default=(),
                       help="query partitions of the scaling grid, e.g. 1,2,4 (default: no grid)")
    bench.add_argument("--scaling-processes", type=ints, default=(1,),
                       help="processes per scaling cell, e.g. 1,2 (cells with more processes than partitions "
                            "are skipped)")
    bench.set_defaults(handler=cmd_bench_stream)

    parity = _with_config(sub.add_parser("bench-parity", help="the offline test stream through the service, "
                                                               "side by side with offline port"))
    from streams.tools.parity import add_arguments as add_parity_arguments

    add_parity_arguments(parity)
    parity.set_defaults(handler=cmd_bench_parity)

    recovery = _with_config(sub.add_parser("bench-recovery", help="router restart time and memory vs stream length"))
    bench_recovery.add_arguments(recovery)
    recovery.set_defaults(handler=cmd_bench_recovery)

    chaos = _with_config(sub.add_parser("chaos", help="soak under router kills, a broker restart and a paused worker"))
    chaos_module.add_arguments(chaos)
    chaos.set_defaults(handler=cmd_chaos)

    acls = _with_config(sub.add_parser("acls", help="print the kafka-acls.sh commands of the trust model"))
    for role in ("producer", "router", "worker", "operator"):
        default = getattr(Principals(), role)
        acls.add_argument(f"--{role}", default=default, help=f"principal of the {role} (default {default})")
    acls.add_argument("--admin-config", default="admin.properties", help="client config of a Kafka admin")
    acls.set_defaults(handler=cmd_acls)

    add_lag_parser(sub)
    core_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``port-router`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args.loglevel.upper())
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    except BrokerUnavailable as exc:
        print(f"port-router {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
