"""pydantic v2 models of every event on every topic of the stream service.

Every model carries ``schema_version``, forbids unknown fields, rejects NaN and infinite
floats and bounds the size of texts and vectors, so a hostile or broken producer cannot
push the router into unbounded work. Timestamps are Unix seconds (float).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1
MAX_TEXT_CHARS = 32_000
MAX_EMBEDDING_DIM = 4_096
MAX_MODELS = 256
MAX_ID_CHARS = 256
MAX_REASON_CHARS = 2_000
MAX_RAW_CHARS = 64_000
MAX_OBSERVED_ROWS = 10_000  # decisions of one batch in one observation event

QueryId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[\x21-\x7e]+$")]
ModelName = Annotated[str, Field(min_length=1, max_length=200)]
Dollars = Annotated[float, Field(ge=0)]
Timestamp = Annotated[float, Field(ge=0)]
Vector = Annotated[list[float], Field(min_length=1, max_length=MAX_MODELS)]


class Event(BaseModel):
    """Common configuration: strict types, no extra fields, finite floats only."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


class QueryEvent(Event):
    """An LLM query to route (topic ``queries``, key = id): text, a precomputed embedding, or both."""

    id: QueryId
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    embedding: list[float] | None = Field(None, min_length=1, max_length=MAX_EMBEDDING_DIM)
    tenant: str | None = Field(None, max_length=200)
    task: str | None = Field(None, max_length=200)  # a task label; the task-aware estimator's prior uses it
    produced_at: Timestamp | None = None
    handed_over_from: int | None = Field(None, ge=0, description="set by the router: the input partition that handed "
                                         "the query over because its budget share could not pay for the model the "
                                         "query wants (a handed-over query is decided where it lands)")

    @model_validator(mode="after")
    def _text_or_embedding(self) -> "QueryEvent":
        if self.embedding is None and (self.text is None or not self.text.strip()):
            raise ValueError("a query needs a non-empty 'text' or an 'embedding'")
        return self


class ObservedDecision(BaseModel):
    """One decided query's estimates (a row of an ``ObservationEvent``), per model in the configured order."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    id: QueryId
    quality: Vector
    cost: Vector


class ObservationEvent(Event):
    """The decisions of one routed batch on one input partition (topic ``observations``), in decision order,
    and the partition's spend after them; the optimizer learns the weights from the rows and tracks the
    budgets left. Without rows it is an acknowledgement: the partition follows ``weights_version`` from now on."""

    schema_version: Literal[2] = 2  # version 1 was one event per decision (query_id, quality, cost)
    partition: int = Field(ge=0)
    observed_at: Timestamp
    phase: Literal["observation", "learned"] = "observation"
    weights_version: int = Field(0, ge=0, description="the weights version the partition follows (0: none yet)")
    partition_spent: list[Dollars] | None = Field(None, max_length=MAX_MODELS, description="dollars the partition "
                                                  "has spent per model (reserved + settled, in the configured model "
                                                  "order) after these decisions, in their budget period")
    period: int = Field(0, description="the decisions' budget period (0 when budget.period is none)")
    rows: list[ObservedDecision] = Field(default_factory=list, max_length=MAX_OBSERVED_ROWS)

    @property
    def decided(self) -> bool:
        """Whether the event reports decisions (else only an acknowledgement of ``weights_version``)."""
        return bool(self.rows)


class ShareStep(BaseModel):
    """The budget share per model of one partition under one weights version."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    version: int = Field(ge=0)
    share: list[Dollars] = Field(max_length=MAX_MODELS)


