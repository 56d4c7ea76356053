"""Event schemas of the stream service (pydantic v2) and their JSON Schema export."""

from schemas.events import (
    ALL_EVENTS,
    MAX_EMBEDDING_DIM,
    MAX_TEXT_CHARS,
    SCHEMA_VERSION,
    Completion,
    DeadLetter,
    Event,
    ObservationEvent,
    ObservedDecision,
    QueryEvent,
    RoutedQuery,
    RoutingWeights,
    UnservedQuery,
)
from schemas.export import export_json_schemas

__all__ = [
    "ALL_EVENTS", "MAX_EMBEDDING_DIM", "MAX_TEXT_CHARS", "SCHEMA_VERSION", "Completion", "DeadLetter", "Event",
    "ObservationEvent", "ObservedDecision", "QueryEvent", "RoutedQuery", "RoutingWeights", "UnservedQuery", "export_json_schemas",
]
