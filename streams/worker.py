"""The LLM worker of one model: consume ``routed.<model>``, answer, publish a Completion.

A confluent-kafka consumer group per model (``<app id>-worker-<model>``); offsets are
committed after the completion is acknowledged (at-least-once), and query ids already
served (found in the completions topic at start, or served since) are skipped.

A routed message the worker must not answer (invalid, for another model, keyed by something
else than its query id, naming an input partition the completions topic does not have), and
one whose backend failed for good, goes to the DLQ with the reason; its offset is committed
only once that dead letter is acknowledged. If the broker acknowledges neither, the worker
stops without committing (the message is delivered again on restart).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from router_core.budget import within_reservation
from router_core.history import History
from schemas import Completion, RoutedQuery
from streams import kafka, metrics
from streams.config import ModelSettings, ServiceConfig, topic_name
from streams.service.messages import Outgoing, Record
from streams.service.prepare import dead_letter, key_reason, validation_reason
from streams.kafka import BrokerUnavailable, read_to_end
from streams.topics import COMPLETIONS, DLQ

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What a backend returns for one query."""

    cost: float
    response: str | None
    quality: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    refused: str | None = None  # why there is no answer (cost 0)


class OverReservation(Exception):
    """The answer would cost more than the query's reservation: the worker refuses it, spending nothing."""


def spending_limit(routed: RoutedQuery) -> float:
    """The most an answer to ``routed`` may cost: its reservation (its estimate for a message without one)."""
    return routed.estimated_cost if routed.reserved_cost is None else routed.reserved_cost


class Backend(Protocol):
    """Answers a routed query for at most ``limit`` dollars, or raises OverReservation without spending."""

    def answer(self, routed: RoutedQuery, limit: float) -> Answer: ...


class ReplayBackend:
    """Answers from the history: the recorded response, true cost and quality of the model."""

    def __init__(self, history: History, model: str) -> None:
        self.column = history.models.index(model)
        self.rows = {query_id: row for row, query_id in enumerate(history.ids)}
        self.history = history

    def answer(self, routed: RoutedQuery, limit: float) -> Answer:
        """The recorded answer; ids carrying a run prefix (``<prefix>:<id>``) are matched on the id. A recorded
        cost beyond ``limit`` is refused (a replayed answer cannot be cut short)."""
        row = self.rows.get(routed.query.id)
        if row is None and ":" in routed.query.id:
            row = self.rows.get(routed.query.id.split(":", 1)[1])
        if row is None:
            log.warning("replay: query %s is not in the history; charging the estimate", routed.query.id)
            return Answer(cost=min(routed.estimated_cost, limit), response=None)
        cost = float(self.history.cost[row, self.column])
        if not within_reservation(cost, limit):
            raise OverReservation(f"the recorded answer costs ${cost:.6g}, beyond the reservation ${limit:.6g}")
        responses = self.history.responses
        return Answer(cost=cost,
                      response=None if responses is None else responses[row][self.column][:32_000],
                      quality=float(self.history.quality[row, self.column]))


