"""Read what the service decided: routed.*, unserved, dlq and completions, tallied per query id.

The demo, the benchmark and the integration tests use it to check that every produced
query ends in exactly one place.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from streams import kafka
from streams.config import ServiceConfig
from streams.topics import COMPLETIONS, DLQ, UNSERVED


@dataclass
class OutcomeTally:
    """Counts and per-id placements of the service's outputs."""

    produced: int = 0
    routed: Counter = field(default_factory=Counter)
    unserved: int = 0
    unserved_reasons: Counter = field(default_factory=Counter)
    dlq: int = 0
    completed: Counter = field(default_factory=Counter)
    quality: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    placements: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # id -> {topic kinds}
    routed_messages: list[dict[str, Any]] = field(default_factory=list)
    unserved_messages: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    completions: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> completion (first)

    def decided(self) -> int:
        """Distinct query ids routed or unserved, plus dead letters."""
        return len(self.placements) + self.dlq

    def add(self, topic_kind: str, value: dict[str, Any]) -> None:
        """Count one message of kind 'routed:<model>', 'unserved', 'dlq' or 'completion'."""
        if topic_kind.startswith("routed:"):
            query_id = value["query"]["id"]
            if topic_kind not in self.placements[query_id]:
                self.routed[value["model"]] += 1
            self.placements[query_id].add(topic_kind)
            self.routed_messages.append(value)
        elif topic_kind == "unserved":
            if "unserved" not in self.placements[value["query_id"]]:
                self.unserved += 1
                self.unserved_reasons[value["reason"]] += 1
            self.placements[value["query_id"]].add("unserved")
            self.unserved_messages.append(value)
        elif topic_kind == "dlq":
            self.dlq += 1
            self.dead_letters.append(value)
        elif value["query_id"] not in self.completions:
            self.completions[value["query_id"]] = value
            self.completed[value["model"]] += 1
            self.quality[value["model"]] += value.get("quality") or 0.0
            self.cost[value["model"]] += value["cost"]


def output_topics(config: ServiceConfig) -> dict[str, str]:
    """topic name -> kind for every output topic."""
    kinds = {config.routed_topic(m.name): f"routed:{m.name}" for m in config.models}
    kinds[config.topics.name(UNSERVED)] = "unserved"
    kinds[config.topics.name(DLQ)] = "dlq"
    kinds[config.topics.name(COMPLETIONS)] = "completion"
    return kinds


def follow_outcomes(config: ServiceConfig, expected: int, timeout: float, live: bool = False,
                    wait_completions: bool = True, status: Callable[[], str] | None = None) -> OutcomeTally:
    """Read the output topics from the beginning until ``expected`` queries are decided (and, with
    ``wait_completions``, every routed one completed), or ``timeout`` seconds pass. With ``live``,
    show a progress line, followed by ``status()`` when given."""
    from rich.live import Live

    kinds = output_topics(config)
    tally = OutcomeTally()

    def done() -> bool:
        routed = sum(tally.routed.values())
        return tally.decided() >= expected and (not wait_completions or len(tally.completions) >= routed)

    with Live(auto_refresh=False, transient=False) as screen:
        def show() -> None:
            if live:
                extra = "" if status is None else "\n" + status()
                screen.update(progress_line(tally, expected) + extra, refresh=True)

        kafka.follow(config.kafka.confluent(), list(kinds), f"outcomes-{time.time_ns()}",
                     lambda message: tally.add(kinds[message.topic()], json.loads(message.value())), done, timeout,
                     tick=show)
    return tally


def progress_line(tally: OutcomeTally, expected: int) -> str:
    """One status line for live display."""
    phases = Counter(m["phase"] for m in tally.routed_messages)
    return (f"decided {tally.decided()}/{expected}: routed {sum(tally.routed.values())} "
            f"(observation {phases['observation']}, learned {phases['learned']}), unserved {tally.unserved}, "
            f"dlq {tally.dlq}, completed {len(tally.completions)}")
