"""Prometheus metrics of the router and the workers, and the export of consumer lag.

Every metric lives in :data:`REGISTRY` (a dedicated registry plus the process and platform
collectors). Label values are bounded: model names from the configuration, fixed phase and
reason sets, consumer group / topic / partition. Query text, ids and keys never become labels.

Serving: workers call :func:`serve_metrics` (a plain HTTP server); the Faust router mounts
:func:`render_metrics` as its ``/metrics`` web view. Consumer lag is read in a background
thread by :class:`LagMonitor` (from streams.consumer_lag.LagReader) and exported as ``port_router_consumer_lag_messages``.

Wiring (what the Helm chart, the dashboard and tests/ops/test_ops_prometheus.py expect):

- router: ``/metrics`` page returning :func:`render_metrics`; at start
  :func:`declare_router_models` and ``LagMonitor(LagReader(kafka.confluent()),
  group_prefix=topics.prefix).start()`` (the router's and every worker's group share the
  prefix); per batch :func:`record_routed`, :func:`record_unserved`, :func:`record_dead_letter`,
  ``DECISION_LATENCY`` and ``EMBEDDING_BATCH_LATENCY``; on a timer :func:`record_budgets`; on new
  weights :func:`record_weights`; in the optimizer :func:`record_observations`.
- worker: ``port-router worker --metrics-port N`` calls :func:`serve_metrics` and
  :func:`declare_worker_model`; per query :func:`record_completion` or :func:`record_worker_error`.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.consumer_lag import LagReader, PartitionLag

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

PHASES = ("observation", "learned")
UNSERVED_REASONS = ("observation-skip", "declined", "no-budget")
DEAD_LETTER_REASONS = ("empty", "too_large", "invalid", "bad_embedding", "other")
OTHER = "other"
_LABEL_SAFE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")

# -- router ---------------------------------------------------------------------------------
ROUTED = Counter("port_router_routed", "Queries routed to a model, per model and phase (observation or learned).",
                 ["model", "phase"], registry=REGISTRY)
UNSERVED = Counter("port_router_unserved", "Queries not served, per reason (observation-skip, declined, no-budget).",
                   ["reason"], registry=REGISTRY)
HANDOVERS = Counter("port_router_handovers", "Queries handed over to another input partition, whose budget share "
                    "can pay for the model they want.", registry=REGISTRY)
DEAD_LETTERED = Counter("port_router_dead_lettered", "Input messages sent to the dead-letter topic, per reason class.",
                        ["reason"], registry=REGISTRY)
GAMMA = Gauge("port_router_gamma", "Learned dual weight gamma per model (of the newest weights version).",
              ["model"], registry=REGISTRY)
WEIGHTS_VERSION = Gauge("port_router_weights_version",
                        "Version of the routing weights this router applies; 0 while none were learned.",
                        registry=REGISTRY)
OBSERVATIONS = Gauge("port_router_observations", "Observations in the observations topic seen by the optimizer.",
                     registry=REGISTRY)
OBSERVATIONS_NEEDED = Gauge("port_router_observations_needed",
                            "Observations the optimizer waits for before solving: ceil(eps * N).", registry=REGISTRY)
DECISION_LATENCY = Histogram(
    "port_router_decision_latency_seconds", "Time from taking a micro-batch to having its routing decisions.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=REGISTRY)
EMBEDDING_BATCH_LATENCY = Histogram(
    "port_router_embedding_batch_latency_seconds", "Time to embed one micro-batch of query texts.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=REGISTRY)

# -- workers --------------------------------------------------------------------------------
WORKER_COMPLETIONS = Counter("port_router_worker_completions", "Routed queries a worker answered, per model.",
                             ["model"], registry=REGISTRY)
WORKER_ERRORS = Counter("port_router_worker_errors", "Routed queries a worker failed to answer, per model and error.",
                        ["model", "error"], registry=REGISTRY)
WORKER_COST = Counter("port_router_worker_cost_dollars", "Actual dollars spent by a worker's LLM calls, per model.",
                      ["model"], registry=REGISTRY)
WORKER_LATENCY = Histogram(
    "port_router_worker_llm_latency_seconds", "Latency of one LLM call made by a worker, per model.", ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0), registry=REGISTRY)

INPUT_STALL_RECOVERIES = Counter("port_router_input_stall_recoveries",
                                 "Times the router re-read a stalled queries partition from its recorded position.",
                                 registry=REGISTRY)
INPUT_HEALTHY = Gauge("port_router_input_healthy",
                      "1 while no queries partition has been stalled for twice router.stall_timeout_s, else 0 "
                      "(then /health fails).", registry=REGISTRY)
LAG_ERRORS = Counter("port_router_consumer_lag_errors", "Failed attempts to read consumer lag from the broker.",
                     registry=REGISTRY)


class SnapshotGauges(Collector):
    """A labelled gauge family whose whole set of series is replaced at once.

    Unlike ``Gauge.clear()`` followed by ``set()``, a scrape never sees a half-updated set, and
    series that vanish from the snapshot (a revoked partition, a deleted group) disappear.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def replace(self, values: dict[tuple[str, ...], float]) -> None:
        """Make ``values`` ({label values: value}) the complete set of series."""
        for key in values:
            if len(key) != len(self.labels):
                raise ValueError(f"{self.name}: {len(key)} label values for labels {self.labels}")
        self._values = {tuple(str(v) for v in key): float(value) for key, value in values.items()}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in self._values.items():
            family.add_metric(list(key), value)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labels)


