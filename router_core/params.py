"""Typed parameters of the routing core (embedding, index, algorithm).

The service configuration (``streams.config``) embeds these models, so every parameter
of the algorithm is declared once, here.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router_core.periods import BudgetPeriods

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
EmbeddingBackend = Literal["minilm", "static"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingParams(_Params):
    """How prompts become vectors."""

    backend: EmbeddingBackend = Field(
        "static",
        description="'static' (the default): a static embedder distilled from `model` by 'port-router embedder "
        "distill' (numpy lookups, no torch); 'minilm': the sentence-transformers model `model` itself (needs torch, "
        "the extra [minilm])",
    )
    model: str = Field(DEFAULT_EMBEDDING_MODEL,
                       description="name or path of a sentence-transformers model (the teacher of the static backend)")
    static_model: str | None = Field(
        None,
        description="directory of the distilled static model; None: the default one under $PORT_ROUTER_CACHE "
        "(else .cache), which scripts/setup.sh builds",
    )
    batch_size: int = Field(64, ge=1, le=4096)
    overflow: Literal["tail", "head"] = Field(
        "tail",
        description="which end of a prompt to keep when it overflows the model's window: "
        "'tail' keeps the end (the question after a long shared prefix), 'head' truncates as usual",
    )
    strip_shared_prefix: bool = Field(
        True, description="remove a leading block of text that the history prompts share (few-shot templates)"
    )
    cache_dir: str | None = Field(".cache/embeddings", description="on-disk embedding cache; None disables it")
    device: str = "cpu"


class IndexParams(_Params):
    """hnswlib parameters (cosine space)."""

    m: int = Field(32, ge=2, le=256, description="HNSW graph degree (M)")
    ef_construction: int = Field(200, ge=8, le=4096)
    ef: int = Field(50, ge=1, le=4096, description="search breadth; raised to k when smaller")
    threads: int = Field(1, ge=1, le=64)


class PortParams(_Params):
    """The PORT algorithm and the product's improvements, each a switch."""

    eps: float = Field(0.025, gt=0, lt=1, description="observation fraction of the expected stream")
    alpha: float = Field(1e-4, gt=0, description="quality/cost trade-off; unitless when costs are normalized")
    estimator: Literal["knn-mean", "kernel-shrink", "kernel-shrink-task"] = Field(
        "kernel-shrink",
        description="how neighbours become estimates (router_core.estimators): 'knn-mean' the paper's mean of k; "
        "'kernel-shrink' a similarity kernel shrunk toward the global mean, tuned by leave-one-out when the "
        "index is built; 'kernel-shrink-task' the same shrunk toward the query's task mean when it has a known label",
    )
    k: int = Field(5, ge=1, le=200, description="neighbours per estimate of 'knn-mean'")
    n_expected: int = Field(10_000, ge=1, description="expected stream length N")
    dual_solver: Literal["lp", "lbfgsb"] = "lp"
    skip_option: bool = Field(True, description="decline a query when no model's score is positive")
    budget_aware: bool = Field(True, description="pick the best model whose remaining budget covers the estimate")
    normalize_costs: bool = Field(True, description="divide costs by the history's mean cost (alpha becomes unitless)")
    resolve_every: int = Field(20, ge=0, description="re-solve the dual every this many queries on what was seen (0: never)")
    resolve_sample: Literal["window", "reservoir", "all"] = Field(
        "window", description="what a re-solve learns from: 'window' the last resolve_window decisions, 'reservoir' "
        "a uniform sample of resolve_window decisions seen, 'all' every decision seen (unbounded: offline only)")
    resolve_window: int = Field(1000, ge=1, le=1_000_000, description="size of the re-solve's sample")
    observation: Literal["random", "history-prior"] = Field(
        "history-prior", description="'random' as the paper; 'history-prior' routes the phase with a dual solved on the history"
    )


class BudgetParams(_Params):
    """Budget accounting, the same in the offline evaluator's reserve mode and in the service."""

    reserve_factor: float = Field(
        1.25, ge=1, le=100,
        description="routing holds this x the estimated cost (the reservation) and a worker never spends more than "
        "the reservation: it refuses (replay) or caps its output tokens (API); 1 reserves the estimate alone",
    )
    period: float | None = Field(
        None,
        description="length of a budget period: 'none' (the default: one period for the whole deployment), seconds, "
        "or a duration such as '90s', '15m', '1h', '1d'; the models' budgets are then per period",
    )
    period_origin: float = Field(0.0, ge=0, description="Unix time at which the period grid starts (default the "
                                 "epoch): period k is [origin + k*period, origin + (k+1)*period)")
    period_queries: int | None = Field(None, ge=1, description="decisions expected per period; None: forecast from "
                                       "the closed period's arrival rate (the first period uses port.n_expected)")
    periods_kept: int = Field(24, ge=1, le=10_000, description="closed periods whose budget state is kept for the "
                              "report, per partition")

    @field_validator("period", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"none", ""}):
            return None
        if isinstance(value, str):
            match = _DURATION.match(value.lower())
            if not match:
                raise ValueError(f"not a duration: {value!r} (e.g. 'none', 3600, '90s', '15m', '1h', '1d')")
            value = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"a period must be a positive number of seconds, not {value!r}")
        return float(value)

    def grid(self) -> BudgetPeriods:
        """The period grid these parameters define."""
        return BudgetPeriods(self.period, self.period_origin)
