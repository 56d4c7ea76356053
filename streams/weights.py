"""The learned weights on the compacted ``weights`` topic: follow them, and learn them once.

Every router process runs a ``WeightsWatcher`` (a confluent-kafka consumer without a group
that reads the topic from the beginning), so every instance applies the newest weights and
a restarted router recovers them instead of observing again. The ``Optimizer`` runs where
the single ``observations`` partition is consumed.

Only records under the key ``weights`` count. A record there that is not applicable (not valid
JSON of ``RoutingWeights``, a tombstone, another set of models, an older version) is ignored,
and because compaction keeps only the newest record of the key, the watcher then publishes
the weights it applies again: the key's newest record is valid again and survives compaction.
Weights for the same models in another order are applied with gamma reordered by model name.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

import numpy as np
from pydantic import ValidationError

from router_core.engine import RoutingEngine
from router_core.estimator import Estimates
from schemas import ObservationEvent, RoutingWeights

log = logging.getLogger(__name__)

WEIGHTS_KEY = b"weights"


class WeightsWatcher:
    """Keeps the newest RoutingWeights of a topic; ``caught_up`` is set once the start-up backlog is read."""

    def __init__(self, kafka_conf: dict[str, str], topic: str, models: Sequence[str]) -> None:
        self.kafka_conf = kafka_conf
        self.topic = topic
        self.models = tuple(models)
        self.caught_up = threading.Event()
        self._latest: RoutingWeights | None = None
        self._damaged = False  # the weights key's newest record read is not the weights applied
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="weights-watcher", daemon=True)

    def start(self) -> None:
        """Start following the topic in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        self._thread.join(timeout=10)

    def latest(self) -> RoutingWeights | None:
        """The newest valid weights seen, or None (observation phase)."""
        return self._latest

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        consumer = Consumer({**self.kafka_conf, "group.id": "unused-weights-watcher", "enable.auto.commit": False,
                             "enable.partition.eof": True})
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        if not self.caught_up.is_set():
                            log.info("weights: start-up backlog read; current: %s", self.describe())
                        self.caught_up.set()
                        self._repair()
                    else:
                        log.warning("weights consumer: %s", message.error())
                    continue
                self._apply(message.key(), message.value(), message.offset())
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """Apply the record's weights, or note that the weights key's newest record is not applicable."""
        if key != WEIGHTS_KEY:
            log.error("weights topic %s: record at offset %d has key %r, not %r: ignored", self.topic, offset,
                      key, WEIGHTS_KEY)
            return
        weights = self._applicable(value)
        if isinstance(weights, str):
            log.error("weights topic %s: record at offset %d ignored: %s", self.topic, offset, weights)
            self._damaged = True
            return
        self._latest = weights
        self._damaged = False
        log.info("weights: applying %s", self.describe())

    def _applicable(self, value: bytes | None) -> RoutingWeights | str:
        """The record's weights in the router's model order, or why they do not apply."""
        if value is None:
            return "a tombstone"
        try:
            weights = RoutingWeights.model_validate_json(value)
        except ValidationError as exc:
            return f"not valid RoutingWeights: {exc}"
        aligned = align_weights(weights, self.models)
        if isinstance(aligned, RoutingWeights) and self._latest is not None and aligned.version < self._latest.version:
            return f"version {aligned.version} is older than the applied version {self._latest.version}"
        return aligned

    def _repair(self) -> None:
        """Once the topic is read to its end: if the weights key's newest record is not the applied weights,
        publish those again, so that what compaction keeps is valid."""
        if not self._damaged or self._latest is None:
            return
        log.warning("weights topic %s: republishing v%d over an inapplicable record", self.topic, self._latest.version)
        try:
            publish_weights(self.kafka_conf, self.topic, self._latest)
        except RuntimeError as exc:
            log.error("weights topic %s: could not republish the weights (will retry on the next record): %s",
                      self.topic, exc)

    def describe(self) -> str:
        """One line about the current weights."""
        w = self._latest
        if w is None:
            return "none (observation phase)"
        return f"v{w.version} solver={w.solver} objective={w.objective:.4g} sample={w.sample_size}"