_BUDGET_LABELS = ("model", "partition")
BUDGET_LIMIT = SnapshotGauges("port_router_budget_limit_dollars",
                              "Budget share B_i / P of one input partition held by this router.", _BUDGET_LABELS,
                              REGISTRY)
BUDGET_RESERVED = SnapshotGauges("port_router_budget_reserved_dollars",
                                 "Estimated dollars of routed queries whose completion has not arrived yet.",
                                 _BUDGET_LABELS, REGISTRY)
BUDGET_SPENT = SnapshotGauges("port_router_budget_spent_dollars",
                              "Actual dollars of completed queries (reconciled from the completions topic).",
                              _BUDGET_LABELS, REGISTRY)
BUDGET_REMAINING = SnapshotGauges("port_router_budget_remaining_dollars",
                                  "Budget share left to route with: limit - reserved - spent.", _BUDGET_LABELS,
                                  REGISTRY)
INPUT_STALLED = SnapshotGauges("port_router_input_stalled_seconds",
                               "Seconds a queries partition has had lag without its position moving (0 when it moves "
                               "or has no lag): this router's position for the partitions it holds, the position "
                               "their router commits as a hint for the others.", ("partition",), REGISTRY)
CONSUMER_LAG = SnapshotGauges("port_router_consumer_lag_messages",
                              "Messages not yet consumed by a consumer group: high watermark - committed offset.",
                              ("group", "topic", "partition"), REGISTRY)


def bounded_label(value: str, allowed: Sequence[str] | None = None) -> str:
    """``value`` when it is a safe, bounded label value (one of ``allowed`` if given, else a short
    identifier-like word); ``"other"`` otherwise, so free text never becomes a label."""
    if allowed is not None:
        return value if value in allowed else OTHER
    return value if _LABEL_SAFE.match(value) else OTHER


def dead_letter_reason(reason: str) -> str:
    """The reason class (one of DEAD_LETTER_REASONS) of a router's free-text dead-letter reason."""
    text = reason.lower()
    if text.startswith("empty message"):
        return "empty"
    if "exceeds" in text and "byte" in text:
        return "too_large"
    if text.startswith("embedding"):
        return "bad_embedding"
    if text.startswith("invalid"):
        return "invalid"
    return OTHER


def declare_router_models(models: Sequence[str]) -> None:
    """Create the routed series of every model and phase at zero, so a model without traffic has
    series (rates and alerts see 0 instead of no data). Call once when the router starts."""
    for model in models:
        for phase in PHASES:
            ROUTED.labels(model=model, phase=phase)


def declare_worker_model(model: str) -> None:
    """Create a worker's completion and cost series at zero. Call once when the worker starts."""
    WORKER_COMPLETIONS.labels(model=model)
    WORKER_COST.labels(model=model)


def record_routed(model: str, phase: str, count: int = 1) -> None:
    """Count ``count`` queries routed to ``model`` in ``phase``."""
    ROUTED.labels(model=model, phase=bounded_label(phase, PHASES)).inc(count)


def record_handover() -> None:
    """Count one query handed over to another input partition."""
    HANDOVERS.inc()


def record_unserved(reason: str, count: int = 1) -> None:
    """Count ``count`` queries not served for ``reason``."""
    UNSERVED.labels(reason=bounded_label(reason, UNSERVED_REASONS)).inc(count)


