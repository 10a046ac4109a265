"""The official dagster/dagster chart rendered with helm/dagster-values.yaml, as a first install would render it.

The chart is the copy in ../shared/data/dagster-chart/dagster (1.12.19, the nearest release available offline).
Its values.schema.json loads the Kubernetes definitions from raw.githubusercontent.com, which an offline (or
air-gapped) helm cannot reach: the test renders a copy whose remote `$ref`s point at the same definitions shipped
by kubernetes-validate, so helm's schema validation stays on (a test below proves it rejects a bad value). This is
the workaround helm/README.md gives for air-gapped clusters.

Every rendered object of both charts is validated for Kubernetes 1.33-1.35, and every pod is checked against Pod
Security "restricted".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.instance.config import dagster_instance_config

from codexk8s_pipelines.config.loader import parse_config
from codexk8s_pipelines.instance import TICK_RETENTION_DAYS, run_queue
from tests.helpers import shared_data_dir
from tests.test_instance_files import tick_days

from .pod_security import pod_specs, restricted_violations

REPO = Path(__file__).resolve().parents[2]
DAGSTER_CHART = shared_data_dir() / "dagster-chart" / "dagster"
DAGSTER_VALUES = REPO / "helm" / "dagster-values.yaml"
CHART = REPO / "helm" / "codex-k8s"
NAMESPACE = "codexk8s"
K8S_VERSIONS = ("1.33.0", "1.34.0", "1.35.0")
REMOTE_DEFINITIONS = "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0/_definitions.json"
HELM_TIMEOUT_SECONDS = 60


def offline_chart(source: Path, target: Path) -> Path:
    """A copy of the chart whose schemas take the Kubernetes definitions from kubernetes-validate, not the network."""
    definitions = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.33.0-local"
    shutil.copytree(source, target)
    for schema in target.rglob("values.schema.json"):
        schema.chmod(0o644)
        text = schema.read_text(encoding="utf-8")
        text = text.replace(f"{REMOTE_DEFINITIONS}#/definitions/", f"{definitions.as_uri()}/_definitions.json#/$defs/")
        assert "https://" not in text, f"{schema}: a remote $ref is left"
        schema.write_text(text, encoding="utf-8")
    return target


def _helm() -> str:
    configured = os.environ.get("CODEXK8S_HELM")
    path = Path(configured) if configured else REPO / ".tools" / "helm"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"helm not found at {path}: run `make .tools/helm` or set CODEXK8S_HELM", pytrace=False)
    return str(path)


def _template(chart: Path, release: str, *values: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"HELM_{k}_HOME": str(tmp / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}
    args = [_helm(), "template", release, str(chart), "-n", NAMESPACE]
    for v in values:
        args += ["-f", str(v)]
    return subprocess.run(args, capture_output=True, text=True, timeout=HELM_TIMEOUT_SECONDS, env=env, check=False)


def _objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def chart_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DAGSTER_CHART.is_dir():
        pytest.fail(f"the dagster chart is not at {DAGSTER_CHART} (shared/data/dagster-chart)", pytrace=False)
    return offline_chart(DAGSTER_CHART, tmp_path_factory.mktemp("chart") / "dagster")


@pytest.fixture(scope="module")
def dagster_objects(chart_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    result = _template(chart_copy, "dagster", DAGSTER_VALUES, tmp=tmp_path_factory.mktemp("helm"))
    assert result.returncode == 0, result.stderr
    return _objects(result.stdout)


@pytest.fixture(scope="module")
def platform_objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    result = _template(CHART, "codex-k8s", tmp=tmp_path_factory.mktemp("helm"))
    assert result.returncode == 0, result.stderr
    return _objects(result.stdout)


def test_the_schema_is_validated_offline(chart_copy: Path, tmp_path: Path) -> None:
    """Schema validation is on: a wrong type in a Kubernetes field is refused, naming the field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("dagsterWebserver:\n  podSecurityContext:\n    runAsUser: not-a-number\n")
    result = _template(chart_copy, "dagster", DAGSTER_VALUES, bad, tmp=tmp_path)
    assert result.returncode != 0
    assert "runAsUser" in result.stderr and "schema" in result.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_of_both_charts_validates(
    dagster_objects: list[dict[str, Any]], platform_objects: list[dict[str, Any]], version: str
) -> None:
    for obj in dagster_objects + platform_objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_every_pod_of_both_charts_meets_pod_security_restricted(
    dagster_objects: list[dict[str, Any]], platform_objects: list[dict[str, Any]]
) -> None:
    pods = pod_specs(dagster_objects) + pod_specs(platform_objects)
    names = {name for name, _ in pods}
    assert {"Deployment/dagster-dagster-webserver", "Deployment/dagster-daemon"} <= names
    assert {"Deployment/codex-k8s", "Deployment/codex-k8s-mcp", "Job/codex-k8s-migrate"} <= names
    problems = {name: restricted_violations(spec) for name, spec in pods}
    assert {name: found for name, found in problems.items() if found} == {}


