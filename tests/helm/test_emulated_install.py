"""What a first install creates at run time, through a Kubernetes API emulator (kmock), from the chart's own
rendered environment: a stage run's Job (built by dagster-k8s from the run's tags and the code location's
container context) carries its deadline, and the agent pod of that run gets the model key (a Secret reference)
and the MCP server's URL. No kubelet runs here: the objects are created and read back as the API stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job

from codexk8s_pipelines import settings
from codexk8s_pipelines.agents.catalog import load_catalog
from codexk8s_pipelines.agents.k8s_runtime import build_pod_meta, build_pod_spec, runtime_from_environment
from codexk8s_pipelines.agents.runner_spec import RunnerSpec
from codexk8s_pipelines.delivery.stage_jobs import (
    JOB_DEADLINE_GRACE_SECONDS,
    MAX_RUNTIME_TAG,
    StageRunConfig,
    stage_run_tags,
)
from codexk8s_pipelines.domain.stages import Role, WriteScope
from tests.agents_k8s.conftest import kmock_kubeconfig

from .test_dagster_chart import CHART, NAMESPACE, _objects, _template

RELEASE = "codex-k8s"


@pytest.fixture
def api_client(tmp_path: Path) -> Iterator[kubernetes.client.ApiClient]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kmock", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def start() -> kmock.KubernetesEmulator:
        emulator = await stack.enter_async_context(kmock.KubernetesEmulator())
        await stack.enter_async_context(kmock.Server(emulator))
        emulator.resources["v1/pods"] = {}
        emulator.resources["batch/v1/jobs"] = {}
        return emulator

    emulator = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    kubeconfig = kmock_kubeconfig(tmp_path / "kubeconfig", str(emulator.url))
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        client.close()
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def chart_objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    result: subprocess.CompletedProcess[str] = _template(CHART, RELEASE, tmp=tmp_path_factory.mktemp("helm"))
    assert result.returncode == 0, result.stderr
    return _objects(result.stdout)


def _code_location_env(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == RELEASE]
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def _run_config() -> StageRunConfig:
    return StageRunConfig(
        repository="acme/shop", correlation_key="acme/shop#7:run:dev:42", issue_number=7, stage="dev", role="dev",
        trigger_label="run:dev", model="gpt-5.4", reasoning="high",
    )  # fmt: skip


def test_the_run_job_carries_its_deadline(
    api_client: kubernetes.client.ApiClient, chart_objects: list[dict[str, Any]]
) -> None:
    import dagster as dg

    env = _code_location_env(chart_objects)
    tags = stage_run_tags(_run_config())
    run = dg.DagsterRun(job_name="stage_dev", tags=tags)
    # What K8sRunLauncher does: the code location's container context, merged with the run's tags.
    location = K8sContainerContext.create_from_config(json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"]))
    context = location.merge(K8sContainerContext.create_for_run(run, None, include_run_tags=True))  # type: ignore[arg-type]
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image=env["DAGSTER_CURRENT_IMAGE"]["value"], dagster_home="/opt/dagster"),
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-42",
        user_defined_k8s_config=context.run_k8s_config,  # env, volumes, security: the container context's
    )
    batch = kubernetes.client.BatchV1Api(api_client)
    body = api_client.sanitize_for_serialization(job)
    batch.create_namespaced_job(NAMESPACE, body, _request_timeout=10)
    stored = batch.read_namespaced_job("dagster-run-42", NAMESPACE, _request_timeout=10)
    assert stored.spec.active_deadline_seconds == int(tags[MAX_RUNTIME_TAG]) + JOB_DEADLINE_GRACE_SECONDS
    assert tags[MAX_RUNTIME_TAG] == str(120 * 60 + 30 * 60)  # dev: 120 minutes plus the margin
    pod = stored.spec.template.spec
    assert pod.security_context.run_as_non_root is True  # the chart's run-pod context came along
    (container,) = pod.containers
    names = {e.name for e in container.env}
    assert {settings.MCP_URL_VAR, settings.MCP_SECRET_VAR} <= names  # the database URL: the launcher's envSecrets


def test_the_agent_pod_gets_the_model_key_and_the_mcp_url(
    api_client: kubernetes.client.ApiClient, chart_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    env = _code_location_env(chart_objects)
    runtime = runtime_from_environment({k: e["value"] for k, e in env.items() if "value" in e})
    (config_map,) = [o for o in chart_objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config")]
    (tmp_path / "agents.yaml").write_text(config_map["data"]["agents.yaml"], encoding="utf-8")
    agent = load_catalog(tmp_path / "agents.yaml").for_role(Role.DEV)
    mcp_url = env[settings.MCP_URL_VAR]["value"]
    spec = RunnerSpec(
        remote_url="https://github.com/acme/shop.git", branch="codex/issue-7", workdir="/work/acme-shop",
        command=["codex", "exec", "-"], prompt_file="/work/prompt.md", write_scope=WriteScope.ANY_FILE,
        commit_message="dev: #7", author_name="codex-k8s agent", author_email="agent@users.noreply.github.com",
        env={settings.MCP_URL_VAR: mcp_url},
    )  # fmt: skip
    pod_spec = build_pod_spec(spec, agent, runtime, prompt="do it")
    meta = build_pod_meta(spec, agent, invocation_id="a" * 32)
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_pod(
        runtime.namespace,
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-7", **meta}, "spec": pod_spec},
    )
    stored = api_client.sanitize_for_serialization(core.read_namespaced_pod("agent-7", runtime.namespace))
    containers = stored["spec"].get("initContainers", []) + stored["spec"]["containers"]
    with_key = [c for c in containers if any(e["name"] == agent.endpoint.key_env for e in c.get("env", []))]
    assert len(with_key) == 1, [c["name"] for c in with_key]  # only the agent's container holds the key
    (key,) = [e for e in with_key[0]["env"] if e["name"] == agent.endpoint.key_env]
    reference = {"secretKeyRef": {"name": "codexk8s-model-keys", "key": "OPENAI_API_KEY"}}
    assert key == {"name": "OPENAI_API_KEY", "valueFrom": reference}
    runner_spec = next(e["value"] for e in with_key[0]["env"] if e["name"] == "CODEXK8S_RUNNER_SPEC")
    assert RunnerSpec.model_validate_json(runner_spec).env[settings.MCP_URL_VAR] == mcp_url
    assert mcp_url == f"http://{RELEASE}-mcp.{NAMESPACE}.svc:8765/mcp"
    assert "sk-" not in yaml.safe_dump(stored)  # a reference, never a value
