"""Fuzz the queries topic of the real router on the real broker with hypothesis-generated messages.

A bounded budget (``FUZZ_EXAMPLES``, default 200 messages) of valid and broken queries, arbitrary JSON,
raw bytes, tombstones and keys that are not the id. Every message must end in exactly one of routed,
unserved or dlq, and the router must keep running. Each message gets a unique id prefix
(``<run>-<n>.``), so its outcome is attributed exactly: a decision by id, a dead letter by offset.

Run: scripts/kafka.sh start && .venv/bin/python -m pytest tests/integration/test_stream_fuzz.py -v
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.topics import QUERIES

import stream_harness as h
from kafka_io import Sender, dead_letters, tally_now, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
ID = "\x00ID\x00"  # replaced by the message's unique id when it is sent


@dataclass(frozen=True)
class Fuzzed:
    """A generated message: how to key it, and its value (a JSON-able object, raw bytes or None)."""

    key_mode: str  # "id", "none", "other"
    value: Any
    id_suffix: str = ""


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@st.composite
def embeddings(draw: st.DrawFn) -> list[float]:
    """Vectors of the right or a wrong size, of any scale down to subnormal and up to float64's limit."""
    size = draw(st.sampled_from([h.DIMENSION] * 6 + [1, h.DIMENSION - 1, h.DIMENSION + 1]))
    scale = draw(st.sampled_from([1.0] * 6 + [0.0, 1e-300, 1e-40, 1e-7, 1e30, 3e38, 1e300]) | st.floats(0, 1e6))
    vector = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=size) * scale
    return vector.tolist()


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    """QueryEvent-shaped objects: half of them well formed (text or embedding), the others with fields
    missing, of a wrong type, extra, or of any value."""
    query: dict[str, Any] = {"id": ID}
    if draw(st.booleans()):  # well formed
        if draw(st.booleans()):
            query["text"] = draw(st.text(min_size=1, max_size=200).filter(str.strip))
        else:
            query["embedding"] = draw(embeddings())
        return query
    if draw(st.booleans()):
        query["text"] = draw(st.text(max_size=200) | st.none())
    if draw(st.booleans()) or "text" not in query:
        query["embedding"] = draw(embeddings() | st.none())
    if draw(st.integers(0, 3)) == 0:
        query["tenant"] = draw(st.text(max_size=30))
    if draw(st.integers(0, 3)) == 0:
        query["produced_at"] = draw(st.floats())
    if draw(st.integers(0, 3)) == 0:
        query[draw(st.sampled_from(["id", "text", "embedding", "schema_version", "extra"]))] = draw(JSON_VALUES)
    return query


QUERY_MESSAGES = st.builds(Fuzzed, key_mode=st.sampled_from(["id"] * 6 + ["none", "other"]), value=queries(),
                           id_suffix=st.sampled_from([""] * 8 + ["-ok", " space", "\u00e9", "\n", "x" * 300]))
MESSAGES = st.one_of(
    QUERY_MESSAGES, QUERY_MESSAGES, QUERY_MESSAGES,
    st.builds(Fuzzed, key_mode=st.sampled_from(["id", "none"]), value=JSON_VALUES),
    st.builds(Fuzzed, key_mode=st.sampled_from(["id", "none"]), value=st.binary(max_size=300)),
    st.builds(Fuzzed, key_mode=st.just("id"), value=st.none()),
)


def encode(message: Fuzzed, query_id: str) -> tuple[bytes | None, bytes | None]:
    """(key, value) of ``message`` with ``query_id`` in place of the id placeholder."""
    value = message.value
    if isinstance(value, dict):
        value = json.dumps({k: (query_id if v == ID else v) for k, v in value.items()}).encode()  # NaN/Infinity kept
    elif value is not None and not isinstance(value, bytes):
        value = json.dumps(value).encode()
    key = {"id": query_id.encode(), "none": None, "other": b"other-" + query_id.encode()}[message.key_mode]
    return key, value


def test_every_fuzzed_query_ends_in_exactly_one_place_and_the_router_keeps_running(tmp_path: Path) -> None:
    h.require_environment()
    _, config, router = h.start_router(tmp_path)
    run = f"fz{uuid.uuid4().hex[:6]}"
    topic = config.topics.name(QUERIES)
    sender = Sender(config)
    sent: dict[tuple[int, int], str] = {}  # (partition, offset) -> id the message carries (if it has one)

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(message=MESSAGES)
    def produce_one(message: Fuzzed) -> None:
        query_id = f"{run}-{len(sent)}.{message.id_suffix}"
        sent[sender(topic, *encode(message, query_id))] = query_id

    try:
        produce_one()
        assert len(sent) >= min(FUZZ_EXAMPLES, 50), f"hypothesis generated only {len(sent)} messages"

        def all_ended() -> tuple[Any, dict] | None:
            tally = tally_now(config)
            letters = dead_letters(config, topic)
            done = all(where in letters or query_id in tally.placements for where, query_id in sent.items())
            return (tally, letters) if done else None

        tally, letters = wait_for(all_ended, 300, f"all {len(sent)} fuzzed messages to end somewhere")
        ours = {qid for qid in tally.placements if qid.startswith(run)}
        assert ours <= set(sent.values()), f"decisions for ids never sent: {sorted(ours - set(sent.values()))[:5]}"
        for where, query_id in sent.items():
            places = [f"dlq: {letters[where]['reason']}"] if where in letters else []
            places += sorted(tally.placements.get(query_id, ()))
            assert len(places) == 1, f"message at {where} (id {query_id!r}) ended in {places}"
        assert router.process is not None and router.process.poll() is None, "the router stopped"
        with urllib.request.urlopen(f"http://127.0.0.1:{router.web_port}/health", timeout=10) as response:
            assert response.status == 200
        print(f"{len(sent)} fuzzed messages: {len(sent) - len(letters)} decided, {len(letters)} dead-lettered")
    finally:
        router.stop()
