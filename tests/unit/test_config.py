"""The service configuration: example file, environment overrides, errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from router_core.params import PortParams
from streams.config import ConfigError, load_config, topic_name
from streams.topics import topic_specs

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "config.yaml"


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_config_loads_with_eleven_models() -> None:
    config = load_config(EXAMPLE, {})
    assert len(config.models) == 11
    assert isinstance(config.port, PortParams)
    assert config.routed_topic("meta/llama-2-70b-chat") == "port.routed.meta_llama-2-70b-chat"


def test_environment_overrides_are_typed() -> None:
    config = load_config(EXAMPLE, {"PORT_ROUTER__KAFKA__BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
                                   "PORT_ROUTER__TOPICS__QUERY_PARTITIONS": "8",
                                   "PORT_ROUTER__PORT__EPS": "0.05", "OTHER": "x"})
    assert config.topics.query_partitions == 8
    assert config.port.eps == 0.05
    assert config.kafka.faust_broker() == "kafka://b1:9093;kafka://b2:9093"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["topics"].update(query_partitions=0), "topics.query_partitions"),
    (lambda d: d["port"].update(eps=2), "port.eps"),
    (lambda d: d["models"][0].update(budget=-1), "models.0.budget"),
    (lambda d: d["models"][0].update(colour="red"), "models.0.colour"),
    (lambda d: d["kafka"].update(security_protocol="SASL_SSL"), "sasl_mechanism"),
    (lambda d: d["models"].append(dict(d["models"][0])), "unique"),
    (lambda d: d.pop("history"), "history"),
])
def test_invalid_files_name_the_field(tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    data = example()
    change(data)
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, data), {})
    assert message in str(error.value)


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", {})
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml", {})


def test_security_settings_reach_confluent_kafka() -> None:
    config = load_config(EXAMPLE, {"PORT_ROUTER__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                                   "PORT_ROUTER__KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                                   "PORT_ROUTER__KAFKA__SASL_USERNAME": "u", "PORT_ROUTER__KAFKA__SASL_PASSWORD": "p"})
    conf = config.kafka.confluent()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"


def test_topic_names_are_sanitized_and_weights_compacted() -> None:
    assert topic_name("meta/llama 2:70b") == "meta_llama_2_70b"
    specs = {s.name: s for s in topic_specs(load_config(EXAMPLE, {}))}
    assert specs["port.weights"].configs == {"cleanup.policy": "compact"}
    assert specs["port.completions"].partitions == specs["port.queries"].partitions
    assert sum(name.startswith("port.routed.") for name in specs) == 11
