"""Unit tests of streams.metrics: helpers, label bounding, snapshot gauges, lag arithmetic, serving."""

from __future__ import annotations

import re
import urllib.request
from types import SimpleNamespace

import pytest

from streams import consumer_lag
from streams import metrics as m
from streams.metrics import REGISTRY


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_routed_counts_per_model_and_phase() -> None:
    before = value("port_router_routed_total", model="unit-a", phase="learned") or 0.0
    m.record_routed("unit-a", "learned", 3)
    m.record_routed("unit-a", "learned")
    assert value("port_router_routed_total", model="unit-a", phase="learned") == before + 4


def test_declared_models_have_zero_series() -> None:
    m.declare_router_models(["unit-declared"])
    m.declare_worker_model("unit-declared")
    assert value("port_router_routed_total", model="unit-declared", phase="observation") == 0
    assert value("port_router_routed_total", model="unit-declared", phase="learned") == 0
    assert value("port_router_worker_completions_total", model="unit-declared") == 0


def test_unknown_phase_and_reason_become_other() -> None:
    m.record_routed("unit-b", "a free text phase")
    m.record_unserved("because the prompt said so")
    assert value("port_router_routed_total", model="unit-b", phase="other") == 1
    assert value("port_router_unserved_total", reason="other") >= 1
    m.record_unserved("no-budget")
    assert value("port_router_unserved_total", reason="no-budget") >= 1


@pytest.mark.parametrize("text, reason", [
    ("empty message (no value)", "empty"),
    ("message of 600000 bytes exceeds the 524288-byte limit", "too_large"),
    ("invalid text: String should have at most 10 characters", "invalid"),
    ("embedding has 3 dimensions, the index has 384", "bad_embedding"),
    ("embedding is all zeros", "bad_embedding"),
    ("something nobody expected: SECRET PROMPT TEXT", "other"),
])
def test_dead_letter_reasons_are_classes_not_text(text: str, reason: str) -> None:
    assert m.dead_letter_reason(text) == reason
    assert reason in m.DEAD_LETTER_REASONS
    before = value("port_router_dead_lettered_total", reason=reason) or 0.0
    m.record_dead_letter(text)
    assert value("port_router_dead_lettered_total", reason=reason) == before + 1


def test_bounded_label() -> None:
    assert m.bounded_label("TimeoutError") == "TimeoutError"
    assert m.bounded_label("has spaces in it") == "other"
    assert m.bounded_label("x" * 65) == "other"
    assert m.bounded_label("learned", m.PHASES) == "learned"
    assert m.bounded_label("learnt", m.PHASES) == "other"


def test_budgets_replace_the_whole_set_and_compute_remaining() -> None:
    m.record_budgets([m.BudgetShare("gpt", 0, 10.0, 1.5, 2.0), m.BudgetShare("gpt", 1, 10.0, 0.0, 12.0)])
    assert value("port_router_budget_limit_dollars", model="gpt", partition="0") == 10.0
    assert value("port_router_budget_reserved_dollars", model="gpt", partition="0") == 1.5
    assert value("port_router_budget_spent_dollars", model="gpt", partition="0") == 2.0
    assert value("port_router_budget_remaining_dollars", model="gpt", partition="0") == 6.5
    assert value("port_router_budget_remaining_dollars", model="gpt", partition="1") == -2.0
    m.record_budgets([m.BudgetShare("gpt", 1, 10.0, 0.0, 3.0)])  # partition 0 was revoked
    assert value("port_router_budget_limit_dollars", model="gpt", partition="0") is None
    assert value("port_router_budget_spent_dollars", model="gpt", partition="1") == 3.0


def test_snapshot_gauges_reject_wrong_label_count() -> None:
    with pytest.raises(ValueError, match="label values"):
        m.CONSUMER_LAG.replace({("only-group",): 1.0})


def test_weights_and_observations() -> None:
    m.record_weights(["a", "b"], [0.25, 1.5], 1)
    assert value("port_router_gamma", model="b") == 1.5
    assert value("port_router_weights_version") == 1
    with pytest.raises(ValueError):
        m.record_weights(["a"], [0.1, 0.2], 2)
    m.record_observations(7, 10)
    assert (value("port_router_observations"), value("port_router_observations_needed")) == (7, 10)


def test_worker_metrics() -> None:
    m.record_completion("unit-w", 0.002, 1.2)
    m.record_completion("unit-w", 0.003, 0.2)
    assert value("port_router_worker_completions_total", model="unit-w") == 2
    assert value("port_router_worker_cost_dollars_total", model="unit-w") == pytest.approx(0.005)
    assert value("port_router_worker_llm_latency_seconds_count", model="unit-w") == 2
    assert value("port_router_worker_llm_latency_seconds_bucket", model="unit-w", le="0.25") == 1
    m.record_worker_error("unit-w", TimeoutError("took too long on prompt ..."))
    m.record_worker_error("unit-w", "rate limited by the provider")
    assert value("port_router_worker_errors_total", model="unit-w", error="TimeoutError") == 1
    assert value("port_router_worker_errors_total", model="unit-w", error="other") == 1


def test_histograms_observe_seconds() -> None:
    before = value("port_router_decision_latency_seconds_count") or 0.0
    with m.DECISION_LATENCY.time():
        pass
    m.EMBEDDING_BATCH_LATENCY.observe(0.02)
    assert value("port_router_decision_latency_seconds_count") == before + 1
    assert value("port_router_embedding_batch_latency_seconds_bucket", le="0.025") >= 1


