"""Validation, embedding and estimation of a polled batch: no routing state, so it can run in a worker
thread or in a worker process (``streams.service.prepare_process``) while the routing loop decides.

A record is unusable (dead letter, with its reason) when it has no value, is too large, is not a valid
query, carries an embedding without a usable direction or of the wrong dimension, or is not keyed by
its query id.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pydantic import ValidationError

from router_core.estimator import Estimates
from schemas import DeadLetter, QueryEvent
from schemas.events import MAX_RAW_CHARS
from streams.service.contracts import Engine
from streams.service.messages import Outgoing, Record

log = logging.getLogger(__name__)

MAX_QUERY_BYTES = 512 * 1024
MIN_EMBEDDING_NORM = 1e-6  # below this (after the float32 cast) a vector has no usable direction


@dataclass
class Prepared:
    """A validated batch: queries with their estimates, and the dead letters."""

    records: list[Record] = field(default_factory=list)
    queries: list[QueryEvent] = field(default_factory=list)
    estimates: Estimates | None = None
    dead: list[Outgoing] = field(default_factory=list)
    dead_reasons: list[str] = field(default_factory=list)
    dead_records: list[Record] = field(default_factory=list)  # the records of ``dead``
    embed_seconds: float | None = None  # time spent embedding texts (None: all carried embeddings)

    def only(self, records: Sequence[Record]) -> Prepared:
        """This batch cut to ``records`` (some of those it was prepared from), in their order: what preparing
        just them gives, without validating, embedding and estimating them again."""
        rows = {(r.partition, r.offset): i for i, r in enumerate(self.records)}
        dead = {(r.partition, r.offset): i for i, r in enumerate(self.dead_records)}
        keys = [(r.partition, r.offset) for r in records]
        kept = [rows[k] for k in keys if k in rows]
        gone = [dead[k] for k in keys if k in dead]
        return Prepared(records=[self.records[i] for i in kept], queries=[self.queries[i] for i in kept],
                        estimates=self.estimates.take(kept) if kept and self.estimates is not None else None,
                        dead=[self.dead[i] for i in gone], dead_reasons=[self.dead_reasons[i] for i in gone],
                        dead_records=[self.dead_records[i] for i in gone], embed_seconds=self.embed_seconds)


def dead_letter(topic: str, record: Record, reason: str) -> Outgoing:
    """A DLQ message for ``record`` that failed for ``reason``."""
    raw = record.value or b""
    letter = DeadLetter(
        source_topic=record.topic, partition=record.partition, offset=record.offset,
        key=None if record.key is None else record.key.decode("utf-8", "replace")[:MAX_RAW_CHARS],
        reason=reason[:2000], raw=raw[:MAX_RAW_CHARS].decode("utf-8", "replace")[:MAX_RAW_CHARS],
        raw_size=len(raw), failed_at=time.time(),
    )
    return Outgoing(topic, None, letter.model_dump_json().encode())


def unit_embedding(values: Sequence[float]) -> np.ndarray | str:
    """``values`` as a float32 unit vector, or the reason it has none: values beyond the float32 range,
    or a norm too small (all zeros, or underflowing to zero in float32)."""
    exact = np.asarray(values, dtype=np.float64)
    if not np.all(np.abs(exact) <= np.finfo(np.float32).max):
        return "embedding has values beyond the float32 range (not finite after the float32 cast)"
    vector = exact.astype(np.float32).astype(np.float64)  # what the index sees, normalized without overflow
    norm = float(np.linalg.norm(vector))
    if not norm >= MIN_EMBEDDING_NORM:
        return f"embedding is all zeros or its norm after the float32 cast ({norm:.3g}) is below {MIN_EMBEDDING_NORM}"
    return (vector / norm).astype(np.float32)


def key_reason(record: Record, query: QueryEvent) -> str | None:
    """Why ``record``'s Kafka key disqualifies ``query`` (queries are keyed by id: the partition, and with it
    the one-decision-per-id guarantee, follows the key), or None when the key is the id."""
    if record.key is None:
        return f"message has no key; queries must be keyed by their id ({query.id!r})"
    if record.key != query.id.encode():
        key = record.key.decode("utf-8", "replace")[:100]
        return f"message key {key!r} is not the query id {query.id!r}; queries must be keyed by their id"
    return None


def validation_reason(error: ValidationError) -> str:
    """A short reason naming the fields that failed."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()[:5]]
    return "invalid " + "; ".join(parts)


class Preparer:
    """Prepares batches of query records with an engine's embedder and estimator; dead letters go to
    ``dlq_topic``."""

    def __init__(self, engine: Engine, dlq_topic: str) -> None:
        self.engine = engine
        self.dlq_topic = dlq_topic
        self.preparing = threading.Lock()  # one prepare at a time (see ``prepare``)

    def parse(self, record: Record) -> tuple[QueryEvent, np.ndarray | None] | str:
        """The query in ``record`` with its carried embedding as a unit vector (None: it carries none), or the
        reason it is unusable."""
        if record.value is None:
            return "empty message (no value)"
        if len(record.value) > MAX_QUERY_BYTES:
            return f"message of {len(record.value)} bytes exceeds the {MAX_QUERY_BYTES}-byte limit"
        try:
            query = QueryEvent.model_validate_json(record.value)
        except ValidationError as exc:
            return validation_reason(exc)
        unit = None
        if query.embedding is not None:
            if len(query.embedding) != self.engine.dimension:
                return f"embedding has {len(query.embedding)} dimensions, the index has {self.engine.dimension}"
            unit = unit_embedding(query.embedding)
            if isinstance(unit, str):
                return unit
        return key_reason(record, query) or (query, unit)

    def prepare(self, records: Sequence[Record]) -> Prepared:
        """Validate every record, embed the texts without embeddings, estimate the batch. Callable from any
        thread; calls run one at a time (the embedder's tokenizer is not known to be thread-safe)."""
        with self.preparing:
            out = Prepared()
            units: list[np.ndarray | None] = []  # the carried embeddings of ``out.queries``, normalized once
            for record in records:
                parsed = self.parse(record)
                if isinstance(parsed, str):
                    log.warning("dlq: %s[%d]@%d: %s", record.topic, record.partition, record.offset, parsed)
                    out.dead.append(dead_letter(self.dlq_topic, record, parsed))
                    out.dead_reasons.append(parsed)
                    out.dead_records.append(record)
                else:
                    out.records.append(record)
                    out.queries.append(parsed[0])
                    units.append(parsed[1])
            if out.queries:
                vectors, out.embed_seconds = self.embeddings(out.queries, units)
                texts, tasks = [q.text for q in out.queries], [q.task for q in out.queries]
                out.estimates = self.engine.estimate(vectors, texts, tasks)
            return out

    def embeddings(self, queries: Sequence[QueryEvent], units: Sequence[np.ndarray | None]
                   ) -> tuple[np.ndarray, float | None]:
        """(B, d) unit vectors: ``units`` where given (the queries' carried embeddings, normalized by ``parse``),
        the other queries embedded in one batch; and the seconds the embedding took (None when nothing needed
        embedding)."""
        vectors = np.zeros((len(queries), self.engine.dimension), dtype=np.float32)
        to_embed = [i for i, unit in enumerate(units) if unit is None]
        for i, unit in enumerate(units):
            if unit is not None:
                vectors[i] = unit
        if not to_embed:
            return vectors, None
        started = time.perf_counter()
        vectors[to_embed] = self.engine.embed([queries[i].text or "" for i in to_embed])
        return vectors, time.perf_counter() - started