def record_dead_letter(reason: str) -> None:
    """Count one dead-lettered input; ``reason`` is the free text written to the DLQ."""
    DEAD_LETTERED.labels(reason=dead_letter_reason(reason)).inc()


@dataclass(frozen=True)
class BudgetShare:
    """The budget state of one (model, input partition) pair, in dollars."""

    model: str
    partition: int
    limit: float
    reserved: float
    spent: float

    @property
    def remaining(self) -> float:
        """Dollars left: limit - reserved - spent (negative when overspent)."""
        return self.limit - self.reserved - self.spent


def record_budgets(shares: Iterable[BudgetShare]) -> None:
    """Replace the budget gauges with ``shares``: every (model, partition) this router holds now."""
    rows = list(shares)
    for gauge, attr in ((BUDGET_LIMIT, "limit"), (BUDGET_RESERVED, "reserved"), (BUDGET_SPENT, "spent"),
                        (BUDGET_REMAINING, "remaining")):
        gauge.replace({(s.model, str(s.partition)): getattr(s, attr) for s in rows})


def record_weights(models: Sequence[str], gamma: Sequence[float], version: int) -> None:
    """Export the newest routing weights: gamma per model and their version."""
    if len(models) != len(gamma):
        raise ValueError(f"{len(gamma)} gamma values for {len(models)} models")
    for model, value in zip(models, gamma):
        GAMMA.labels(model=model).set(value)
    WEIGHTS_VERSION.set(version)


def record_observations(seen: int, needed: int) -> None:
    """Export the optimizer's progress: observations seen and needed."""
    OBSERVATIONS.set(seen)
    OBSERVATIONS_NEEDED.set(needed)


def record_completion(model: str, cost: float, latency_s: float) -> None:
    """Count one answered query of ``model`` with its actual cost and LLM latency."""
    WORKER_COMPLETIONS.labels(model=model).inc()
    WORKER_COST.labels(model=model).inc(cost)
    WORKER_LATENCY.labels(model=model).observe(latency_s)


def record_worker_error(model: str, error: BaseException | str) -> None:
    """Count one failed query of ``model``; an exception is labelled by its class name."""
    kind = type(error).__name__ if isinstance(error, BaseException) else error
    WORKER_ERRORS.labels(model=model, error=bounded_label(kind)).inc()


def record_input_stalls(stalled_seconds: dict[int, float], held: Iterable[int], healthy: bool) -> None:
    """Export the stall clock of every queries partition and the input's health."""
    INPUT_STALLED.replace({(str(p),): stalled_seconds.get(p, 0.0) for p in held})
    INPUT_HEALTHY.set(1 if healthy else 0)


def render_metrics() -> tuple[bytes, str]:
    """The exposition of :data:`REGISTRY` and its content type, for a web view (Faust's /metrics)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics of :data:`REGISTRY` on ``addr:port`` from a daemon thread (workers)."""
    start_http_server(port, addr=addr, registry=REGISTRY)
    log.info("metrics: serving on http://%s:%d/metrics", addr, port)


# -- consumer lag (read by streams.consumer_lag) ----------------------------------------------
def record_lag(rows: Iterable[PartitionLag]) -> None:
    """Replace the consumer-lag gauges with ``rows``."""
    CONSUMER_LAG.replace({(r.group, r.topic, str(r.partition)): r.lag for r in rows})


class LagMonitor:
    """Polls consumer lag every ``interval`` seconds in a daemon thread and exports it.

    ``groups`` names the groups to watch; without it, every group whose id starts with
    ``group_prefix`` (the topic prefix: the router's and the workers' groups) is watched.
    """

    def __init__(self, reader: LagReader, groups: Sequence[str] = (), group_prefix: str = "",
                 interval: float = 15.0) -> None:
        self.reader = reader
        self.groups = list(groups)
        self.group_prefix = group_prefix
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> list[PartitionLag]:
        """Read and export the lag once; return the rows (an exception counts an error and re-raises)."""
        try:
            rows = self.reader.read(self.groups or self.reader.groups(self.group_prefix))
        except Exception:
            LAG_ERRORS.inc()
            raise
        record_lag(rows)
        return rows

    def start(self) -> None:
        """Start polling in the background."""
        self._thread = threading.Thread(target=self._run, name="lag-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + self.reader.timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # the broker may be briefly unreachable; keep polling
                log.warning("lag monitor: could not read consumer lag: %s", exc)
            self._stop.wait(self.interval)
