"""dependency_freshness against a local registry, ops_drift against kmock: findings, metadata, dashboard."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from codexk8s_pipelines.autonomous.drift import ops_drift
from codexk8s_pipelines.autonomous.freshness import dependency_freshness
from codexk8s_pipelines.store.findings import open_findings
from tests.drift.conftest import Cluster, cluster  # noqa: F401  (fixture)
from tests.freshness.conftest import registry  # noqa: F401  (fixture)
from tests.freshness.registry_server import FakeRegistry

from .conftest import REPO, Watched


def _registry_config(reg: FakeRegistry, extra: str = "") -> str:
    urls = reg.urls
    return (
        f"periodic:\n  freshness:\n    pypi_url: {urls.pypi}\n    npm_url: {urls.npm}\n"
        f"    go_proxy_url: {urls.go}\n    crates_url: {urls.crates}\n{extra}"
    )


def test_outdated_dependencies_are_findings_with_a_table_and_a_plot(
    watched: Callable[..., Watched],
    registry: FakeRegistry,  # noqa: F811
) -> None:
    registry.publish_pypi("requests", {"2.20.0": "2018-10-18T00:00:00", "2.32.3": "2024-05-29T00:00:00"})
    registry.publish_pypi("idna", {"3.7": "2024-04-11T00:00:00"})
    registry.publish_pypi("pyyaml", {"5.4": "2021-01-20T00:00:00", "6.0.2": "2024-08-06T00:00:00",
                                     "7.0.0rc1": "2024-10-01T00:00:00"})  # fmt: skip
    registry.fail(registry.pypi_path("flask"))
    env = watched(
        {"requirements.txt": "requests==2.20.0\nidna==3.7\nPyYAML==5.4\nflask==3.0.0\n"}, _registry_config(registry)
    )
    first = env.materialize(dependency_freshness)
    assert (first["dependencies"], first["outdated"], first["registry_errors"]) == (4, 2, 1)
    assert first["new"] == 2 and first["dashboard"] == "created"
    assert first["libyear_total"] == pytest.approx(5.61 + 3.54, abs=0.01)
    table = {row.data["name"]: row.data for row in first["table"].records}
    assert table["requests"]["latest"] == "2.32.3" and table["idna"]["status"] == "up-to-date"
    assert table["pyyaml"]["latest"] == "6.0.2"  # the release candidate is not "latest"
    assert "data:image/png;base64," in first["libyear_plot_image"]
    png = base64.b64decode(first["libyear_plot_image"].split("base64,", 1)[1].rstrip(")"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    plot_file = Path(first["libyear_plot"])
    assert plot_file.read_bytes() == png
    assert isinstance(first["libyear_total"], float)
    again = env.materialize(dependency_freshness)  # the weekly run again: the repository's file is replaced
    assert again["libyear_plot"] == str(plot_file) and list(plot_file.parent.iterdir()) == [plot_file]
    (number,) = env.state.repo(REPO).issues
    body = env.state.issue(REPO, number).body
    assert "- [ ] `requests` (PyPI) 2.20.0 → 2.32.3 · 0 major behind" not in body  # behind is the real count
    assert "`requests` (PyPI) 2.20.0 → 2.32.3 · 12 minor behind · 5.6 libyears" in body
    assert "`pyyaml` (PyPI) 5.4 → 6.0.2 · 1 major behind" in body
    assert "PyPI `flask`: HTTP 500 from PyPI" in body

    # requests is bumped; the registry is down for pyyaml this time: its finding stays open, not "fixed".
    registry.fail(registry.pypi_path("pyyaml"))
    env.push({"requirements.txt": "requests==2.32.3\nidna==3.7\nPyYAML==5.4\nflask==3.0.0\n"}, "bump")
    second = env.materialize(dependency_freshness)
    assert (second["resolved"], second["preserved"]) == (1, 1)
    assert [r["details"]["package"] for r in open_findings(env.store, REPO, "freshness")] == ["pyyaml"]
    assert "- [x] ~~`requests` (PyPI) 2.20.0 → 2.32.3" in env.state.issue(REPO, number).body


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: shop/web:1.4.0
          resources: {limits: {cpu: 500m, memory: 1Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def _live_deployment(image: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "uid": "u-1", "resourceVersion": "42"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "revisionHistoryLimit": 10,
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "web", "image": image, "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}}]}}},
        "status": {"readyReplicas": replicas},
    }  # fmt: skip


def test_drift_reports_changed_and_missing_objects_and_never_writes(
    watched: Callable[..., Watched],
    cluster: Cluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    cluster.create(_live_deployment("shop/web:1.3.9", 5))
    env = watched(
        {"deploy/k8s.yaml": DEPLOYMENT},
        "    drift:\n      manifests: deploy\n      ignore: [{kind: Deployment, pointer: /spec/replicas}]\n",
    )
    before = len(cluster.requests())
    first = env.materialize(ops_drift)
    assert (first["drift_changed"], first["drift_missing"], first["drift_ignored"]) == (1, 1, 1)
    (number,) = env.state.repo(REPO).issues
    body = env.state.issue(REPO, number).body
    assert "changed · `Deployment.apps default/web`" in body
    assert "desired `shop/web:1.4.0`, live `shop/web:1.3.9`" in body
    assert "missing · `Service default/web` · missing from the cluster" in body
    assert {method for method, _, _ in cluster.requests()[before:]} == {"GET"}  # warn-only: nothing applied

    env.state.clear_requests()
    again = env.materialize(ops_drift)
    assert again["dashboard"] == "unchanged" and env.writes() == []
    assert len(open_findings(env.store, REPO, "drift")) == 2


def test_drift_without_a_section_is_skipped_by_the_schedule(watched: Callable[..., Watched]) -> None:
    import dagster as dg

    from schedules import all_schedules

    env = watched({"README.md": "# shop\n"})
    (schedule,) = [s for s in all_schedules() if s.name == "ops_drift_schedule"]
    defs = dg.Definitions(assets=[ops_drift], schedules=[schedule], resources=env.resources)
    with dg.build_schedule_context(
        instance=env.instance, resources=env.resources, repository_def=defs.get_repository_def()
    ) as context:  # as a context: it leaves no Dagster instance state behind
        data = schedule.evaluate_tick(context)
    assert not data.run_requests and data.skip_message == f"{REPO}: no drift section"