class RoutingWeights(Event):
    """The learned dual weights (compacted topic ``weights``); routers apply the newest version."""

    version: int = Field(ge=1)
    models: list[ModelName] = Field(min_length=1, max_length=MAX_MODELS)
    gamma: Vector
    alpha: float = Field(gt=0)
    eps: float = Field(gt=0, lt=1)
    solver: str = Field(max_length=100)
    objective: float
    cost_scale: float = Field(gt=0)
    sample_size: int = Field(ge=1)
    created_at: Timestamp
    decisions_seen: int = Field(0, ge=0, description="decisions of the budget period the solve had seen")
    next_offset: int = Field(0, ge=0, description="the observations offset after the last decision seen")
    partition_spent: list[list[Dollars]] | None = Field(None, max_length=1024, description="per input partition, "
                                                        "the newest spend per model the solve had seen")
    shares: list[list[Dollars]] | None = Field(None, max_length=1024, description="per input partition, the "
                                               "budget share per model routers apply with this version (absent: B/P)")
    share_acks: list[int] | None = Field(None, max_length=1024, description="per input partition, the newest "
                                         "version it acknowledged when this version was published")
    share_steps: list[Annotated[list[ShareStep], Field(max_length=64)]] | None = Field(None, max_length=1024, description="per input partition, "
                                                      "the shares of the versions at or after its acknowledged one")
    period: int = Field(0, description="the budget period the solve belongs to")
    period_expected: int = Field(0, ge=0, description="decisions expected in that period (0: port.n_expected)")
    period_first_at: Timestamp | None = Field(None, description="when the period's first decision seen was made")
    schedule_start: int = Field(0, ge=0, description="decisions of the period after which its re-solve schedule "
                                "counts (the observation phase's, in the deployment's first period)")

    @model_validator(mode="after")
    def _one_gamma_per_model(self) -> "RoutingWeights":
        if len(self.gamma) != len(self.models):
            raise ValueError(f"{len(self.gamma)} gamma values for {len(self.models)} models")
        return self


class RoutedQuery(Event):
    """A routing decision (topic ``routed.<model>``, key = query id) for that model's workers."""

    query: QueryEvent
    model: ModelName
    partition: int = Field(ge=0, description="input partition; completions must go back to it")
    phase: Literal["observation", "learned"]
    estimated_quality: float
    estimated_cost: Dollars
    reserved_cost: Dollars | None = Field(None, description="the dollars held for this query: the most its answer "
                                          "may cost (a worker refuses or caps a dearer answer); None: the estimate")
    score: float | None = None
    weights_version: int | None = None
    routed_at: Timestamp


class Completion(Event):
    """A worker's answer to a routed query (topic ``completions``, same partition as the query)."""

    query_id: QueryId
    model: ModelName
    partition: int = Field(ge=0)
    cost: Dollars
    input_tokens: int | None = Field(None, ge=0)
    output_tokens: int | None = Field(None, ge=0)
    latency_s: float = Field(ge=0)
    quality: float | None = None
    response: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    worker: str = Field(max_length=200)
    completed_at: Timestamp
    refused: str | None = Field(None, max_length=MAX_REASON_CHARS, description="why the worker did not answer "
                                "(cost 0): e.g. the answer would cost more than the reservation")


class UnservedQuery(Event):
    """A query the router did not serve (topic ``unserved``, key = query id), with the reason."""

    query_id: QueryId
    partition: int = Field(ge=0)
    reason: Literal["observation-skip", "declined", "no-budget"]
    detail: str = Field("", max_length=MAX_REASON_CHARS)
    phase: Literal["observation", "learned"]
    weights_version: int | None = None
    decided_at: Timestamp


class DeadLetter(Event):
    """An input the router could not use (topic ``dlq``): where it came from, why, and its bytes."""

    source_topic: str = Field(max_length=300)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = Field(None, max_length=MAX_RAW_CHARS)
    reason: str = Field(max_length=MAX_REASON_CHARS)
    raw: str = Field(max_length=MAX_RAW_CHARS, description="the value, decoded as UTF-8 with replacement, truncated")
    raw_size: int = Field(ge=0, description="size of the original value in bytes")
    failed_at: Timestamp


ALL_EVENTS: tuple[type[Event], ...] = (
    QueryEvent, ObservationEvent, RoutingWeights, RoutedQuery, Completion, UnservedQuery, DeadLetter,
)
