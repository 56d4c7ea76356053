"""A hostile producer against the real service on the real broker (issue 12): forged keys, degenerate
embeddings, forged completions and weights, bad routed messages, the web pages, restart state, an
unreachable broker.

Run: scripts/kafka.sh start && .venv/bin/python -m pytest tests/integration/test_stream_hostile.py -v
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import yaml

from schemas import Completion, QueryEvent, RoutedQuery, RoutingWeights
from streams.service.app import app_id
from streams.config import ServiceConfig, load_config, topic_name
from streams.tools import processes
from streams.tools.processes import ServiceProcess
from streams.topics import COMPLETIONS, OBSERVATIONS, QUERIES, WEIGHTS
from streams.service.weights import WEIGHTS_KEY

import stream_harness as h
from kafka_io import dead_letters, read_all, send, tally_now, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceConfig, ServiceProcess]]:
    """One router on a fresh topic prefix, shared by the tests that only add their own query ids."""
    h.require_environment()
    _, config, router = h.start_router(tmp_path_factory.mktemp("hostile"))
    try:
        yield config, router
    finally:
        router.stop()


def unit_vector(seed: int) -> list[float]:
    """A random unit vector of the index's dimension."""
    vector = np.random.default_rng(seed).normal(size=h.DIMENSION)
    return (vector / np.linalg.norm(vector)).tolist()


def query_bytes(query_id: str, embedding: list[float] | None = None) -> bytes:
    """A schema-valid QueryEvent's JSON."""
    return QueryEvent(id=query_id, embedding=embedding or unit_vector(len(query_id))).model_dump_json().encode()


def settled(config: ServiceConfig, sent: dict[tuple[int, int], str]) -> tuple[Any, dict] | None:
    """(tally, DLQ letters) once every sent query message is either dead-lettered or its id decided."""
    tally = tally_now(config)
    letters = dead_letters(config, config.topics.name(QUERIES))
    done = all(where in letters or query_id in tally.placements for where, query_id in sent.items())
    return (tally, letters) if done else None


def test_a_query_whose_key_is_not_its_id_goes_to_the_dlq(service: tuple[ServiceConfig, ServiceProcess]) -> None:
    config, _ = service
    topic = config.topics.name(QUERIES)
    value = query_bytes("twopart:1")
    sent = {send(config, topic, b"samekey:1", value, partition=0): "twopart:1",
            send(config, topic, b"xxother", value, partition=1): "twopart:1",
            send(config, topic, b"keyed:ok", query_bytes("keyed:ok")): "keyed:ok"}
    tally, letters = wait_for(lambda: settled(config, sent), 180, "the three messages to be decided")
    assert "twopart:1" not in tally.placements, "a query whose key is not its id was decided"
    forged = [letters[where] for where, query_id in sent.items() if query_id == "twopart:1"]
    assert len(forged) == 2 and all("key" in d["reason"] and "id" in d["reason"] for d in forged), forged
    assert len(tally.placements["keyed:ok"]) == 1


def test_degenerate_embeddings_go_to_the_dlq(service: tuple[ServiceConfig, ServiceProcess]) -> None:
    config, _ = service
    topic = config.topics.name(QUERIES)
    cases = {"deg:huge": [1e300] * h.DIMENSION, "deg:tiny": [1e-300] * h.DIMENSION,
             "deg:subnormal": [1e-40] * h.DIMENSION, "deg:ok": unit_vector(7)}
    sent = {send(config, topic, qid.encode(), query_bytes(qid, vector)): qid for qid, vector in cases.items()}
    tally, letters = wait_for(lambda: settled(config, sent), 180, "the four messages to be decided")
    for where, query_id in sent.items():
        if query_id == "deg:ok":
            assert len(tally.placements[query_id]) == 1 and where not in letters
        else:
            assert query_id not in tally.placements, f"{query_id} was decided on a degenerate embedding"
            assert "float32" in letters[where]["reason"], letters[where]["reason"]


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 defines it: NaN and Infinity are not numbers."""
    def reject(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=reject)


def raw_state(router: ServiceProcess) -> str:
    """The /state page's body, unparsed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{router.web_port}/state", timeout=10) as response:
        return response.read().decode()


