"""The one typed configuration of the stream service: a YAML file plus environment overrides.

Environment variables named ``PORT_ROUTER__<SECTION>__<FIELD>`` (double underscores between
levels, case-insensitive) override the file; their values are parsed as YAML scalars, so
``PORT_ROUTER__TOPICS__QUERY_PARTITIONS=8`` is an int. Algorithm parameters are the
``router_core.params`` models, embedded, not redeclared.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router_core.params import BudgetParams, EmbeddingParams, IndexParams, PortParams

ENV_PREFIX = "PORT_ROUTER__"
_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]")


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names field and problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """Where the brokers are and how to authenticate; passed to Faust/aiokafka and confluent-kafka."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> "KafkaSettings":
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError("SASL needs sasl_mechanism, sasl_username and sasl_password")
        return self

    def confluent(self) -> dict[str, str]:
        """Settings for confluent-kafka clients (librdkafka names)."""
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password, "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile, "ssl.key.location": self.ssl_keyfile,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf

    def faust_broker(self) -> str:
        """The broker URL list in Faust's form (``kafka://host:port;kafka://...``)."""
        return ";".join(f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(","))

    def faust_credentials(self) -> Any:
        """Faust credentials for SASL/SSL, or None for PLAINTEXT (imports faust lazily)."""
        if self.security_protocol == "PLAINTEXT":
            return None
        import ssl

        import faust

        context = None
        if self.security_protocol.endswith("SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(context)
        return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                     mechanism=self.sasl_mechanism, ssl_context=context)


def topic_name(text: str) -> str:
    """A valid Kafka topic name for ``text`` (``meta/llama-2-70b-chat`` -> ``meta_llama-2-70b-chat``)."""
    name = _TOPIC_CHARS.sub("_", text)
    if name in {".", ".."}:
        name = name.replace(".", "_")
    return name[:200]


class TopicSettings(_Section):
    """Topic names (a prefix plus fixed suffixes) and partition counts."""

    prefix: str = Field("port.", max_length=100)
    query_partitions: int = Field(4, ge=1, le=1024, description="also the partitions of completions")
    routed_partitions: int = Field(2, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=10)

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if _TOPIC_CHARS.search(value):
            raise ValueError("only letters, digits, '.', '_' and '-' are allowed in topic names")
        return value

    def name(self, suffix: str) -> str:
        """The full name of topic ``suffix`` (queries, observations, weights, completions, ...)."""
        return f"{self.prefix}{suffix}"


class ModelSettings(_Section):
    """One LLM: its name as in the history, its routed topic, budget and prices."""

    name: str = Field(min_length=1, max_length=200)
    topic: str | None = Field(None, description="routed topic suffix; default routed.<sanitized name>")
    budget: float = Field(ge=0, description="dollars for the serving period, all partitions together")
    price_input_per_token: float = Field(0.0, ge=0, description="dollars per input token (openai backend)")
    price_output_per_token: float = Field(0.0, ge=0, description="dollars per output token (openai backend)")
    api_model: str | None = Field(None, description="model name sent to the OpenAI-compatible endpoint")

    @field_validator("budget", "price_input_per_token", "price_output_per_token")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def topic_suffix(self) -> str:
        """Suffix of this model's routed topic."""
        return topic_name(self.topic or f"routed.{self.name}")


class RouterSettings(_Section):
    """How the router process runs."""

    app_id: str = Field("port-router", pattern=r"^[a-zA-Z0-9._-]+$")
    batch_size: int = Field(64, ge=1, le=4096, description="micro-batch size for embedding and estimation")
    batch_window_s: float = Field(0.05, gt=0, le=10, description="max wait to fill a micro-batch")
    batches_in_flight: int = Field(2, ge=1, le=16, description="decided micro-batches whose changelog flush, "
                                   "sends and progress are awaited at once (1: one batch at a time)")
    prepare_in_process: bool = Field(True, description="validate, embed and estimate micro-batches in a worker "
                                     "process with its own copy of the engine (off the routing loop's GIL); false: "
                                     "in a thread of the router's process")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    data_dir: str = Field(".cache/faust", description="Faust's local data directory (per app and port)")
    seed: int = Field(0, description="seed of the observation phase's random choices")
    session_timeout_s: float = Field(10.0, ge=3, le=300, description="consumer-group session timeout: how "
                                     "soon the partitions of a crashed router move to the others")
    stall_timeout_s: float = Field(60.0, ge=5, le=3600, description="a held queries partition with lag whose "
                                   "position does not move for this long is re-read; after twice as long /health "
                                   "fails")
    weights_wait_s: float = Field(30.0, ge=0, le=3600, description="after observing ceil(eps*N) queries, how long "
                                  "to pause routing for the learned weights before observing on")
    completion_cost_factor: float = Field(10.0, ge=1, le=1e6, description="a completion may claim at most "
                                          "max(this x the decision's reserved estimate, completion_cost_cap) dollars; "
                                          "a dearer one goes to the dlq and the reservation stays held")
    completion_cost_cap: float = Field(0.0, ge=0, le=1e6, description="dollars a completion may always claim, "
                                       "whatever its estimate (set it to the most one answer can cost)")
    dedup_window_s: float = Field(3600.0, ge=60, le=30 * 86_400, description="decision records are kept this "
                                  "long (a query delivered again within it gets its decision re-emitted; a "
                                  "completion within it settles its reservation), then deleted by a tombstone; "
                                  "cover a crash's redelivery and the slowest worker's completion")


class ServiceConfig(_Section):
    """Everything the stream service needs."""

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    models: list[ModelSettings] = Field(min_length=1)
    port: PortParams = PortParams()
    embedding: EmbeddingParams = EmbeddingParams()
    index: IndexParams = IndexParams()
    budget: BudgetParams = BudgetParams()
    history: list[str] = Field(min_length=1, description="RouterBench-schema files or directories")
    history_rows: str | None = Field(
        None, description="which rows of the history the index uses: 'split:<seed>:<stream_size>' keeps all but "
        "the offline benchmark's random test stream of that size (the rest is what 'produce' streams), "
        "'drift:<seed>:<stream_size>' the benchmark's drift split, None keeps all")
    index_dir: str | None = ".cache/index"
    router: RouterSettings = RouterSettings()

    @model_validator(mode="after")
    def _unique_models(self) -> "ServiceConfig":
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        topics = [m.topic_suffix() for m in self.models]
        if len(set(topics)) != len(topics):
            raise ValueError(f"two models map to the same routed topic: {topics}")
        return self

    def model(self, name: str) -> ModelSettings:
        """The settings of model ``name`` (KeyError naming the known models)."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(f"unknown model {name!r}; configured: {[m.name for m in self.models]}")

    def routed_topic(self, name: str) -> str:
        """Full routed topic name of model ``name``."""
        return self.topics.name(self.model(name).topic_suffix())


def _apply_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, raw in environ.items():
        if not key.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX):].split("__") if part]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: not a valid YAML value ({exc})") from exc


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Load the YAML file at ``path``, apply ``PORT_ROUTER__...`` overrides, validate.

    Relative paths inside the file (history, index_dir, data dirs) are kept as written;
    they are resolved against the working directory by the commands that use them.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(data).__name__}")
    _apply_overrides(data, os.environ if environ is None else environ)
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