@pytest.mark.parametrize("committed, low, high, lag", [
    (5, 0, 12, 7), (None, 0, 12, 12), (None, 4, 12, 8), (2, 4, 12, 8), (12, 0, 12, 0), (-1001, 3, 3, 0),
])
def test_partition_lag(committed: int | None, low: int, high: int, lag: int) -> None:
    assert consumer_lag.partition_lag(committed, low, high) == lag


class FakeReader:
    """A LagReader stand-in: fixed rows, or an error."""

    timeout = 1.0

    def __init__(self, rows: list[consumer_lag.PartitionLag] | None = None, error: Exception | None = None) -> None:
        self.rows, self.error, self.asked = rows or [], error, []

    def groups(self, prefix: str = "") -> list[str]:
        self.asked.append(prefix)
        return ["port.port-router"]

    def read(self, groups: list[str]) -> list[consumer_lag.PartitionLag]:
        if self.error:
            raise self.error
        return [r for r in self.rows if r.group in groups]


def test_lag_monitor_exports_rows_and_counts_errors() -> None:
    rows = [consumer_lag.PartitionLag("port.port-router", "port.queries", 0, 3, 0, 10),
            consumer_lag.PartitionLag("port.port-router", "port.queries", 1, None, 0, 4)]
    reader = FakeReader(rows)
    monitor = m.LagMonitor(reader, group_prefix="port.")  # type: ignore[arg-type]
    assert monitor.poll() == rows and reader.asked == ["port."]
    assert value("port_router_consumer_lag_messages", group="port.port-router", topic="port.queries",
                 partition="0") == 7
    assert value("port_router_consumer_lag_messages", group="port.port-router", topic="port.queries",
                 partition="1") == 4
    errors = value("port_router_consumer_lag_errors_total")
    failing = m.LagMonitor(FakeReader(error=RuntimeError("broker down")), groups=["g"])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        failing.poll()
    assert value("port_router_consumer_lag_errors_total") == errors + 1
    # the last good snapshot stays exported
    assert value("port_router_consumer_lag_messages", group="port.port-router", topic="port.queries",
                 partition="0") == 7


def test_lag_monitor_thread_starts_and_stops() -> None:
    monitor = m.LagMonitor(FakeReader([]), groups=["g"], interval=0.05)  # type: ignore[arg-type]
    monitor.start()
    monitor.stop()
    assert monitor._thread is not None and not monitor._thread.is_alive()


def test_render_and_serve_metrics() -> None:
    body, content_type = m.render_metrics()
    assert content_type.startswith("text/plain")
    assert b"# TYPE port_router_routed_total counter" in body
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m.serve_metrics(port, addr="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "port_router_consumer_lag_messages" in text and "process_cpu_seconds_total" in text


def test_no_query_text_in_any_label() -> None:
    secret = "please summarise my medical record"
    m.record_unserved(secret)
    m.record_dead_letter(secret)
    m.record_worker_error("unit-s", secret)
    assert secret not in m.render_metrics()[0].decode()


def test_lag_table_has_rows_totals_and_placeholder() -> None:
    from rich.console import Console

    from streams.tools.lag import lag_table

    rows = [consumer_lag.PartitionLag("g", "t", 1, None, 0, 4), consumer_lag.PartitionLag("g", "t", 0, 3, 0, 10)]
    console = Console(width=120, record=True)
    console.print(lag_table(rows, warn_at=5))
    text = console.export_text()
    cells = [line.replace("│", " ").split() for line in text.splitlines() if " t " in line]
    assert [c[2] for c in cells] == ["0", "1", "all"]
    assert [c[-1] for c in cells] == ["7", "4", "11"]
    console.print(lag_table([], warn_at=5))
    assert "no consumer group" in console.export_text()


def test_lag_settings_from_arguments(tmp_path) -> None:
    import argparse

    from streams.tools.lag import add_arguments, kafka_settings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--bootstrap-servers", "127.0.0.1:9999", "--group", "a", "--group", "b"])
    assert kafka_settings(args) == ({"bootstrap.servers": "127.0.0.1:9999"}, "")
    assert args.group == ["a", "b"] and not args.watch
    args = SimpleNamespace(config=None, bootstrap_servers=None, prefix="port.")
    assert kafka_settings(args) == ({"bootstrap.servers": "127.0.0.1:9092"}, "port.")


def test_lag_watch_refreshes_survives_errors_and_stops_on_ctrl_c(monkeypatch, capsys) -> None:
    import argparse

    from streams.tools import lag

    reads = iter([[consumer_lag.PartitionLag("g", "t", 0, 1, 0, 5)], RuntimeError("broker hiccup"),
                  [consumer_lag.PartitionLag("g", "t", 0, 4, 0, 5)]])

    class ScriptedReader:
        def __init__(self, conf: dict, timeout: float) -> None:
            self.conf = conf

        def groups(self, prefix: str = "") -> list[str]:
            return ["g"]

        def read(self, groups: list[str]) -> list[consumer_lag.PartitionLag]:
            step = next(reads)
            if isinstance(step, Exception):
                raise step
            return step

    sleeps = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:  # after the error and the second table
            raise KeyboardInterrupt

    monkeypatch.setattr(lag, "LagReader", ScriptedReader)
    monkeypatch.setattr(lag.time, "sleep", fake_sleep)
    parser = argparse.ArgumentParser()
    lag.add_arguments(parser)
    assert lag.run(parser.parse_args(["--watch", "--interval", "0.5"])) == 0
    assert sleeps == [0.5] * 3
    out = capsys.readouterr().out
    assert "broker hiccup" in out
    assert re.search(r"│\s+0\s+│\s+4\s+│\s+5\s+│\s+1\s+│", out), out
