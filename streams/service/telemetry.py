"""The router's calls into the Prometheus metrics (streams.metrics, owned by ops)."""

from __future__ import annotations

from typing import Sequence

from schemas import RoutingWeights
from streams import metrics
from streams.consumer_lag import LagReader
from streams.service.messages import Outgoing
from streams.service.prepare import Prepared
from streams.service.router import Router


def record_batch(prepared: Prepared, emitted: Sequence[Outgoing], decide_seconds: float) -> None:
    """Count one micro-batch's new decisions, dead letters and timings."""
    for reason in prepared.dead_reasons:
        metrics.record_dead_letter(reason)
    for message in emitted:
        if message.label is None:
            continue  # a re-emitted decision was counted when it was made
        kind, detail = message.label
        if kind == "routed":
            model, phase = detail.rsplit("/", 1)
            metrics.record_routed(model, phase)
        elif kind == "handed-over":
            metrics.record_handover()
        else:
            metrics.record_unserved(detail)
    metrics.DECISION_LATENCY.observe(decide_seconds)
    if prepared.embed_seconds is not None:
        metrics.EMBEDDING_BATCH_LATENCY.observe(prepared.embed_seconds)


def record_state(router: Router, weights: RoutingWeights | None) -> None:
    """Export the budget shares held and the applied weights."""
    metrics.record_budgets(metrics.BudgetShare(model, partition, limit, reserved, settled)
                           for model, partition, limit, reserved, settled in router.budget_shares())
    if weights is not None:
        metrics.record_weights(weights.models, weights.gamma, weights.version)


def start(router: Router, kafka_conf: dict[str, str], group_prefix: str) -> metrics.LagMonitor:
    """Declare the per-model series and start the consumer-lag monitor."""
    metrics.declare_router_models(router.models)
    monitor = metrics.LagMonitor(LagReader(kafka_conf), group_prefix=group_prefix)
    monitor.start()
    return monitor
