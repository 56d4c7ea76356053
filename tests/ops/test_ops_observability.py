"""The Grafana dashboard and the Prometheus rules name only metrics streams.metrics exports,
and the rule file passes promtool; the Dockerfile passes hadolint."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from opstools import REPO, exported_metric_names, tool

DASHBOARD = REPO / "helm" / "files" / "grafana-dashboard.json"
RULES = REPO / "helm" / "files" / "prometheus-rules.yaml"
METRIC = re.compile(r"\b(port_router_[a-z0-9_]+)\b")
RECORDED = re.compile(r"\bport_router:[a-z0-9_:]+")


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    return {name for name in METRIC.findall(RECORDED.sub("", expr)) if name not in known}


def test_the_check_can_fail() -> None:
    assert unknown_metrics("rate(port_router_no_such_thing_total[5m])", exported_metric_names()) == {
        "port_router_no_such_thing_total"}
    assert unknown_metrics("port_router:consumer_lag_messages:sum > 1", exported_metric_names()) == set()


def test_dashboard_panels_query_exported_metrics() -> None:
    known = exported_metric_names()
    queries = panel_queries()
    assert len(queries) >= 10
    for title, expr in queries:
        assert METRIC.search(expr), f"panel {title!r} queries no port_router metric: {expr}"
        assert not unknown_metrics(expr, known), f"panel {title!r} names unexported metrics: {expr}"


def test_dashboard_covers_what_operators_watch() -> None:
    exprs = " ".join(expr for _, expr in panel_queries())
    for metric in ("port_router_consumer_lag_messages", "port_router_routed_total", "port_router_budget_remaining_dollars",
                   "port_router_gamma", "port_router_dead_lettered_total"):
        assert metric in exprs, f"no panel shows {metric}"
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "port-router"


def test_rules_name_exported_metrics_or_recorded_series() -> None:
    known = exported_metric_names()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        expr = rule["expr"]
        assert not unknown_metrics(expr, known), f"{rule.get('alert') or rule.get('record')}: {expr}"
        assert set(RECORDED.findall(expr)) <= recorded, f"{rule.get('alert') or rule.get('record')} uses an unrecorded series"


def test_alerts_cover_the_issue() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert {"PortRouterConsumerLagGrowing", "PortRouterBudgetNearlyExhausted", "PortRouterDeadLetterSpike",
            "PortRouterNoWeightsLearned"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert name in (REPO / "docs" / "OPERATIONS.md").read_text(), f"{name} is not documented"


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.parametrize("dockerfile, clean", [(REPO / "Dockerfile", True), (None, False)], ids=["project", "control"])
def test_hadolint(dockerfile, clean: bool, tmp_path) -> None:
    if dockerfile is None:  # a negative control: hadolint must reject an untagged base and unpinned pip
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text("FROM python\nRUN pip install torch\n")
    result = subprocess.run([tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode == 0) is clean, result.stdout + result.stderr


def test_dockerfile_contract() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert re.search(r"^USER 10001", text, re.M) and "HEALTHCHECK" in text
    assert 'ENTRYPOINT ["port-router"]' in text and "HF_HUB_OFFLINE=1" in text
    assert "--index-url" in text and "python:3.11-slim" in text
    build, runtime = text.split("AS runtime")
    assert "g++" in build and "g++" not in runtime, "the compiler (hnswlib is an sdist) in the build stage only"
    assert "HNSWLIB_NO_NATIVE=1" in build, "no -march=native code in an image that runs on other CPUs"
    assert "type=secret,id=ca" in build and "secret" not in runtime, "a proxy CA only as a build secret"


def test_alerts_fire_when_documented() -> None:
    """promtool unit tests (tests/ops/data/alerts-test.yaml): each alert fires on synthetic series
    that match its documented condition, with its annotations, and stays quiet on near misses."""
    tests = REPO / "tests" / "ops" / "data" / "alerts-test.yaml"
    result = subprocess.run([tool("promtool"), "test", "rules", tests.name], capture_output=True, text=True,
                            timeout=120, cwd=tests.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
