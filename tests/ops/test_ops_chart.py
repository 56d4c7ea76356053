"""The Helm chart: helm lint, helm template (default and multi-model values), Kubernetes schema
validation of every rendered manifest (kubernetes-validate, strict), and the rendered content."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import unavailable
from opstools import REPO, tool

CHART = REPO / "helm"
MULTI = CHART / "ci" / "multi-model-values.yaml"
KUBE_VERSIONS = ("1.25.0", "1.37.0")  # the chart's kubeVersion floor and the newest schemas shipped
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)


def render(*values: Path, sets: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", "rel", str(CHART)]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def default_docs() -> list[dict]:
    return render()


@pytest.fixture(scope="module")
def multi_docs() -> list[dict]:
    return render(MULTI)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name} not rendered once: {[d['metadata']['name'] for d in by_kind(docs, kind)]}"
    return matches[0]


def validator():
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate is not installed in the venv (run scripts/install-ops-tools.sh)")
    return kubernetes_validate


@pytest.mark.parametrize("values", [(), (MULTI,)], ids=["default", "multi-model"])
def test_helm_lint_strict(values: tuple[Path, ...]) -> None:
    args = ["lint", "--strict", str(CHART)] + [a for v in values for a in ("-f", str(v))]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("fixture", ["default_docs", "multi_docs"])
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_rendered_manifests_match_kubernetes_schemas(fixture: str, version: str, request) -> None:
    kv = validator()
    docs = request.getfixturevalue(fixture)
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: {exc}")
        checked += 1
    assert checked >= 10


def test_schema_validation_catches_a_bad_manifest(default_docs: list[dict]) -> None:
    kv = validator()
    bad = copy.deepcopy(named(default_docs, "StatefulSet", "rel-port-router-router"))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = {"name": "http"}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBE_VERSIONS[-1], strict=True)


def test_values_schema_rejects_bad_values() -> None:
    for sets in (["models[0].budget=-1"], ["kafka.securityProtocol=SASL_SSL"], ["topics.queryPartitions=0"],
                 ["workers.backend=carrier-pigeon"]):
        result = helm("template", "rel", str(CHART), *[a for s in sets for a in ("--set", s)])
        assert result.returncode != 0 and "schema" in result.stderr, (sets, result.stderr)


def config_of(docs: list[dict], name: str = "rel-port-router-config") -> dict:
    return yaml.safe_load(named(docs, "ConfigMap", name)["data"]["config.yaml"])


@pytest.mark.parametrize("fixture, env", [
    ("default_docs", {}),
    ("multi_docs", {"PORT_ROUTER__KAFKA__SASL_USERNAME": "router", "PORT_ROUTER__KAFKA__SASL_PASSWORD": "pw"}),
])
def test_rendered_configuration_loads_as_service_config(fixture: str, env: dict, request, tmp_path) -> None:
    from streams.config import load_config

    docs = request.getfixturevalue(fixture)
    path = tmp_path / "config.yaml"
    path.write_text(named(docs, "ConfigMap", "rel-port-router-config")["data"]["config.yaml"])
    config = load_config(path, environ=env)
    assert config.router.web_port == 6066 and config.router.web_host == "0.0.0.0"
    assert config.budget.period == (None if fixture == "default_docs" else 86_400.0)
    hook_config = named(docs, "ConfigMap", "rel-port-router-topics-config")["data"]["config.yaml"]
    assert yaml.safe_load(hook_config) == config_of(docs)


def test_default_release(default_docs: list[dict]) -> None:
    config = config_of(default_docs)
    assert [m["name"] for m in config["models"]] == ["small-model", "large-model"]
    assert {d["metadata"]["name"] for d in by_kind(default_docs, "Deployment")} == {
        "rel-port-router-worker-small-model", "rel-port-router-worker-large-model"}
    assert not by_kind(default_docs, "ServiceMonitor") and not by_kind(default_docs, "PrometheusRule")
    router = named(default_docs, "StatefulSet", "rel-port-router-router")
    pod = router["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:1] == ["serve"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["ports"][0]["containerPort"] == 6066
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert router["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert {"name": "state", "mountPath": "/var/lib/port-router"} in container["volumeMounts"]
    assert config["router"]["data_dir"].startswith("/var/lib/port-router/")
    assert config["router"]["batch_size"] == 32 and config["budget"] == {"period": "none", "reserve_factor": 1.25}
    assert len(by_kind(default_docs, "PodDisruptionBudget")) == 3


def test_topics_job_is_a_hook_running_topics_create(default_docs: list[dict]) -> None:
    job = named(default_docs, "Job", "rel-port-router-topics")
    hook_config = named(default_docs, "ConfigMap", "rel-port-router-topics-config")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook_config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["topics", "create"]
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "rel-port-router-topics-config"}} in volumes


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_multi_model_release(multi_docs: list[dict]) -> None:
    config = config_of(multi_docs)
    assert config["kafka"]["security_protocol"] == "SASL_SSL" and config["kafka"]["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "sasl_password" not in config["kafka"] and "sasl_username" not in config["kafka"]
    assert config["history_rows"] == "split:42:1000" and config["embedding"] == {"batch_size": 64}
    assert config["budget"] == {"period": "1d", "reserve_factor": 1.5}
    deployments = {d["metadata"]["labels"]["port-router.io/model"]: d for d in by_kind(multi_docs, "Deployment")}
    assert set(deployments) == {"gpt-4-1106-preview", "gpt-3-5-turbo-1106", "llama-70b", "mistralai-mistral-7b-chat"}
    assert deployments["gpt-4-1106-preview"]["spec"]["replicas"] == 4
    assert deployments["gpt-3-5-turbo-1106"]["spec"]["replicas"] == 2
    llama = deployments["llama-70b"]["spec"]["template"]["spec"]["containers"][0]
    assert llama["args"][llama["args"].index("--model") + 1] == "meta/llama-2-70b-chat"
    assert env_of(llama)["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "vllm-token", "key": "token"}
    assert env_of(llama)["OPENAI_BASE_URL"]["value"] == "http://vllm-llama.llm.svc:8000/v1"
    mistral = deployments["mistralai-mistral-7b-chat"]["spec"]["template"]["spec"]
    assert "replay" in mistral["containers"][0]["args"]
    assert any(v["name"] == "history" for v in mistral["volumes"])
    for doc in by_kind(multi_docs, "Deployment") + by_kind(multi_docs, "StatefulSet") + by_kind(multi_docs, "Job"):
        container = doc["spec"]["template"]["spec"]["containers"][0]
        sasl = env_of(container)["PORT_ROUTER__KAFKA__SASL_PASSWORD"]
        assert sasl["valueFrom"]["secretKeyRef"] == {"name": "port-router-kafka", "key": "password"}
        assert {"name": "kafka-ca", "mountPath": "/etc/port-router-kafka-ca", "readOnly": True} in container[
            "volumeMounts"]
    assert config["kafka"]["ssl_cafile"] == "/etc/port-router-kafka-ca/ca.crt"
    monitor = by_kind(multi_docs, "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [s for s in by_kind(multi_docs, "Service")
               if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())]
    assert sorted(s["metadata"]["name"] for s in scraped) == ["rel-port-router-router", "rel-port-router-workers"]
    assert all(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in scraped)


def test_prometheus_rule_and_dashboard_carry_the_files(multi_docs: list[dict], tmp_path) -> None:
    rule = by_kind(multi_docs, "PrometheusRule")[0]
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([tool("promtool"), "check", "rules", str(rules_file)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    dashboard = named(multi_docs, "ConfigMap", "rel-port-router-dashboard")
    assert json.loads(dashboard["data"]["port-router.json"]) == json.loads(
        (CHART / "files" / "grafana-dashboard.json").read_text())
