"""The ACLs of the trust model: who may write and read each topic (docs/SECURITY.md)."""

from __future__ import annotations

from streams.tools.acls import Principals, command, grants
from streams.config import ModelSettings, ServiceConfig

CONFIG = ServiceConfig(models=[ModelSettings(name="a/b", budget=1.0), ModelSettings(name="c", budget=1.0)],
                       history=["unused"])
WHO = Principals()


def allowed(operation: str, topic: str) -> set[str]:
    return {g.principal for g in grants(CONFIG, WHO) if g.operation in (operation, "All") and g.resource == "topic"
            and (topic.startswith(g.name) if g.prefixed else topic == g.name)}


def test_each_topic_has_only_its_writers() -> None:
    assert allowed("Write", "port.queries") == {WHO.producer, WHO.router}  # the router hands queries over
    for topic in ("port.routed.a_b", "port.routed.c", "port.weights", "port.observations", "port.unserved",
                  "port.port-router-decisions-changelog"):
        assert allowed("Write", topic) == {WHO.router}, topic
    workers = {"User:port-worker-a_b", "User:port-worker-c"}
    assert allowed("Write", "port.completions") == workers
    assert allowed("Write", "port.dlq") == workers | {WHO.router}


def test_a_worker_reads_only_its_own_routed_topic() -> None:
    assert allowed("Read", "port.routed.a_b") == {"User:port-worker-a_b"}
    assert allowed("Read", "port.queries") == {WHO.router}
    assert allowed("Read", "port.dlq") == {WHO.operator}


def test_commands_name_the_grant() -> None:
    prefixed = next(g for g in grants(CONFIG, WHO) if g.prefixed)
    text = command(prefixed, "b:9093", "admin.properties")
    assert text.startswith("kafka-acls.sh --bootstrap-server b:9093 --command-config admin.properties --add")
    assert text.endswith("--resource-pattern-type prefixed")
