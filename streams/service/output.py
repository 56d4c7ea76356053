"""The router's outputs (routed and unserved queries, observations, dead letters, completions'
dead letters) through a confluent-kafka producer.

Faust's aiokafka producer keeps at most one produce request in flight per broker and runs every
send on the event loop; with the decisions' changelog writes on it too, a batch waited for two
serial round trips of one shared connection. The outputs go through librdkafka instead: its own
thread batches them, several requests in flight, idempotent, so the order of each partition is
kept across retries. The changelog writes stay on Faust's producer, and a batch's outputs are
still handed over only after its changelog flush (streams/service/service.py, ``persist``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Sequence

from streams import kafka
from streams.kafka import BrokerUnavailable
from streams.service.messages import Outgoing

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # as Faust's producer_max_request_size (streams/service/app.py)


class OutputProducer:
    """Sends groups of messages in order and reports, per group, when the broker acknowledged all of them."""

    def __init__(self, kafka_conf: dict[str, str]) -> None:
        self.producer = kafka.producer(kafka_conf, **{
            "enable.idempotence": True, "linger.ms": 1, "message.max.bytes": MAX_MESSAGE_BYTES,
            "partitioner": "murmur2_random"})  # the Java client's partitioner, as aiokafka's: same key, same partition
        threading.Thread(target=self._serve, name="output-producer", daemon=True).start()  # ends with the process:
        # nothing is lost then, a batch's progress is recorded only after its outputs were acknowledged

    def send(self, messages: Sequence[Outgoing]) -> asyncio.Future[None]:
        """Hand ``messages`` to the producer, in order (call on the event loop); the future resolves once the
        broker acknowledged every one, or fails with BrokerUnavailable naming the first refusal."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not messages:
            done.set_result(None)
            return done
        group = _Group(loop, done, len(messages))
        for message in messages:
            self._produce(message, group.delivered)
        return done

    def _produce(self, message: Outgoing, report: Any) -> None:
        key = None if message.key is None else message.key.encode()
        extra = {} if message.partition is None else {"partition": message.partition}
        while True:
            try:
                self.producer.produce(message.topic, message.value, key, on_delivery=report, **extra)
                return
            except BufferError:  # the local queue is full: the delivery thread drains it
                time.sleep(0.01)

    def _serve(self) -> None:
        while True:
            self.producer.poll(0.05)


class _Group:
    """Counts the delivery reports of one ``send`` (called on the producer's thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], count: int) -> None:
        self.loop, self.done, self.left = loop, done, count
        self.failure: str | None = None

    def delivered(self, error: Any, message: Any) -> None:
        if error is not None and self.failure is None:
            self.failure = f"the broker refused a message to {message.topic()}: {error.str()}"
        self.left -= 1  # reports are served by the one delivery thread
        if self.left == 0:
            try:
                self.loop.call_soon_threadsafe(self._finish)
            except RuntimeError:  # the event loop closed at shutdown: nobody waits any more
                pass

    def _finish(self) -> None:
        if self.done.done():
            return
        if self.failure is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(BrokerUnavailable(self.failure))