def test_webserver_and_daemon_have_resources_probes_and_no_root_init_container(
    dagster_objects: list[dict[str, Any]],
) -> None:
    for name, spec in pod_specs(dagster_objects):
        assert not spec.get("initContainers"), name  # the chart's check-db-ready runs postgres:14.6 as root
        for container in spec["containers"]:
            resources = container.get("resources") or {}
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), name  # not BestEffort
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), name
            assert container.get("livenessProbe") and container.get("readinessProbe"), name
    daemon = dict(pod_specs(dagster_objects))["Deployment/dagster-daemon"]["containers"][0]
    assert daemon["livenessProbe"]["exec"]["command"] == ["dagster-daemon", "liveness-check"]


def _instance(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "dagster-instance"]
    return yaml.safe_load(config_map["data"]["dagster.yaml"])


def test_the_instance_keeps_step_output_and_does_not_pretend_to_retry(dagster_objects: list[dict[str, Any]]) -> None:
    instance = _instance(dagster_objects)
    assert instance["compute_logs"]["class"] == "S3ComputeLogManager"
    assert instance.get("run_retries", {"enabled": False})["enabled"] is False
    monitoring = instance["run_monitoring"]
    assert monitoring["enabled"] is True and monitoring["max_resume_run_attempts"] == 0
    launcher = instance["run_launcher"]["config"]
    assert "codexk8s-compute-logs" in launcher["env_secrets"]  # the run pods upload their step output


def test_run_limits_rendered_by_the_official_chart_equal_the_platform_charts(
    dagster_objects: list[dict[str, Any]], platform_objects: list[dict[str, Any]]
) -> None:
    """One place for run limits in effect: the queue the daemon enforces equals what the platform configuration
    (our chart's platformConfig.concurrency) says; a change to one without the other fails here."""
    (config_map,) = [
        o for o in platform_objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config")
    ]
    platform = parse_config(config_map["data"]["codexk8s.yaml"], "codexk8s.yaml")
    expected = run_queue(platform)["config"]
    coordinator = _instance(dagster_objects)["run_coordinator"]
    # The daemon's queue is the platform's coordinator, which also tags runs launched by hand from the UI.
    assert (coordinator["module"], coordinator["class"]) == ("codexk8s_pipelines.run_tags", "PlatformRunCoordinator")
    images = {name: spec["containers"][0]["image"] for name, spec in pod_specs(dagster_objects + platform_objects)}
    # ... which the webserver (Launchpad, Materialize) and the daemon import: they run the platform's image.
    platform_image = images["Deployment/codex-k8s"]
    assert images["Deployment/dagster-dagster-webserver"] == images["Deployment/dagster-daemon"] == platform_image
    rendered = coordinator["config"]
    assert rendered["max_concurrent_runs"] == expected["max_concurrent_runs"]
    as_set = lambda limits: {json.dumps(x, sort_keys=True) for x in limits}  # noqa: E731
    assert as_set(rendered["tag_concurrency_limits"]) == as_set(expected["tag_concurrency_limits"])


def test_the_instance_purges_old_sensor_and_schedule_ticks_as_the_generated_one_does(
    dagster_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Two sensors tick every 3 s, each tick row with the sensor's cursor: the chart's default kept skipped sensor
    ticks 7 days and every other tick forever. The rendered instance passes Dagster's own schema."""
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(_instance(dagster_objects)))
    config, _ = dagster_instance_config(str(tmp_path))
    for kind in (InstigatorType.SENSOR, InstigatorType.SCHEDULE):
        assert tick_days(dict(config), kind) == TICK_RETENTION_DAYS