def test_forged_completions_are_not_trusted(service: tuple[ServiceConfig, ServiceProcess]) -> None:
    config, router = service
    ids = h.produce(config, h.random_queries(30, "forge", seed=11))

    def decided() -> Any:
        tally = tally_now(config)
        return tally if all(i in tally.placements for i in ids) else None

    tally = wait_for(decided, 180, "the forge-* queries to be decided")
    routed = list(h.first_decisions(tally).values())
    targets = [m for m in routed if m["query"]["id"].startswith("forge-")][:2]
    assert len(targets) == 2, "need two routed queries to forge completions for"
    topic = config.topics.name(COMPLETIONS)
    forged = []
    for target, costs in zip(targets, ([1e6], [1e308, 1e308])):
        for cost in costs:
            completion = Completion(query_id=target["query"]["id"], model=target["model"],
                                    partition=target["partition"], cost=cost, latency_s=0.1, worker="forger",
                                    completed_at=time.time())
            forged.append(send(config, topic, target["query"]["id"].encode(), completion.model_dump_json().encode(),
                               partition=target["partition"]))

    def outcome() -> tuple[dict, dict] | None:
        state = strict_json(raw_state(router))
        letters = dead_letters(config, topic)
        over = any(b["spent"] > b["limit"] for b in state["budgets"].values())
        return (state, letters) if over or all(where in letters for where in forged) else None

    state, letters = wait_for(outcome, 120, "the forged completions to be handled")
    for model, budget in state["budgets"].items():
        assert budget["spent"] <= budget["limit"], f"{model}: a forged completion was charged: {budget}"
    assert all("plausible" in letters[where]["reason"] for where in forged), letters


