"""An agent cannot outlive its run, also when the run pod dies without running its `finally` (an OOM kill, a lost node,
SIGKILL): nothing owns the agent pod (it lives in another namespace), so the run status sensors, which Dagster's run
monitoring wakes once it marks the run failed (or cancelled), delete the pods labelled with that run's id in the
agent namespaces of the platform's settings, and audit it. Only that run's pods, only in those namespaces; without
credentials or against a refusing API server the tick goes on and says so."""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import kmock
import kubernetes
import pytest

from codexk8s_pipelines.agents.k8s_runtime import CORRELATION_TAG, KubernetesAgentRuntime, build_pod_meta
from codexk8s_pipelines.agents.runner_spec import RunnerSpec
from codexk8s_pipelines.agents.runtime import SubprocessAgentRuntime
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.kube import load_kube
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from sensors.run_status import report_outside_failure, stage_run_canceled_sensor
from tests.helpers import REPO_ROOT

from .conftest import KubeApi
from .test_k8s_runtime import CORRELATION_KEY, _agent, _run_in_op, _spec

NAMESPACE = "agents-test"  # where the runtime launches (KubeApi.runtime's)
OLD_NAMESPACE = "agents-batch"  # another agent namespace of the settings (the chart's agents.namespaces)
USER_NAMESPACE = "team-sandbox"  # a namespace the settings do not name
RUN_ID_LABEL = "dagster/run-id"  # as an operator selects a run's pods (docs/runbook.md)


