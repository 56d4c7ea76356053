"""The Kafka ACLs of the trust model (docs/SECURITY.md): which principal may read and write which topic.

``port-router acls`` prints one ``kafka-acls.sh --add`` command per grant for the configured topic
names, so an operator can review them and apply them with an admin's client configuration.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from streams import topics as T
from streams.config import ServiceConfig, topic_name


@dataclass(frozen=True)
class Grant:
    """Allow ``principal`` the ``operation`` on a topic or group (``prefixed``: every name starting so)."""

    principal: str
    operation: str
    resource: str  # "topic" | "group"
    name: str
    prefixed: bool = False


@dataclass(frozen=True)
class Principals:
    """Who the clients authenticate as; ``worker`` may contain ``{model}`` (the sanitized model name)."""

    producer: str = "User:query-producer"
    router: str = "User:port-router"
    worker: str = "User:port-worker-{model}"
    operator: str = "User:port-operator"


def grants(config: ServiceConfig, who: Principals) -> list[Grant]:
    """Every grant the service needs, and no other: upstream writes only queries, the router writes its
    outputs, its own state and queries (a query handed over to another input partition), each worker reads only
    its model's routed topic."""
    t = config.topics
    app_id = topic_name(t.prefix + config.router.app_id)
    router_writes = [t.name(T.QUERIES), t.name(T.OBSERVATIONS), t.name(T.WEIGHTS), t.name(T.UNSERVED), t.name(T.DLQ)]
    router_writes += [config.routed_topic(m.name) for m in config.models]
    router_reads = [t.name(T.QUERIES), t.name(T.COMPLETIONS), t.name(T.OBSERVATIONS), t.name(T.WEIGHTS)]
    result = [Grant(who.producer, op, "topic", t.name(T.QUERIES)) for op in ("Write", "Describe")]
    result += [Grant(who.router, op, "topic", name) for name in router_writes for op in ("Write", "Describe")]
    result += [Grant(who.router, "Read", "topic", name) for name in router_reads]
    result += [Grant(who.router, "All", "topic", f"{app_id}-", prefixed=True),  # Faust's changelogs, assignor
               Grant(who.router, "Read", "group", app_id),  # its consumer group
               Grant(who.router, "Describe", "group", t.prefix, prefixed=True),  # the lag monitor
               Grant(who.router, "Describe", "topic", t.prefix, prefixed=True)]
    for model in config.models:
        worker = who.worker.format(model=topic_name(model.name))
        result += [Grant(worker, op, "topic", config.routed_topic(model.name)) for op in ("Read", "Describe")]
        result += [Grant(worker, op, "topic", name) for name in (t.name(T.COMPLETIONS), t.name(T.DLQ))
                   for op in ("Write", "Describe")]
        result += [Grant(worker, "Read", "topic", t.name(T.COMPLETIONS)),  # ids already served, at start
                   Grant(worker, "Read", "group", f"{app_id}-worker-{topic_name(model.name)}")]
    result += [Grant(who.operator, op, "topic", t.name(T.DLQ)) for op in ("Read", "Describe")]
    return result


def command(grant: Grant, bootstrap: str, admin_config: str) -> str:
    """The ``kafka-acls.sh`` command that adds ``grant``."""
    words = ["kafka-acls.sh", "--bootstrap-server", bootstrap, "--command-config", admin_config, "--add",
             "--allow-principal", grant.principal, "--operation", grant.operation, f"--{grant.resource}", grant.name]
    if grant.prefixed:
        words += ["--resource-pattern-type", "prefixed"]
    return shlex.join(words)
