"""The upstream producer: publish QueryEvents from a RouterBench-schema file or a JSONL of texts."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from schemas import QueryEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuerySource:
    """Query ids and texts to publish, with optional precomputed embeddings (n, d)."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


def read_jsonl_texts(path: Path) -> QuerySource:
    """A JSONL file whose lines are strings or objects with ``text`` (and optionally ``id``)."""
    ids: list[str] = []
    texts: list[str] = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            if isinstance(item, str):
                item = {"text": item}
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError(f"{path}:{number}: expected a string or an object with a 'text' string")
            ids.append(str(item.get("id", f"{path.stem}-{number}")))
            texts.append(item["text"])
    return QuerySource(tuple(ids), tuple(texts))


def read_source(path: Path) -> QuerySource:
    """Queries from a RouterBench-schema history file (its prompts) or from a JSONL of texts."""
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        try:
            return read_jsonl_texts(path)
        except (ValueError, KeyError):
            pass  # a RouterBench table stored as JSONL
    from router_core.history import load_history

    history, report = load_history([path])
    log.info("query source %s: %s", path, report.summary())
    return QuerySource(history.ids, history.prompts)


def events(source: QuerySource, id_prefix: str = "", with_text: bool = True) -> Iterator[QueryEvent]:
    """QueryEvents of ``source`` (text, embedding or both), stamped when created."""
    for i, (query_id, text) in enumerate(zip(source.ids, source.texts)):
        embedding = None if source.embeddings is None else [float(x) for x in source.embeddings[i]]
        yield QueryEvent(id=f"{id_prefix}{query_id}", text=text if with_text or embedding is None else None,
                         embedding=embedding, produced_at=time.time())


def publish(kafka_conf: dict[str, str], topic: str, queries: Iterator[QueryEvent], total: int,
            rate: float = 0.0, progress: bool = True, ack_timeout: float = 60.0) -> list[str]:
    """Publish ``queries`` keyed by id at ``rate`` per second (0: as fast as possible); return the ids
    once the broker acknowledged all of them (RuntimeError after ``ack_timeout`` seconds)."""
    from confluent_kafka import Producer
    from rich.progress import Progress

    failed: list[str] = []

    def delivered(error: object, message: object) -> None:
        if error is not None:
            failed.append(f"{message.key()!r}: {error}")  # type: ignore[attr-defined]

    producer = Producer({**kafka_conf, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": int(max(ack_timeout, 1.0) * 1000), "on_delivery": delivered})
    sent: list[str] = []
    start = time.monotonic()
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task(f"producing to {topic}", total=total)
        for i, query in enumerate(queries):
            if rate > 0:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            query = query.model_copy(update={"produced_at": time.time()})
            produce_with_retry(producer, topic, query.id.encode(), query.model_dump_json().encode())
            sent.append(query.id)
            bar.advance(task)
    if producer.flush(ack_timeout) != 0 or failed:
        raise RuntimeError(f"{len(producer) + len(failed)} queries not acknowledged by the broker within "
                           f"{ack_timeout:.0f}s (e.g. {failed[:1]})")
    log.info("produced %d queries to %s in %.1fs", len(sent), topic, time.monotonic() - start)
    return sent


def produce_with_retry(producer: object, topic: str, key: bytes | None, value: bytes) -> None:
    """``producer.produce`` that waits for room when the local queue is full."""
    while True:
        try:
            producer.produce(topic, key=key, value=value)  # type: ignore[attr-defined]
            producer.poll(0)  # type: ignore[attr-defined]
            return
        except BufferError:
            producer.poll(0.1)  # type: ignore[attr-defined]


def publish_raw(kafka_conf: dict[str, str], topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Publish raw (key, value) pairs as they are (tests and operators use it for malformed input)."""
    from confluent_kafka import Producer

    producer = Producer({**kafka_conf, "acks": "all", "message.max.bytes": 8 * 1024 * 1024})
    for key, value in messages:
        produce_with_retry(producer, topic, key, value)
    if producer.flush(60) != 0:
        raise RuntimeError("raw messages not acknowledged by the broker within 60s")