class OpenAIBackend:
    """Calls an OpenAI-compatible ``/v1/chat/completions`` (OPENAI_BASE_URL, OPENAI_API_KEY)."""

    def __init__(self, model: ModelSettings, retries: int = 5, timeout: float = 120.0) -> None:
        self.model = model
        self.base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
        self.api_key = os.environ.get("OPENAI_API_KEY", "")
        self.retries = retries
        self.timeout = timeout

    def answer(self, routed: RoutedQuery, limit: float) -> Answer:
        """One chat completion; usage tokens times the configured prices is the cost. Its ``max_tokens`` keeps
        the cost within ``limit`` (``output_token_cap``)."""
        text = routed.query.text or ""
        max_tokens = output_token_cap(self.model, text, limit)
        cap = {} if max_tokens is None else {"max_tokens": max_tokens}
        body = json.dumps({"model": self.model.api_model or self.model.name, **cap,
                           "messages": [{"role": "user", "content": text}]}).encode()
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.api_key}"})
        reply = self._call_with_backoff(request)
        usage = reply.get("usage") or {}
        tokens_in = int(usage.get("prompt_tokens", 0))
        tokens_out = int(usage.get("completion_tokens", 0))
        text = reply["choices"][0]["message"].get("content") if reply.get("choices") else None
        return Answer(cost=tokens_in * self.model.price_input_per_token + tokens_out * self.model.price_output_per_token,
                      response=None if text is None else str(text)[:32_000], input_tokens=tokens_in,
                      output_tokens=tokens_out)

    def _call_with_backoff(self, request: urllib.request.Request) -> dict:
        delay = 1.0
        for attempt in range(1, self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code not in (408, 409, 429) and exc.code < 500:
                    raise
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                problem = str(exc)
            if attempt == self.retries:
                raise RuntimeError(f"{self.model.name}: giving up after {attempt} attempts ({problem})")
            log.warning("%s: attempt %d failed (%s); retrying in %.0fs", self.model.name, attempt, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")


PROMPT_TOKEN_OVERHEAD = 64  # tokens of the chat template around the user's text, generously


def output_token_cap(model: ModelSettings, text: str, limit: float) -> int | None:
    """The ``max_tokens`` under which an answer to ``text`` costs at most ``limit`` dollars: the prompt counted
    at one token per UTF-8 byte (a byte-level tokenizer's worst case) plus the template overhead; None when
    the model has no output price (nothing to cap). OverReservation when not even one token fits."""
    if model.price_output_per_token <= 0:
        return None
    prompt_bound = (len(text.encode("utf-8")) + PROMPT_TOKEN_OVERHEAD) * model.price_input_per_token
    tokens = int((limit - prompt_bound) // model.price_output_per_token)
    if tokens < 1:
        raise OverReservation(f"the prompt alone may cost ${prompt_bound:.6g}; the reservation ${limit:.6g} leaves "
                              "no output token")
    return tokens


def served_ids(kafka_conf: dict[str, str], topic: str, model: str, timeout: float = 30.0) -> set[str]:
    """Query ids that already have a completion by ``model`` on ``topic`` (read to the current end)."""
    served: set[str] = set()
    for message in read_to_end(kafka_conf, topic, timeout):
        try:
            completion = Completion.model_validate_json(message.value() or b"")
        except ValidationError:
            continue
        if completion.model == model:
            served.add(completion.query_id)
    return served


def commit(consumer: object, message: object) -> None:
    """Commit past ``message``; a failed commit (e.g. the group coordinator moving during a broker
    restart) is logged, not fatal: the next commit covers it, and a re-delivered query whose
    completion was written is skipped."""
    from confluent_kafka import KafkaException

    try:
        consumer.commit(message=message, asynchronous=False)  # type: ignore[attr-defined]
    except KafkaException as exc:
        log.warning("offset commit failed (the next commit covers it): %s", exc)


def worker_group(group_prefix: str, model: str) -> str:
    """The consumer group of ``model``'s workers (``group_prefix``: the router's app id)."""
    return f"{group_prefix}-worker-{topic_name(model)}"


class Worker:
    """Consumes one model's routed topic and publishes completions."""

    def __init__(self, config: ServiceConfig, model: str, backend: Backend, group_prefix: str) -> None:
        self.config = config
        self.model = model
        self.backend = backend
        self.topic = config.routed_topic(model)
        self.completions = config.topics.name(COMPLETIONS)
        self.dlq = config.topics.name(DLQ)
        self.group = worker_group(group_prefix, model)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = False
        self.partitions = 0  # partitions of the completions topic (read at start)

    def run(self, max_idle: float | None = None) -> int:
        """Serve until SIGTERM/SIGINT (or ``max_idle`` seconds without messages); return the count served.
        Raises BrokerUnavailable when the broker does not acknowledge a completion or dead letter."""
        conf = self.config.kafka.confluent()
        served = served_ids(conf, self.completions, self.model)
        consumer = kafka.consumer(conf, self.group, **{"auto.offset.reset": "earliest"})
        producer = kafka.producer(conf, **{"enable.idempotence": True})
        self.partitions = len(kafka.partitions(consumer, self.completions, timeout=30))
        consumer.subscribe([self.topic])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        log.info("worker %s for %s on %s (group %s); %d ids served before", self.name, self.model, self.topic,
                 self.group, len(served))
        metrics.declare_worker_model(self.model)
        count = 0
        idle_since = time.monotonic()
        try:
            while not self.stopping:
                message = consumer.poll(0.5)
                if message is None:
                    if max_idle is not None and time.monotonic() - idle_since > max_idle:
                        break
                    continue
                idle_since = time.monotonic()
                if message.error():
                    log.warning("consumer: %s", message.error())
                    continue
                record = Record(message.topic(), message.partition(), message.offset(), message.key(), message.value())
                count += self.handle(record, served, producer)
                commit(consumer, message)  # handled: answered, skipped or dead-lettered
        finally:
            producer.flush(30)
            consumer.close()
        log.info("worker for %s stopped after serving %d queries", self.model, count)
        return count

    def handle(self, record: Record, served: set[str], producer: object) -> bool:
        """Answer one routed message, skip it (already served) or dead-letter it; True when answered."""
        routed = self.check(record)
        if isinstance(routed, str):
            self.dead_letter(record, routed, producer)
            return False
        if routed.query.id in served:
            return False
        started = time.monotonic()
        try:
            answer = self.backend.answer(routed, spending_limit(routed))
        except OverReservation as exc:
            answer = Answer(cost=0.0, response=None, refused=str(exc))
        except (OSError, RuntimeError, ValueError, KeyError) as exc:  # the backend failed for good
            metrics.record_worker_error(self.model, exc)
            self.dead_letter(record, f"not answered, the reservation stays held: the backend failed: {exc}", producer)
            return False
        completion = Completion(query_id=routed.query.id, model=self.model, partition=routed.partition,
                                cost=answer.cost, input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
                                latency_s=time.monotonic() - started, quality=answer.quality, response=answer.response,
                                worker=self.name, completed_at=time.time(), refused=answer.refused)
        deliver(producer, Outgoing(self.completions, routed.query.id, completion.model_dump_json().encode(),
                                   partition=routed.partition))
        served.add(routed.query.id)
        if answer.refused is not None:
            log.warning("refused %s (its reservation is released): %s", routed.query.id, answer.refused)
            return False
        metrics.record_completion(self.model, answer.cost, completion.latency_s)
        return True

    def check(self, record: Record) -> RoutedQuery | str:
        """The routed query in ``record``, or why this worker must not answer it."""
        try:
            routed = RoutedQuery.model_validate_json(record.value or b"")
        except ValidationError as exc:
            return validation_reason(exc)
        if routed.model != self.model or record.topic != self.topic:
            return f"routed to model {routed.model!r} on {record.topic}; this worker serves {self.model!r} on {self.topic}"
        if routed.partition >= self.partitions:
            return (f"names input partition {routed.partition}, but {self.completions} has {self.partitions} "
                    f"partitions")
        return key_reason(record, routed.query) or routed

    def dead_letter(self, record: Record, reason: str, producer: object) -> None:
        """Send ``record`` to the DLQ with ``reason``."""
        log.error("dlq: %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        deliver(producer, dead_letter(self.dlq, record, reason))


def deliver(producer: object, message: Outgoing) -> None:
    """Produce ``message`` and wait for the broker's acknowledgement; BrokerUnavailable when it is refused or
    not acknowledged within 30 s (a failed delivery is reported by the callback, not by ``flush``)."""
    from confluent_kafka import KafkaException

    errors: list[object] = []
    where = {} if message.partition is None else {"partition": message.partition}
    try:
        producer.produce(message.topic, key=None if message.key is None else message.key.encode(),  # type: ignore[attr-defined]
                         value=message.value, on_delivery=lambda error, _: errors.append(error), **where)
    except (KafkaException, BufferError) as exc:
        raise BrokerUnavailable(f"could not send to {message.topic}: {exc}") from exc
    if producer.flush(30) != 0:  # type: ignore[attr-defined]
        raise BrokerUnavailable(f"the broker did not acknowledge a message to {message.topic} within 30s")
    if errors and errors[0] is not None:
        raise BrokerUnavailable(f"a message to {message.topic} was not delivered: {errors[0]}")
