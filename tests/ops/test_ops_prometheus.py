"""A real Prometheus (Debian's package) scrapes a router and a worker during a short end-to-end
run on the real broker; its HTTP API must return the routed rate and the consumer lag the test
produced.

Needs: scripts/kafka.sh start, the shared RouterBench subset, `prometheus` (scripts/install-ops-tools.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from opstools import REPO, tool
from streams.processes import free_port

sys.path.insert(0, str(REPO / "tests" / "integration"))
from stream_harness import (  # noqa: E402  (the stream service's own test harness)
    router_process, outcomes, produce, random_queries, require_environment, write_config)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SCRAPE_INTERVAL_S = 1


class Prometheus:
    """A Prometheus server on loopback scraping the given targets every second."""

    def __init__(self, directory: Path, targets: dict[str, str]) -> None:
        self.directory = directory
        self.port = free_port()
        config = {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
            "rule_files": [str(REPO / "helm" / "files" / "prometheus-rules.yaml")],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in targets.items()],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Prometheus":
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={self.directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"prometheus not ready in 60s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query: {sorted label pairs: value}."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}

    def wait_for(self, expr: str, accept, timeout: float = 90.0) -> dict:
        """Poll ``expr`` until ``accept(result)`` holds; fail with the last result otherwise."""
        deadline = time.monotonic() + timeout
        result: dict = {}
        while time.monotonic() < deadline:
            result = self.query(expr)
            if accept(result):
                return result
            time.sleep(1)
        pytest.fail(f"{expr} never matched within {timeout}s; last result: {result}")

    def wait_targets_up(self, jobs: set[str], timeout: float = 30.0) -> None:
        """Wait until every job's target was scraped successfully; fail with their errors otherwise."""
        deadline = time.monotonic() + timeout
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/targets", timeout=10) as response:
                active = json.loads(response.read())["data"]["activeTargets"]
            health = {t["labels"]["job"]: f"{t['health']} {t.get('lastError', '')}".strip() for t in active}
            if all(health.get(job) == "up" for job in jobs):
                return
            time.sleep(0.5)
        pytest.fail(f"scrape targets not up within {timeout}s: {health}")


def start_worker(config_path: Path, model: str, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--config", str(config_path), "--model", model,
         "--backend", "replay", "--metrics-port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def commit_probe_offsets(config, group: str, committed: int) -> dict[int, int]:
    """Commit ``committed`` on every partition of the queries topic for ``group``; return the
    expected lag per partition from the broker's high watermarks (read independently)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = config.topics.name("queries")
    consumer = Consumer({**config.kafka.confluent(), "group.id": group, "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.commit(offsets=[TopicPartition(topic, p, committed) for p in partitions], asynchronous=False)
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] - committed
                for p in partitions}
    finally:
        consumer.close()


def test_prometheus_scrapes_routed_rate_and_consumer_lag(tmp_path: Path) -> None:
    require_environment()
    from streams.app import app_id
    from streams.config import load_config, topic_name
    from streams.service import input_hint_group

    path = write_config(tmp_path, partitions=2, n_expected=200)
    config = load_config(path, {})
    router = router_process(path, tmp_path / "router.log").start()
    worker_port = free_port()
    worker: subprocess.Popen | None = None
    prometheus = Prometheus(tmp_path, {"router": f"127.0.0.1:{router.web_port}", "worker": f"127.0.0.1:{worker_port}"})
    try:
        router.wait_ready()
        prometheus.start()
        prometheus.wait_targets_up({"router"})
        produced = produce(config, random_queries(240, "p", seed=5), rate=40.0)  # ~6 s: several scrapes
        tally = outcomes(config, len(produced))
        assert sum(tally.routed.values()) + tally.unserved == len(produced), router.log_tail()
        # The worker serves the model that got the most queries (which one depends on the
        # routing); its group starts at the earliest offset, so it catches up on all of them.
        worker_model = max(tally.routed, key=tally.routed.get)
        worker = start_worker(path, worker_model, worker_port, tmp_path / "worker.log")
        prometheus.wait_targets_up({"worker"})
        probe_group = f"{config.topics.prefix}ops-probe"
        expected_lag = commit_probe_offsets(config, probe_group, committed=10)
        assert all(lag > 0 for lag in expected_lag.values())

        def nonzero_per_model(result: dict) -> dict[str, float]:
            return {dict(k)["model"]: v for k, v in result.items() if v > 0}

        prometheus.wait_for("sum by (model) (port_router_routed_total)",
                            lambda r: nonzero_per_model(r) == dict(tally.routed))
        rate = prometheus.query("sum(rate(port_router_routed_total[1m]))")
        assert rate and list(rate.values())[0] > 0, rate

        group_filter = f'group="{probe_group}"'
        lag = prometheus.wait_for(
            f"port_router_consumer_lag_messages{{{group_filter}}}",
            lambda r: {int(dict(k)["partition"]): v for k, v in r.items()} == expected_lag)
        assert all(dict(k)["topic"] == config.topics.name("queries") for k in lag)
        router_group = f'group="{input_hint_group(config)}", topic="{config.topics.name("queries")}"'
        prometheus.wait_for(f"sum(port_router_consumer_lag_messages{{{router_group}}})",
                            lambda r: list(r.values()) == [0.0])

        served = tally.routed[worker_model]
        prometheus.wait_for(f'port_router_worker_completions_total{{model="{worker_model}"}}',
                            lambda r: list(r.values()) == [float(served)])
        worker_group = f'group="{app_id(config)}-worker-{topic_name(worker_model)}"'
        prometheus.wait_for(f"sum(port_router_consumer_lag_messages{{{worker_group}}})",
                            lambda r: list(r.values()) == [0.0])
    finally:
        prometheus.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        router.stop()