@pytest.fixture(autouse=True)
def _no_github(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GitHub credentials: the report records and skips the comment (tests/delivery covers the comment)."""
    for name in ("CODEXK8S_GITHUB_TOKEN", "CODEXK8S_GITHUB_APP_ID", "CODEXK8S_GITHUB_APP_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)


def _runtime(kube_api: KubeApi) -> KubernetesAgentRuntime:
    return KubernetesAgentRuntime(
        namespace=NAMESPACE,
        agent_namespaces=[NAMESPACE, OLD_NAMESPACE],
        load_incluster_config=False,
        kubeconfig_file=str(kube_api.kubeconfig),
        poll_interval_seconds=0.05,
    )


def _worker(runtime: KubernetesAgentRuntime, spec: RunnerSpec, run_dir: Path) -> None:
    """The run pod's process: the stage op's agent step, following its agent pod until it is killed."""
    _run_in_op(runtime, spec, run_dir)


def _agent_pod(kube_api: KubeApi, namespace: str, name: str, run_id: str) -> None:
    """An agent pod labelled as the runtime labels its own (another run's, or one in another namespace)."""
    meta = build_pod_meta(_spec("/p"), _agent(), invocation_id=uuid.uuid4().hex, run_id=run_id)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        "spec": {"containers": [{"name": "agent-runner", "image": "agent:1", "command": ["sleep", "7200"]}]},
    }
    kube = load_kube(str(kube_api.kubeconfig))
    try:
        kubernetes.client.CoreV1Api(kube.api).create_namespaced_pod(namespace, body)
    finally:
        kube.api.close()


def _stage_run(store: PlatformStore, run_id: str, **tags: str) -> dg.DagsterRun:
    """The Dagster run of a stage as the platform started it, its record `running` (its op got that far)."""
    store.register_run(RunRecord(CORRELATION_KEY, "octo-org/octo-repo", role="dev", stage="dev", issue_number=42))
    store.set_run_status(CORRELATION_KEY, "running", dagster_run_id=run_id)
    run_tags = {CORRELATION_TAG: CORRELATION_KEY, "codexk8s/repository": "octo-org/octo-repo", "codexk8s/stage": "dev"}
    return dg.DagsterRun(job_name="stage_dev", run_id=run_id, tags={**run_tags, **tags})


def _events(store: PlatformStore, event_type: str) -> list[dict[str, Any]]:
    return [e for e in store.events(CORRELATION_KEY) if e["event_type"] == event_type]


@pytest.mark.timeout(120)
def test_a_killed_run_workers_agent_pod_is_deleted_when_the_run_is_reported_failed(
    kube_api: KubeApi,
    prompt_file: Path,
    tmp_path: Path,
    store: PlatformStore,
    fake_secrets: dict[str, dict[str, str]],
) -> None:
    kube_api.kubelet.behaviour = "hang"  # the agent works (Running) until its pod is deleted
    runtime = _runtime(kube_api)
    worker = multiprocessing.get_context("fork").Process(
        target=_worker, args=(runtime, _spec(prompt_file, timeout_seconds=7200), tmp_path / "run")
    )
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = kube_api.pods()
            if pods and next(iter(pods.values()))["last"]["status"].get("phase") == "Running":
                break
            time.sleep(0.1)
        (agent, pod), *_ = kube_api.pods().items()
        assert pod["last"]["status"]["phase"] == "Running"
        run_id = pod["created"]["metadata"]["labels"][RUN_ID_LABEL]
        time.sleep(1)  # the run is following the agent's log
    finally:
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)  # as an OOM kill or a lost node ends the run pod: no `finally`
        worker.join()

    # Pods that must be left alone: another run's agent, in the same namespace; this run's id on a pod in a
    # namespace the settings do not name (whatever the run's tags say). This run's pod in the other agent namespace
    # of the settings goes too.
    _agent_pod(kube_api, NAMESPACE, "another-runs-agent", run_id=str(uuid.uuid4()))
    _agent_pod(kube_api, USER_NAMESPACE, "outside-the-settings", run_id=run_id)
    _agent_pod(kube_api, OLD_NAMESPACE, "this-runs-older-agent", run_id=run_id)
    time.sleep(1)
    assert not kube_api.pods()[agent]["deleted"], "the killed worker deleted nothing: the agent still works"

    # Dagster's run monitoring marks the run failed; the failure sensor reports it.
    run = _stage_run(store, run_id, **{"dagster-k8s/config": json.dumps({"namespace": USER_NAMESPACE})})
    done = report_outside_failure(
        run, "failed", "run worker lost", GitHubResource(), PlatformDatabase(url=store.url), PlatformConfigResource(),
        runtime,
    )  # fmt: skip

    pods = kube_api.pods()
    assert pods[agent]["deleted"] and pods["this-runs-older-agent"]["deleted"]
    assert not pods["another-runs-agent"]["deleted"]
    assert not pods["outside-the-settings"]["deleted"]
    deletes = sorted(path for method, path, _ in kube_api.requests() if method == "DELETE")
    assert deletes == sorted(
        [
            f"/api/v1/namespaces/{NAMESPACE}/pods/{agent}",
            f"/api/v1/namespaces/{OLD_NAMESPACE}/pods/this-runs-older-agent",
        ]
    )
    assert f"deleted agent pod(s) {NAMESPACE}/{agent}, {OLD_NAMESPACE}/this-runs-older-agent" in done
    assert done.endswith(f"{CORRELATION_KEY}: recorded; no GitHub credentials to update the comment")

    (event,) = _events(store, "agent_pods.deleted")
    payload = event["payload"]
    assert payload["dagster_run_id"] == run_id
    assert payload["pods"] == [f"{NAMESPACE}/{agent}", f"{OLD_NAMESPACE}/this-runs-older-agent"]
    assert payload["namespaces"] == [NAMESPACE, OLD_NAMESPACE]
    text = json.dumps(payload)
    assert "not-a-secret" not in text  # the kubeconfig's token
    assert not any(value in text for secret in fake_secrets.values() for value in secret.values())
    assert store.get_run(CORRELATION_KEY)["status"] == "failed"  # type: ignore[index]
    assert _events(store, "run.failed.outside_ops")


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param({}, id="not-in-a-cluster"),
        # In a pod without a mounted token (the code location before the chart mounted it).
        pytest.param({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, id="no-token"),
    ],
)
def test_without_kubernetes_credentials_the_cancelled_sensor_still_reports_and_says_why(
    store: PlatformStore, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    run_id = str(uuid.uuid4())
    instance = dg.DagsterInstance.ephemeral()
    run = instance.add_run(_stage_run(store, run_id))
    context = dg.build_run_status_sensor_context(
        sensor_name=stage_run_canceled_sensor.name,
        dagster_event=instance.report_run_canceled(run),
        dagster_instance=instance,
        dagster_run=run,
        resources={
            "github": GitHubResource(),
            "platform_db": PlatformDatabase(url=store.url),
            "platform_config": PlatformConfigResource(),
            "agent_runtime": KubernetesAgentRuntime(namespace=NAMESPACE),  # in-cluster, as the chart runs it
        },
    )

    stage_run_canceled_sensor(context)  # does not raise

    assert store.get_run(CORRELATION_KEY)["status"] == "canceled"  # type: ignore[index]
    assert _events(store, "run.canceled")
    (event,) = _events(store, "agent_pods.delete_failed")
    assert event["payload"]["dagster_run_id"] == run_id
    assert event["payload"]["pods"] == [] and event["payload"]["pods_left"] == []
    (error,) = event["payload"]["errors"]
    assert error.startswith("no Kubernetes credentials from the in-cluster service account: ")


@pytest.mark.timeout(60)
def test_a_refused_deletion_is_audited_with_the_pod_left_and_the_tick_goes_on(
    kube_api: KubeApi, store: PlatformStore
) -> None:
    kube_api.kubelet.behaviour = "hang"
    run_id = str(uuid.uuid4())
    _agent_pod(kube_api, NAMESPACE, "refused-agent", run_id=run_id)
    error = kmock.KubernetesError(status=403, reason="Forbidden", message='pods "refused-agent" is forbidden')

    def forbid() -> None:  # ahead of the emulator's own deletion
        _ = (kube_api.emulator**100)[kmock.action.DELETE, kmock.resource("v1/pods")] << error

    kube_api.call(forbid)
    done = report_outside_failure(
        _stage_run(store, run_id), "failed", "run worker lost", GitHubResource(), PlatformDatabase(url=store.url),
        PlatformConfigResource(), _runtime(kube_api),
    )  # fmt: skip

    # (kmock's store marks the pod deleted whatever the answer was: what the client was told is what counts.)
    assert f"NOT deleted {NAMESPACE}/refused-agent" in done and "403 Forbidden" in done
    (event,) = _events(store, "agent_pods.delete_failed")
    assert event["payload"]["pods_left"] == [f"{NAMESPACE}/refused-agent"]
    assert event["payload"]["errors"] == [
        f'delete {NAMESPACE}/refused-agent: 403 Forbidden: pods "refused-agent" is forbidden'
    ]
    assert store.get_run(CORRELATION_KEY)["status"] == "failed"  # type: ignore[index]


def test_local_runs_delete_nothing_and_say_so() -> None:
    text = SubprocessAgentRuntime().end_run_agents("a1b2c3d4").text()
    assert text == (
        "agents of run a1b2c3d4: nothing deleted, agents run as local processes here, not Kubernetes pods: there is"
        " no pod to delete"
    )


def test_a_run_id_that_is_not_a_label_value_is_not_looked_up() -> None:
    cleanup = KubernetesAgentRuntime(namespace=NAMESPACE).end_run_agents("a,b!=c")
    assert cleanup.deleted == () and cleanup.errors == ("run id 'a,b!=c' is not a label value: not looked up",)


def test_agent_namespaces_come_from_the_settings_and_must_be_namespace_names() -> None:
    from codexk8s_pipelines.agents.k8s_runtime import runtime_from_environment

    env = {"CODEXK8S_K8S_NAMESPACE": "agents-a", "CODEXK8S_K8S_AGENT_NAMESPACES": "agents-a, agents-b,"}
    assert runtime_from_environment(env).cleanup_namespaces() == ("agents-a", "agents-b")
    assert runtime_from_environment({"CODEXK8S_K8S_NAMESPACE": "agents-a"}).cleanup_namespaces() == ("agents-a",)
    with pytest.raises(ValueError, match="'Agents_B' is not a namespace name"):
        runtime_from_environment({"CODEXK8S_K8S_AGENT_NAMESPACES": "Agents_B"})


# The code location mounts its service account token (the chart) for the clean-up above; nothing else it runs (its
# sensors and schedules: ops and assets run in run pods) may reach the Kubernetes API.
_KUBERNETES_MODULES = ("kubernetes", "dagster_k8s", "codexk8s_pipelines.kube", "codexk8s_pipelines.agents.k8s_runtime")


def test_the_code_server_uses_the_kubernetes_api_only_to_end_a_runs_agents() -> None:
    from codexk8s_pipelines import settings
    from codexk8s_pipelines.definitions import build_definitions

    for path in sorted([*(REPO_ROOT / "sensors").rglob("*.py"), *(REPO_ROOT / "schedules").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(_KUBERNETES_MODULES), f"{path.name} imports {name}"
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "agent_runtime"
            ):
                assert node.attr == "end_run_agents", f"{path.name} calls agent_runtime.{node.attr}"

    repository = build_definitions(settings.Environment.KUBERNETES).get_repository_def()
    users = {s.name for s in repository.sensor_defs if "agent_runtime" in s.required_resource_keys}
    assert users == {"stage_run_failure_sensor", "stage_run_canceled_sensor"}
    assert not [s.name for s in repository.schedule_defs if "agent_runtime" in s.required_resource_keys]
