"""``port-router demo``: the whole loop on a local broker, with live progress and a final table.

Starts what is missing (broker via scripts/kafka.sh, topics under a fresh prefix, the
router, one replay worker per model), streams N held-out queries, waits until every query
is decided and every routed query completed, prints the table and stops what it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from streams.tools import processes
from streams.config import ServiceConfig, load_config
from streams.tools.outcomes import OutcomeTally, follow_outcomes
from streams.kafka import broker_answers
from streams.tools.processes import KAFKA_SCRIPT, REPO, get_json

log = logging.getLogger(__name__)


def budget_status(url: str) -> Callable[[], str]:
    """A live status function: weights version and budget left per model, from the router's /state."""
    def status() -> str:
        try:
            state = get_json(url)
        except OSError as exc:
            return f"(router state unavailable: {exc})"
        left = ", ".join(f"{model.split('/')[-1]} {100 * (1 - b['spent'] / b['limit']):.0f}%"
                         for model, b in state["budgets"].items() if b["limit"])
        weights = state["weights_version"]
        phase = "observation phase" if weights is None else f"learned weights v{weights}"
        return f"{phase}; budget left: {left}"

    return status


def print_table(config: ServiceConfig, tally: OutcomeTally, state: dict[str, Any]) -> None:
    """The final per-model table: served, quality, cost, PPC, budget."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="demo: per model")
    for column in ("model", "routed", "completed", "quality", "cost $", "PPC", "budget $", "spent $"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in config.models:
        quality, cost = tally.quality.get(model.name, 0.0), tally.cost.get(model.name, 0.0)
        budget = state["budgets"].get(model.name, {})
        table.add_row(model.name, str(tally.routed.get(model.name, 0)), str(tally.completed.get(model.name, 0)),
                      f"{quality:.0f}", f"{cost:.5f}", f"{quality / cost:.0f}" if cost else "-",
                      f"{budget.get('limit', 0):.4f}", f"{budget.get('spent', 0):.5f}")
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(f"produced {tally.produced}, routed {sum(tally.routed.values())}, unserved {tally.unserved} "
                  f"{dict(tally.unserved_reasons)}, dlq {tally.dlq}, weights version {state.get('weights_version')}")


def summary(tally: OutcomeTally, state: dict[str, Any], config: ServiceConfig) -> dict[str, Any]:
    """The JSON summary."""
    return {
        "produced": tally.produced,
        "routed": {m.name: tally.routed.get(m.name, 0) for m in config.models},
        "unserved": tally.unserved,
        "unserved_reasons": dict(tally.unserved_reasons),
        "dlq": tally.dlq,
        "budget_limit": {m: v["limit"] for m, v in state["budgets"].items()},
        "budget_spent": {m: v["spent"] for m, v in state["budgets"].items()},
        "weights_version": state.get("weights_version"),
        "completions": sum(tally.completed.values()),
        "quality": {m: tally.quality.get(m, 0.0) for m in tally.completed},
        "cost": {m: tally.cost.get(m, 0.0) for m in tally.completed},
    }


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 when every query was accounted for."""
    processes.exit_on_sigterm()  # a SIGTERM stops the processes this command started, then exits
    from streams.service.data import load_split
    from streams.tools.produce import QuerySource, events, publish
    from streams.topics import create_topics

    prefix = f"demo{int(time.time())}."
    env = {**os.environ, "PORT_ROUTER__TOPICS__PREFIX": prefix, "HF_HUB_OFFLINE": "1"}
    config = load_config(args.config, env)
    bootstrap = config.kafka.bootstrap_servers
    started_broker = False
    log_dir = REPO / ".cache" / "demo-logs"
    children: list[processes.ServiceProcess] = []
    try:
        if not broker_answers(config.kafka.confluent()):
            port = bootstrap.rsplit(":", 1)[-1]
            subprocess.run([str(KAFKA_SCRIPT), "start"], check=True, env={**env, "KAFKA_PORT": port})
            started_broker = True
        create_topics(config)
        _, stream = load_split(config)
        if stream is None:
            raise RuntimeError("the demo needs history_rows in the configuration (a held-out query stream)")
        n = min(args.queries, len(stream))
        router = processes.router(args.config, log_dir / "router.log", web_port=config.router.web_port, env=env)
        children.append(router.start())
        print(f"demo: topics under prefix {prefix!r}; router starting (builds or loads the index; logs in "
              f"{log_dir})")
        router.wait_ready(timeout=args.timeout)
        for model in config.models:
            log_path = log_dir / f"worker-{model.name.replace('/', '_')}.log"
            children.append(processes.worker(args.config, model.name, log_path, env=env).start())
        source = QuerySource(stream.ids[:n], stream.prompts[:n])
        ids = publish(config, events(source, "demo:"), n)
        tally = follow_outcomes(config, len(ids), timeout=args.timeout, live=True,
                                status=budget_status(router.url("/state")))
        tally.produced = len(ids)
        state = router.state()
        print_table(config, tally, state)
        result = summary(tally, state, config)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            print(f"summary written to {args.json}")
        return 0 if tally.decided() == len(ids) else 1
    finally:
        processes.stop_all(children)
        if started_broker:
            subprocess.run([str(KAFKA_SCRIPT), "stop"], check=False, env=env)
