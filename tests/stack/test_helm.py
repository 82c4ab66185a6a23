"""The Helm chart (deploy/helm/nl2sql-observability): the real `helm` lints and renders it for the default
and the production values, every rendered object is valid against the Kubernetes API schemas (offline,
kubernetes-validate), the collector configs it renders are the repository's and validate with the real
collector, and the chart reads the repository's files (through links in its files/)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .conftest import ROOT, assert_ok, find_tool, load_yaml, run
from .test_scale_out import GATE

CHART = ROOT / "deploy" / "helm" / "nl2sql-observability"
PRODUCTION = CHART / "values-production.yaml"
NAMESPACE = "observability"
RELEASE = "nl2sql"
# the chart's files/ links → the repository folders they stand for (one source for compose and Kubernetes)
LINKS = {
    "collector": ROOT / "collector",
    "prometheus/rules": ROOT / "prometheus" / "rules",
    "grafana": ROOT / "grafana",
}
COLLECTOR_FILES = [ROOT / "collector" / n for n in ("config.yaml", "agent.yaml", "sampler.yaml")]
VALUES = {"default": None, "production": PRODUCTION}
# the agent as a Deployment instead of a DaemonSet (agent.kind), on top of the default values
AGENT_DEPLOYMENT = ["--set", "agent.kind=Deployment", "--set", "agent.replicas=3"]


def test_chart_files_are_links_to_the_repository_folders() -> None:
    for name, target in LINKS.items():
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link.relative_to(ROOT)} must be a link to {target.relative_to(ROOT)}"
        assert not Path(os.readlink(link)).is_absolute(), "a relative link works in every clone"
        assert link.resolve() == target.resolve()


def helm(*args: str | Path) -> Any:
    return run([find_tool("helm"), *args], env={"HELM_CACHE_HOME": "/nonexistent", "KUBECONFIG": "/dev/null"})


@pytest.mark.parametrize("values", list(VALUES), ids=list(VALUES))
def test_helm_lint(values: str) -> None:
    extra = ["--values", str(VALUES[values])] if VALUES[values] else []
    proc = helm("lint", "--strict", CHART, *extra)
    assert_ok(proc)
    assert "0 chart(s) failed" in proc.stdout


@pytest.fixture(scope="module", params=[*VALUES, "agent-deployment"])
def rendered(request: pytest.FixtureRequest) -> Rendered:
    path = VALUES.get(request.param)
    extra = ["--values", str(path)] if path else []
    if request.param == "agent-deployment":
        extra = AGENT_DEPLOYMENT
    proc = helm("template", RELEASE, CHART, "--namespace", NAMESPACE, *extra)
    assert_ok(proc)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs
    return Rendered(path, docs)


@dataclass
class Rendered:
    values: Path | None  # the values file on top of the chart's values.yaml
    docs: list[dict[str, Any]]

    def grafana_urls(self) -> dict[str, str]:
        """The datasource URLs these values ask for."""
        urls = dict(load_yaml(CHART / "values.yaml")["grafana"]["datasources"])
        if self.values is not None:
            urls.update(load_yaml(self.values).get("grafana", {}).get("datasources", {}))
        return urls


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def by_component(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    (obj,) = [
        d
        for d in objects(docs, kind)
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    return obj


def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(rendered: Rendered) -> None:
    version = kubernetes_validate.latest_version()
    for doc in rendered.docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} is not valid Kubernetes {version}: {err.message}"
            )


def test_the_rendered_collector_configs_are_the_repository_files(rendered: Rendered) -> None:
    (cm,) = [d for d in objects(rendered.docs, "ConfigMap") if d["metadata"]["name"].endswith("-collector")]
    for src in COLLECTOR_FILES:
        assert cm["data"][src.name] == src.read_text(encoding="utf-8").rstrip("\n"), src.name


def workload(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The DaemonSet or Deployment of a tier (agent, sampler)."""
    (obj,) = [
        d
        for d in docs
        if d["kind"] in ("DaemonSet", "Deployment")
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    return obj


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("component", ["agent", "sampler"])
def test_each_tier_validates_with_the_real_collector_as_rendered(
    rendered: Rendered, component: str, tool: Callable[[str], Path], tmp_path: Path
) -> None:
    """The container's own arguments and environment, against the rendered ConfigMap's files."""
    (cm,) = [d for d in objects(rendered.docs, "ConfigMap") if d["metadata"]["name"].endswith("-collector")]
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text + "\n", encoding="utf-8")
    container = _container(workload(rendered.docs, component))
    args = [a.replace("/etc/otelcol/", f"{tmp_path}/") for a in container["args"]]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert_ok(run([tool("otelcol-nl2sql"), "validate", *args], env=env))


def test_samplers_sit_behind_a_headless_service_the_agents_resolve(rendered: Rendered) -> None:
    svc = by_component(rendered.docs, "Service", "sampler")
    assert svc["spec"]["clusterIP"] == "None"
    sampler = workload(rendered.docs, "sampler")
    assert sampler["spec"]["replicas"] >= 2
    assert svc["spec"]["selector"].items() <= sampler["spec"]["template"]["metadata"]["labels"].items()
    assert GATE in _container(sampler)["args"]
    env = {e["name"]: e["value"] for e in _container(workload(rendered.docs, "agent"))["env"]}
    assert env["NL2SQL_SAMPLER_HOSTNAME"] == f"{svc['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    for kind in ("Deployment", "DaemonSet"):
        for w in objects(rendered.docs, kind):
            c = _container(w)
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert w["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_grafana_and_rules_config_maps(rendered: Rendered) -> None:
    maps = {
        d["metadata"]["name"].removeprefix(f"{RELEASE}-nl2sql-observability-"): d
        for d in objects(rendered.docs, "ConfigMap")
    }
    rules = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    dashboards = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    alerting = sorted((ROOT / "grafana" / "provisioning" / "alerting").glob("*.yaml"))
    for cm, files in (("rules", rules), ("dashboards", dashboards), ("alerts", alerting)):
        assert maps[cm]["data"] == {p.name: p.read_text(encoding="utf-8").rstrip("\n") for p in files}, cm
    assert maps["dashboards"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    ours = load_yaml(ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml")
    theirs = yaml.safe_load(maps["datasources"]["data"]["datasources.yaml"])
    assert [d["uid"] for d in theirs["datasources"]] == [d["uid"] for d in ours["datasources"]]
    assert {d["uid"]: d["url"] for d in theirs["datasources"]} == rendered.grafana_urls()


def test_a_bad_agent_kind_fails_with_a_clear_message() -> None:
    proc = helm("template", RELEASE, CHART, "--set", "agent.kind=StatefulSet")
    assert proc.returncode != 0
    assert "agent.kind must be DaemonSet or Deployment" in proc.stderr


def test_helm_is_the_one_built_from_its_module() -> None:
    proc = helm("version", "--short")
    assert_ok(proc)
    assert proc.stdout.startswith("v4.3.2"), proc.stdout


def test_the_agent_kind_follows_the_values(rendered: Rendered) -> None:
    """A DaemonSet keeps each app's traffic on its node (one agent per app instance computes its span
    metrics); a Deployment spreads it over agent.replicas."""
    agent = workload(rendered.docs, "agent")
    service = by_component(rendered.docs, "Service", "agent")
    if agent["kind"] == "DaemonSet":
        assert service["spec"]["internalTrafficPolicy"] == "Local"
    else:
        assert agent["spec"]["replicas"] == 3
        assert "internalTrafficPolicy" not in service["spec"]
