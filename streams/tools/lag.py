"""``port-router lag``: consumer lag per group, topic and partition in the terminal (rich).

Reads the same numbers as the ``port_router_consumer_lag_messages`` metric straight from the
broker, for an operator without Grafana. ``--watch`` refreshes the table until Ctrl-C.
"""

from __future__ import annotations

import argparse
import time
from itertools import groupby
from typing import Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

from streams.consumer_lag import LagReader, PartitionLag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lag`` command's options to ``parser``."""
    parser.add_argument("--config", help="service configuration YAML (Kafka settings and topic prefix)")
    parser.add_argument("--bootstrap-servers", help="brokers, overriding the configuration (default 127.0.0.1:9092)")
    parser.add_argument("--group", action="append", default=[],
                        help="consumer group to show (repeatable); default: every group starting with the prefix")
    parser.add_argument("--prefix", help="group id prefix (default: the configured topic prefix, else all groups)")
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    parser.add_argument("--warn-at", type=int, default=1000, help="highlight partitions lagging by this many messages")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")


def kafka_settings(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    """The confluent-kafka configuration and group prefix from ``--config`` and the overrides."""
    conf: dict[str, str] = {"bootstrap.servers": "127.0.0.1:9092"}
    prefix = ""
    if args.config:
        from streams.config import load_config

        config = load_config(args.config)
        conf = config.kafka.confluent()
        prefix = config.topics.prefix
    if args.bootstrap_servers:
        conf["bootstrap.servers"] = args.bootstrap_servers
    if args.prefix is not None:
        prefix = args.prefix
    return conf, prefix


def lag_table(rows: Sequence[PartitionLag], warn_at: int) -> Table:
    """A table with one line per partition and a total line per (group, topic)."""
    table = Table(title="consumer lag (messages)", show_lines=False)
    for name, justify in (("group", "left"), ("topic", "left"), ("partition", "right"), ("committed", "right"),
                          ("high watermark", "right"), ("lag", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if not rows:
        table.add_row("(no consumer group has committed offsets)", "", "", "", "", "")
        return table
    ordered = sorted(rows, key=lambda r: (r.group, r.topic, r.partition))
    for (group, topic), members in groupby(ordered, key=lambda r: (r.group, r.topic)):
        members = list(members)
        for row in members:
            style = "bold red" if row.lag >= warn_at else None
            committed = "-" if row.committed is None else str(row.committed)
            table.add_row(group, topic, str(row.partition), committed, str(row.high), str(row.lag), style=style)
        total = sum(r.lag for r in members)
        table.add_row(group, topic, "all", "", "", str(total), style="bold", end_section=True)
    return table


def read_rows(reader: LagReader, groups: Sequence[str], prefix: str) -> list[PartitionLag]:
    """The lag rows of ``groups``, or of every group starting with ``prefix`` when none are named."""
    return reader.read(list(groups) or reader.groups(prefix))


def run(args: argparse.Namespace) -> int:
    """Show the lag once, or refresh it with ``--watch``; 1 when the broker cannot be read."""
    console = Console()
    try:
        conf, prefix = kafka_settings(args)
        reader = LagReader(conf, timeout=args.timeout)
        rows = read_rows(reader, args.group, prefix)
    except Exception as exc:  # configuration or broker problems end the command with a message
        console.print(f"[red]port-router lag: {exc}[/red]")
        return 1
    if not args.watch:
        console.print(lag_table(rows, args.warn_at))
        return 0
    with Live(lag_table(rows, args.warn_at), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(args.interval)
                try:
                    rows = read_rows(reader, args.group, prefix)
                except Exception as exc:  # keep watching through a broker hiccup
                    live.console.print(f"[yellow]could not read lag: {exc}[/yellow]")
                    continue
                live.update(lag_table(rows, args.warn_at), refresh=True)
        except KeyboardInterrupt:
            return 0