def align_weights(weights: RoutingWeights, models: Sequence[str]) -> RoutingWeights | str:
    """``weights`` with gamma in the order of ``models``, or why they cannot apply (another set of models)."""
    if sorted(weights.models) != sorted(models):
        return f"weights v{weights.version} are for models {weights.models}, the router has {list(models)}"
    gamma = dict(zip(weights.models, weights.gamma))
    return weights.model_copy(update={"models": list(models), "gamma": [gamma[m] for m in models]})


def publish_weights(kafka_conf: dict[str, str], topic: str, weights: RoutingWeights) -> None:
    """Write ``weights`` under the weights key and wait for the broker's acknowledgement (RuntimeError if none)."""
    from confluent_kafka import Producer

    producer = Producer({**kafka_conf, "acks": "all", "enable.idempotence": True})
    producer.produce(topic, key=WEIGHTS_KEY, value=weights.model_dump_json().encode())
    if producer.flush(30) != 0:
        raise RuntimeError(f"could not publish weights to {topic}")


def read_observations(kafka_conf: dict[str, str], topic: str, count: int, timeout: float = 60.0) -> Estimates:
    """The estimates of the first ``count`` observations on ``topic`` (partition 0)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**kafka_conf, "group.id": "unused-observation-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    quality: list[list[float]] = []
    cost: list[list[float]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(quality) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(quality)} of {count} observations from {topic} in {timeout}s")
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            try:
                event = ObservationEvent.model_validate_json(message.value() or b"")
            except ValidationError as exc:
                log.error("observations topic holds an invalid message at offset %d, skipped: %s",
                          message.offset(), exc)
                continue
            quality.append(event.quality)
            cost.append(event.cost)
    finally:
        consumer.close()
    return Estimates(np.asarray(quality, dtype=np.float64), np.asarray(cost, dtype=np.float64))


class Optimizer:
    """Solves the dual once, when the observations topic holds ceil(eps * N) observations."""

    def __init__(self, engine: RoutingEngine, budgets: np.ndarray, kafka_conf: dict[str, str],
                 observations_topic: str, weights_topic: str, watcher: WeightsWatcher) -> None:
        self.engine = engine
        self.budgets = budgets
        self.kafka_conf = kafka_conf
        self.observations_topic = observations_topic
        self.weights_topic = weights_topic
        self.watcher = watcher
        self.target = engine.observation_count()
        self.published: RoutingWeights | None = None

    def on_observation(self, offset: int) -> RoutingWeights | None:
        """Call for each observation (its offset); solves and publishes when the target is reached
        and no weights exist yet. Returns the published weights, if any."""
        if offset + 1 < self.target or self.published is not None:
            return None
        self.watcher.caught_up.wait()  # weights published before a restart count
        if self.watcher.latest() is not None:
            return None
        observed = read_observations(self.kafka_conf, self.observations_topic, self.target)
        started = time.perf_counter()
        solution = self.engine.solve_weights(observed, self.budgets)
        weights = RoutingWeights(
            version=1, models=list(self.engine.models), gamma=[float(g) for g in solution.gamma],
            alpha=self.engine.port.alpha, eps=self.engine.port.eps, solver=solution.solver,
            objective=float(solution.objective), cost_scale=float(self.engine.cost_scale),
            sample_size=len(observed), created_at=time.time(),
        )
        log.info("optimizer: solved on %d observations in %.3fs (%s), gamma=%s", len(observed),
                 time.perf_counter() - started, solution.solver, np.round(solution.gamma, 4).tolist())
        publish_weights(self.kafka_conf, self.weights_topic, weights)
        log.info("optimizer: published weights v%d to %s", weights.version, self.weights_topic)
        self.published = weights
        return weights