def test_only_the_documented_pages_are_served(service: tuple[ServiceConfig, ServiceProcess]) -> None:
    config, router = service
    h.produce(config, h.random_queries(3, "pages", seed=12))
    base = f"http://127.0.0.1:{router.web_port}"
    for page in ("/health", "/ready", "/state", "/metrics"):
        with urllib.request.urlopen(base + page, timeout=10) as response:
            assert response.status == 200, page
    for page in ("/", "/table/", "/table/decisions/", "/table/decisions/0%2Fpages-0/", "/router/", "/graph/",
                 "/stats/", "/assignment/", "/performance/"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(base + page, timeout=10)
        assert error.value.code == 404, f"{page} answered {error.value.code}"


def test_state_reports_the_spend_right_after_a_restart(tmp_path: Path) -> None:
    h.require_environment()
    path, config, router = h.start_router(tmp_path)
    try:
        ids = h.routed_wave(config, 40, "restart", seed=13)
        reserved = h.assert_budgets(config, h.outcomes(config, len(ids)))
        assert sum(reserved.values()) > 0
        router.stop()
        router = h.router_process(path, tmp_path / "router2.log", "restarted router").start()
        router.wait_ready()

        def matches() -> dict | None:
            state = router.state()
            spent = {m: b["spent"] for m, b in state["budgets"].items()}
            return state if all(abs(spent[m] - reserved.get(m, 0.0)) <= 1e-12 for m in spent) else None

        wait_for(matches, 60, "the restarted router's /state to show the spend (no query produced)")
    finally:
        router.stop()


def weights_for(config: ServiceConfig, models: list[str], version: int) -> RoutingWeights:
    """Plausible learned weights (gamma by model name, so any order means the same weights)."""
    gamma = {m.name: 1e-6 * (i + 1) for i, m in enumerate(config.models)}  # small: every query scores above 0
    return RoutingWeights(version=version, models=models, gamma=[gamma[m] for m in models], alpha=1e-4, eps=0.025,
                          solver="test", objective=1.0, cost_scale=1.0, sample_size=5, created_at=time.time())


def test_weights_with_the_models_in_another_order_are_applied(tmp_path: Path) -> None:
    h.require_environment()
    path = h.write_config(tmp_path, partitions=2, n_expected=200)
    config = load_config(path, {})
    names = [m.name for m in config.models]
    weights_topic = config.topics.name(WEIGHTS)
    send(config, weights_topic, WEIGHTS_KEY, weights_for(config, names[::-1], 3).model_dump_json().encode())
    send(config, weights_topic, WEIGHTS_KEY, weights_for(config, names[:-1], 4).model_dump_json().encode())
    router = h.router_process(path, tmp_path / "router.log").start()
    try:
        router.wait_ready()
        ids = h.produce(config, h.random_queries(20, "order", seed=14))
        tally = h.outcomes(config, len(ids))
        h.assert_accounting(tally, ids)
        events = [json.loads(m.value or b"null") for m in read_all(config, config.topics.name(OBSERVATIONS))]
        assert {e["phase"] for e in events} == {"learned"}, "observed despite valid weights"
        assert sum(len(e["rows"]) for e in events) == len(ids), "every decision in one observation row"
        assert {e["weights_version"] for e in events} == {3}, "each batch acknowledges the version it followed"
        assert {(m["phase"], m["weights_version"]) for m in tally.routed_messages} == {("learned", 3)}
        assert router.state()["weights_version"] == 3
    finally:
        router.stop()


def test_a_broken_or_deleted_weights_record_is_repaired(tmp_path: Path) -> None:
    h.require_environment()
    path = h.write_config(tmp_path, partitions=2, n_expected=200)
    config = load_config(path, {})
    topic = config.topics.name(WEIGHTS)
    weights = weights_for(config, [m.name for m in config.models], 1)
    send(config, topic, WEIGHTS_KEY, weights.model_dump_json().encode())
    router = h.router_process(path, tmp_path / "router.log").start()
    try:
        router.wait_ready()
        for value in (b'{"broken": true}', None):
            send(config, topic, WEIGHTS_KEY, value)

            def repaired() -> RoutingWeights | None:
                last = [m for m in read_all(config, topic) if m.key == WEIGHTS_KEY][-1]  # what compaction keeps
                return None if last.value is None or b"broken" in last.value else \
                    RoutingWeights.model_validate_json(last.value)

            kept = wait_for(repaired, 60, f"valid weights after {value!r} on the weights key")
            assert kept.version == weights.version
            assert dict(zip(kept.models, kept.gamma)) == dict(zip(weights.models, weights.gamma))
    finally:
        router.stop()


def routed_bytes(config: ServiceConfig, query_id: str, model: str, partition: int = 0) -> bytes:
    """A schema-valid RoutedQuery's JSON."""
    routed = RoutedQuery(query=QueryEvent(id=query_id, text="What is 2+2?"), model=model, partition=partition,
                         phase="learned", estimated_quality=0.5, estimated_cost=1e-4, routed_at=time.time())
    return routed.model_dump_json().encode()


def committed_offsets(config: ServiceConfig, group: str, topic: str) -> dict[int, int]:
    """The committed offset of ``group`` on every partition of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**config.kafka.confluent(), "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in partitions],
                                                                    timeout=10)}
    finally:
        consumer.close()


def test_the_worker_dead_letters_bad_routed_messages_and_keeps_serving(tmp_path: Path) -> None:
    h.require_environment()
    path = h.write_config(tmp_path, partitions=2)
    config = load_config(path, {})
    model, other = config.models[0].name, config.models[1].name
    topic = config.routed_topic(model)
    log_path = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--config", str(path), "--model", model],
                              stdout=log_path.open("w"), stderr=subprocess.STDOUT, cwd=h.REPO, env=os.environ.copy())
    try:
        bad = [send(config, topic, b"w-json", b"not json", partition=0),
               send(config, topic, b"w-p7", routed_bytes(config, "w-p7", model, partition=7), partition=0),
               send(config, topic, b"w-other", routed_bytes(config, "w-other", other), partition=0)]
        send(config, topic, b"w-good", routed_bytes(config, "w-good", model), partition=0)

        def handled() -> dict | None:
            assert worker.poll() is None, f"the worker exited ({worker.returncode}):\n{log_path.read_text()[-3000:]}"
            completions = {json.loads(m.value or b"{}").get("query_id")
                           for m in read_all(config, config.topics.name(COMPLETIONS))}
            letters = dead_letters(config, topic)
            return letters if "w-good" in completions and all(where in letters for where in bad) else None

        letters = wait_for(handled, 180, "the worker to answer w-good and dead-letter the three bad messages")
        reasons = [letters[where]["reason"] for where in bad]
        assert "invalid" in reasons[0] and "partition 7" in reasons[1] and other in reasons[2], reasons
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert worker.returncode == 0, log_path.read_text()[-3000:]
    group = f"{app_id(config)}-worker-{topic_name(model)}"
    assert committed_offsets(config, group, topic).get(0) == 4, "the worker did not commit exactly what it handled"


def unreachable_config(directory: Path) -> Path:
    """The example configuration pointed at a port where no broker listens."""
    data = yaml.safe_load((h.REPO / "examples" / "config.yaml").read_text())
    data["kafka"]["bootstrap_servers"] = f"127.0.0.1:{processes.free_port()}"
    data["history"] = [str(h.DATA)]
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("command", [["serve"], ["worker", "--model", "claude-v1"]])
def test_an_unreachable_broker_ends_with_one_clear_line(tmp_path: Path, command: list[str]) -> None:
    path = unreachable_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORT_ROUTER__KAFKA__")}  # else they override
    # the unreachable address (as when the suite is pointed at another broker through them)
    result = subprocess.run([sys.executable, "-m", "streams.cli", *command, "--config", str(path)], cwd=h.REPO,
                            capture_output=True, text=True, timeout=180, env={**env, "HF_HUB_OFFLINE": "1"})
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, output[-20:]
    assert len(output) == 1 and "Traceback" not in output[0], output[-20:]
    assert "127.0.0.1:" in output[0] and "broker" in output[0], output
