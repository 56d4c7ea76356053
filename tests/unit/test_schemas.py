"""The event schemas: strict types, size limits, finite floats, JSON Schema export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import (
    ALL_EVENTS,
    MAX_EMBEDDING_DIM,
    MAX_TEXT_CHARS,
    Completion,
    QueryEvent,
    RoutedQuery,
    RoutingWeights,
    export_json_schemas,
)


def test_query_with_text_or_embedding_is_valid() -> None:
    assert QueryEvent.model_validate_json('{"id": "q1", "text": "hello"}').text == "hello"
    assert QueryEvent.model_validate_json('{"id": "q1", "embedding": [1, 0.5]}').embedding == [1.0, 0.5]


@pytest.mark.parametrize("raw, field", [
    ('{"id": "q1"}', "text"),  # neither text nor embedding
    ('{"id": "q1", "text": "   "}', "text"),
    ('{"id": "q1", "text": 5}', "text"),
    ('{"text": "hi"}', "id"),
    ('{"id": "q1", "text": "hi", "extra": 1}', "extra"),
    ('{"id": "q1", "embedding": [NaN]}', "embedding"),
    ('{"id": "q1", "embedding": [Infinity]}', "embedding"),
    ('{"id": "q1", "embedding": []}', "embedding"),
    ('{"id": "has space", "text": "hi"}', "id"),
    ('{"id": "q1", "text": "hi", "schema_version": 2}', "schema_version"),
])
def test_invalid_queries_are_rejected_naming_the_field(raw: str, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        QueryEvent.model_validate_json(raw)
    assert field in str(error.value)


def test_size_limits() -> None:
    with pytest.raises(ValidationError):
        QueryEvent(id="q", text="x" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(ValidationError):
        QueryEvent(id="q", embedding=[0.1] * (MAX_EMBEDDING_DIM + 1))


def test_weights_need_one_gamma_per_model() -> None:
    base = dict(version=1, models=["a", "b"], alpha=1e-4, eps=0.025, solver="lp", objective=1.0, cost_scale=1.0,
                sample_size=5, created_at=1.0)
    assert RoutingWeights(gamma=[0.1, 0.2], **base).gamma == [0.1, 0.2]
    with pytest.raises(ValidationError):
        RoutingWeights(gamma=[0.1], **base)


def test_round_trip_of_nested_events() -> None:
    routed = RoutedQuery(query=QueryEvent(id="q", text="hi"), model="m", partition=1, phase="learned",
                         estimated_quality=0.5, estimated_cost=0.001, score=0.2, weights_version=1, routed_at=2.0)
    assert RoutedQuery.model_validate_json(routed.model_dump_json()) == routed
    with pytest.raises(ValidationError):
        Completion(query_id="q", model="m", partition=0, cost=-1.0, latency_s=0.1, worker="w", completed_at=1.0)


def test_export_writes_one_schema_per_event(tmp_path: Path) -> None:
    paths = export_json_schemas(tmp_path)
    assert len(paths) == len(ALL_EVENTS)
    schema = json.loads((tmp_path / "QueryEvent.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert "schema_version" in schema["properties"]
