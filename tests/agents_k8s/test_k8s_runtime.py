"""The Kubernetes runtime: the pod it builds is valid and secret-free, and a run through the real kubernetes
client and dagster-k8s against an emulated API server returns the runner's result on every path out."""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import dagster as dg
import kmock
import kubernetes_validate
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster_k8s.pipes import PipesK8sPodLogsMessageReader
from pydantic import ValidationError

from codexk8s_pipelines import settings
from codexk8s_pipelines.agents.catalog import AgentSpec
from codexk8s_pipelines.agents.k8s_runtime import (
    CORRELATION_TAG,
    INVOCATION_LABEL,
    SPEC_ENV_VAR,
    KubernetesAgentRuntime,
    PodSpecError,
    build_pod_meta,
    build_pod_spec,
    default_agent,
    label_value,
    runtime_from_environment,
)
from codexk8s_pipelines.agents.runner_spec import TOKEN_ENV_VAR, RunnerResult, RunnerSpec
from codexk8s_pipelines.agents.runtime import with_agent_limits
from codexk8s_pipelines.domain.stages import Role, WriteScope
from codexk8s_pipelines.kube import quantity

from .conftest import PROMPT, KubeApi

SCHEMA_VERSION = kubernetes_validate.latest_version()
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CORRELATION_KEY = "octo-org/octo-repo#42:run:dev:delivery-0123456789abcdef"
LOCAL_WORKDIR = "/home/dagster/.codexk8s/work/octo-org-octo-repo"


def _agent() -> AgentSpec:
    return AgentSpec(
        name="dev",
        role=Role.DEV,
        image="ghcr.io/codex-k8s/agent-runner:1.2.3",
        cpu="1500m",
        memory="3Gi",
        timeout_minutes=30,
        env_from_secrets={"OPENAI_API_KEY": "openai/api-key"},
    )


def _spec(prompt_file: Path | str, timeout_seconds: int = 1800) -> RunnerSpec:
    agent = _agent()
    return RunnerSpec(
        remote_url="https://github.com/octo-org/octo-repo.git",
        branch="codex/issue-42",
        workdir=LOCAL_WORKDIR,
        command=agent.render_command(None, None, LOCAL_WORKDIR, prompt_file),
        prompt_file=str(prompt_file),
        write_scope=WriteScope.ANY_FILE,
        commit_message="dev: #42 add a health endpoint",
        author_name="codex-k8s agent",
        author_email="codexk8s-agent@users.noreply.github.com",
        timeout_seconds=timeout_seconds,
    )


def _manifest(pod_spec: dict[str, Any], meta: dict[str, Any], name: str = "agent-pod") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **meta}, "spec": pod_spec}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container["env"]}


def assert_pod_security_restricted(pod_spec: dict[str, Any]) -> None:
    """The Pod Security Standard "restricted" profile, every rule that applies to this pod's fields."""
    pod_ctx = pod_spec["securityContext"]
    assert pod_ctx["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
    assert not pod_spec.get("hostNetwork") and not pod_spec.get("hostPID") and not pod_spec.get("hostIPC")
    for volume in pod_spec["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "configMap", "secret", "projected", "persistentVolumeClaim"}
    for container in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, container["name"]
        assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add"), container["name"]
        assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, container["name"]
        assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) != 0, container["name"]
        assert not ctx.get("privileged"), container["name"]
        assert not any("hostPort" in port for port in container.get("ports", [])), container["name"]


# ------------------------------------------------------------------------------------------------ pod spec


@pytest.mark.timeout(30)
def test_pod_spec_is_a_valid_restricted_pod_without_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_token = "ghp_" + "Z" * 36
    monkeypatch.setenv(TOKEN_ENV_VAR, fake_token)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-a-pod")
    runtime = KubernetesAgentRuntime(token_secret_name="gh-push", token_secret_key="pat")
    spec = _spec("/tmp/run-1/prompt.md")

    pod_spec = build_pod_spec(spec, _agent(), runtime, prompt=PROMPT)
    meta = build_pod_meta(
        spec, _agent(), invocation_id="f" * 32, run_id="1b2c3d4e-0000", correlation_key=CORRELATION_KEY
    )
    manifest = _manifest(pod_spec, meta)

    kubernetes_validate.validate(manifest, SCHEMA_VERSION, strict=True)  # raises on any schema violation
    assert_pod_security_restricted(pod_spec)
    checkout, agent = pod_spec["initContainers"]
    (runner,) = pod_spec["containers"]
    assert [checkout["name"], agent["name"], runner["name"]] == ["checkout", "agent", "agent-runner"]
    assert {c["image"] for c in (checkout, agent, runner)} == {"ghcr.io/codex-k8s/agent-runner:1.2.3"}
    # The agent's limits are the catalog entry's; the runner's own steps are small.
    assert agent["resources"] == {
        "requests": {"cpu": "1500m", "memory": "3Gi", "ephemeral-storage": "4Gi"},
        "limits": {"cpu": "1500m", "memory": "3Gi", "ephemeral-storage": "24Gi"},  # its 4Gi and both 10Gi volumes
    }
    assert runner["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "21Gi"}
    assert pod_spec["activeDeadlineSeconds"] == 1800 + 300
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["shareProcessNamespace"] is False
    assert pod_spec["serviceAccountName"] == "codexk8s-agent"
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "fsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The agent under its own uid, the runner's steps under another.
    assert (checkout["securityContext"]["runAsUser"], runner["securityContext"]["runAsUser"]) == (1000, 1000)
    assert agent["securityContext"]["runAsUser"] == agent["securityContext"]["runAsGroup"] == 1001
    workspace = {"name": "workspace", "mountPath": "/workspace"}
    assert checkout["volumeMounts"] == runner["volumeMounts"] == [workspace, {"name": "runner", "mountPath": "/runner"}]
    assert agent["volumeMounts"] == [workspace, {"name": "runner", "mountPath": "/runner", "readOnly": True}]
    # The token's containers start in the runner's volume, not in the image's /workspace, which the agent writes.
    assert checkout["workingDir"] == runner["workingDir"] == "/runner" and "workingDir" not in agent
    # Bounded disk: over it the kubelet evicts this pod alone, not every pod of a node whose disk filled up.
    assert pod_spec["volumes"] == [
        {"name": "workspace", "emptyDir": {"sizeLimit": "10Gi"}},
        {"name": "runner", "emptyDir": {"sizeLimit": "10Gi"}},
    ]
    # The kubelet evicts a pod whose whole use (layers and emptyDirs) passes max(its app containers' limits added up,
    # its biggest init container's limit): that must hold both full volumes and the largest container's own layer,
    # or a pod with a checkout of 4Gi is evicted though every bound it was given holds.
    limits = {c["name"]: quantity(c["resources"]["limits"]["ephemeral-storage"]) for c in (checkout, agent, runner)}
    pod_limit = max(limits["agent-runner"], limits["checkout"], limits["agent"])  # one app container, two init ones
    volumes = sum(quantity(v["emptyDir"]["sizeLimit"]) for v in pod_spec["volumes"])
    own = max(quantity(c["resources"]["requests"]["ephemeral-storage"]) for c in (checkout, agent, runner))
    assert pod_limit >= volumes + own
    for container, phase in ((checkout, "prepare"), (agent, "agent"), (runner, "finish")):
        assert container["command"][:2] == ["sh", "-c"]
        assert (
            f"exec python -I -u -m codexk8s_pipelines.agents.runner --phase {phase} --spec /tmp/spec.json"
            in (container["command"][2])
        )

    token_ref = {"name": TOKEN_ENV_VAR, "valueFrom": {"secretKeyRef": {"name": "gh-push", "key": "pat"}}}
    assert _env(checkout)[TOKEN_ENV_VAR] == _env(runner)[TOKEN_ENV_VAR] == token_ref
    assert TOKEN_ENV_VAR not in _env(agent)  # the agent's container never holds the GitHub token
    assert "OPENAI_API_KEY" not in _env(checkout) and "OPENAI_API_KEY" not in _env(runner)
    # The finish step gets the agent's key again under a name no agent reads, to redact it and refuse a push of it.
    kept_out = {"name": "CODEXK8S_AGENT_SECRET_0", "valueFrom": {"secretKeyRef": {"name": "openai", "key": "api-key"}}}
    assert _env(runner)["CODEXK8S_AGENT_SECRET_0"] == kept_out
    assert not [n for c in (checkout, agent) for n in _env(c) if n.startswith("CODEXK8S_AGENT_SECRET_")]
    env = _env(agent)
    assert env["OPENAI_API_KEY"] == {
        "name": "OPENAI_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "openai", "key": "api-key"}},
    }
    assert env["CODEXK8S_PROMPT"]["value"] == PROMPT
    assert "CODEXK8S_PROMPT" not in _env(runner)
    pod_runner_spec = RunnerSpec.model_validate_json(env["CODEXK8S_RUNNER_SPEC"]["value"])
    assert pod_runner_spec.workdir == "/workspace/checkout"
    assert pod_runner_spec.git_dir == "/runner/git"
    assert pod_runner_spec.prompt_file == "/workspace/prompt.md"
    assert pod_runner_spec.command[pod_runner_spec.command.index("--cd") + 1] == "/workspace/checkout"
    assert pod_runner_spec.model_dump(exclude={"workdir", "prompt_file", "command", "git_dir"}) == spec.model_dump(
        exclude={"workdir", "prompt_file", "command", "git_dir"}
    )

    text = json.dumps(manifest)
    assert fake_token not in text
    assert "sk-never-in-a-pod" not in text
    assert LOCAL_WORKDIR not in text  # the op's paths mean nothing in the pod


@pytest.mark.timeout(30)
def test_labels_are_valid_label_values_and_keep_long_keys_apart() -> None:
    long_a = "an-org-with-a-long-name/a-repository-with-a-long-name#1234:run:dev:aaaaaaaaaaaaaaaa"
    long_b = long_a[:-1] + "b"
    for raw in (CORRELATION_KEY, long_a, "#:/", "-leading.and.trailing_", "ok"):
        value = label_value(raw)
        assert len(value) <= 63 and LABEL_VALUE.match(value), (raw, value)
    assert label_value(long_a) != label_value(long_b)
    assert label_value("octo/repo#1:run:dev:9") == "octo-repo-1-run-dev-9"

    meta = build_pod_meta(_spec("/p"), _agent(), invocation_id="abc", run_id="r-1", correlation_key=long_a)
    assert meta["annotations"]["codexk8s.io/correlation-key"] == long_a  # verbatim where any text is allowed
    kubernetes_validate.validate(
        _manifest(build_pod_spec(_spec("/p"), _agent(), KubernetesAgentRuntime()), meta), SCHEMA_VERSION, strict=True
    )


@pytest.mark.timeout(30)
def test_a_prompt_too_large_for_the_pod_fails_the_precondition_before_kubernetes_is_called(tmp_path: Path) -> None:
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("x" * 200_000, encoding="utf-8")
    spec = _spec(prompt_file)
    with pytest.raises(PodSpecError, match="CODEXK8S_PROMPT"):
        build_pod_spec(spec, _agent(), KubernetesAgentRuntime(), prompt=prompt_file.read_text())

    # No kubeconfig anywhere: reaching Kubernetes would fail differently.
    runtime = KubernetesAgentRuntime(load_incluster_config=False, kubeconfig_file=str(tmp_path / "missing"))
    result = runtime.run(dg.build_op_context(), spec, tmp_path / "run", _agent())
    assert (result.status, result.reason) == ("failed_precondition", "prompt_too_large")
    assert prompt_file.exists()  # not the run's own copy: left where the caller keeps it
    # The run's own prompt (issue text) does not outlive the step on this path either.
    run_dir = tmp_path / "run2"
    run_dir.mkdir()
    own = run_dir / "prompt.md"
    own.write_text("x" * 200_000, encoding="utf-8")
    result = runtime.run(dg.build_op_context(), _spec(own), run_dir, _agent())
    assert (result.reason, own.exists()) == ("prompt_too_large", False)


@pytest.mark.timeout(30)
def test_settings_come_from_the_environment_and_the_default_agent_builds_a_valid_pod() -> None:
    runtime = runtime_from_environment(
        {"CODEXK8S_K8S_NAMESPACE": "agents-prod", "CODEXK8S_K8S_TOKEN_SECRET": "gh-app-token", "UNRELATED": "x"}
    )
    assert (runtime.namespace, runtime.token_secret_name, runtime.service_account) == (
        "agents-prod",
        "gh-app-token",
        "codexk8s-agent",
    )
    pod_spec = build_pod_spec(_spec("/p"), default_agent(), runtime)
    kubernetes_validate.validate(_manifest(pod_spec, {}), SCHEMA_VERSION, strict=True)
    assert pod_spec["containers"][0]["image"] == default_agent().image

    # The token's containers may run an image of their own (pinned by digest), and the disk bounds are settings.
    pinned = "ghcr.io/codex-k8s/agent-runner@sha256:" + "a" * 64
    runtime = runtime_from_environment(
        {
            "CODEXK8S_K8S_RUNNER_IMAGE": pinned,
            "CODEXK8S_K8S_WORKSPACE_SIZE": "20Gi",
            "CODEXK8S_K8S_AGENT_EPHEMERAL_STORAGE": "8Gi",
        }
    )
    pod_spec = build_pod_spec(_spec("/p"), default_agent(), runtime)
    checkout, agent = pod_spec["initContainers"]
    assert checkout["image"] == pod_spec["containers"][0]["image"] == pinned != agent["image"]
    assert pod_spec["volumes"][0] == {"name": "workspace", "emptyDir": {"sizeLimit": "20Gi"}}
    assert (agent["resources"]["requests"]["ephemeral-storage"], agent["resources"]["limits"]["ephemeral-storage"]) == (
        "8Gi",
        "48Gi",
    )


@pytest.mark.parametrize("value", ["10 GB", "-1Gi", "0", "lots", "inf"])
def test_a_disk_bound_that_is_not_a_quantity_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValidationError, match=r"workspace_size_limit: .* is not a positive Kubernetes quantity"):
        runtime_from_environment({"CODEXK8S_K8S_WORKSPACE_SIZE": value})


# ------------------------------------------------------------------------------------------------ against kmock


def _runtime(kube_api: KubeApi) -> KubernetesAgentRuntime:
    return KubernetesAgentRuntime(
        namespace="agents-test",
        load_incluster_config=False,
        kubeconfig_file=str(kube_api.kubeconfig),
        poll_interval_seconds=0.05,
    )


def _run_in_op(runtime: KubernetesAgentRuntime, spec: RunnerSpec, run_dir: Path) -> RunnerResult:
    """`runtime.run` inside a real op of a real job, as the stage job calls it."""
    seen: dict[str, RunnerResult] = {}

    @dg.op
    def run_agent(context: dg.OpExecutionContext, agent_runtime: KubernetesAgentRuntime) -> None:
        seen["result"] = agent_runtime.run(context, spec, run_dir, _agent())

    @dg.job
    def agent_job() -> None:
        run_agent()

    outcome = agent_job.execute_in_process(
        resources={"agent_runtime": runtime}, tags={CORRELATION_TAG: CORRELATION_KEY}
    )
    assert outcome.success
    return seen["result"]


def _only_pod(kube_api: KubeApi) -> tuple[str, dict[str, Any]]:
    pods = kube_api.pods()
    assert len(pods) == 1, pods
    return next(iter(pods.items()))


@pytest.mark.timeout(90)
def test_run_creates_the_built_pod_and_returns_the_runners_pipes_result(
    kube_api: KubeApi, fake_secrets: dict[str, dict[str, str]], prompt_file: Path, tmp_path: Path
) -> None:
    runtime = _runtime(kube_api)
    mcp_token = "mcp-run-token-" + "7" * 24  # as stage_jobs hands the run's MCP access to its agent
    mcp = {settings.MCP_TOKEN_VAR: mcp_token, settings.MCP_URL_VAR: "http://codexk8s-mcp.codexk8s.svc:8765/mcp"}
    spec = _spec(prompt_file).model_copy(update={"env": mcp, "pass_env": [settings.MCP_TOKEN_VAR]})
    kube_api.kubelet.behaviour = "succeed"

    result = _run_in_op(runtime, spec, tmp_path / "run")

    assert (result.status, result.reason, result.commit, result.pushed) == ("succeeded", "ok", "0123abc", True)
    facts = json.loads(result.summary or "{}")
    assert facts["via_pipes"] is True  # the runner found the Pipes context PipesK8sClient injected
    assert facts["workdir"] == "/workspace/checkout"
    assert facts["prompt_file"] == "/workspace/prompt.md"
    token = fake_secrets["codexk8s-github"]["token"]
    token_sha = hashlib.sha256(token.encode()).hexdigest()
    assert facts["token_sha256"] == token_sha  # resolved from the secretKeyRef, for the push
    assert facts["prompt"] is None and facts["openai_sha256"] is None  # the verify-and-push step needs neither
    openai = fake_secrets["openai"]["api-key"]
    # The init containers ran first, in order: the checkout (with the token), then the agent (without it).
    checkout, agent = facts["init"]["checkout"], facts["init"]["agent"]
    assert checkout["after"] == [] and agent["after"] == ["checkout.json"]
    assert checkout["token_sha256"] == token_sha and checkout["openai_sha256"] is None
    assert agent["token_sha256"] is None and "CODEXK8S_GITHUB_TOKEN" not in agent["env"]
    assert agent["openai_sha256"] == hashlib.sha256(openai.encode()).hexdigest()
    assert agent["prompt"] == PROMPT
    # The run's MCP token reached the agent container from its Secret, and no container's spec carries it.
    mcp_sha = hashlib.sha256(mcp_token.encode()).hexdigest()
    assert (agent["mcp_sha256"], agent["spec_mcp_sha256"]) == (mcp_sha, None)
    assert (checkout["mcp_sha256"], checkout["spec_mcp_sha256"]) == (None, None)

    name, pod = _only_pod(kube_api)
    assert pod["namespace"] == "agents-test"
    assert pod["deleted"], "the pod is deleted once the run is over"
    created = pod["created"]
    # What reached the API server is build_pod_spec's pod, plus only the Pipes bootstrap variables.
    # The runtime applies the catalog entry to the spec first, as the local one does: its declared variables
    # are passed to the agent (they were dropped in the pod before), its memory is the agent's cap.
    limited = with_agent_limits(spec, _agent())
    assert "OPENAI_API_KEY" in limited.pass_env
    (secret_name, secret), *others = kube_api.objects("secrets").items()
    assert others == [] and secret_name.startswith("codexk8s-mcp-")
    expected = build_pod_spec(limited, _agent(), runtime, prompt=PROMPT, mcp_secret=secret_name)
    sent_all = [*created["spec"]["initContainers"], *created["spec"]["containers"]]
    built_all = [*expected["initContainers"], *expected["containers"]]
    assert [c["name"] for c in sent_all] == [c["name"] for c in built_all] == ["checkout", "agent", "agent-runner"]
    for sent, built in zip(sent_all, built_all, strict=True):
        pipes_env = [e for e in sent["env"] if e["name"].startswith("DAGSTER_PIPES_")]
        assert {e["name"] for e in pipes_env} == {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"}
        assert [e for e in sent["env"] if e not in pipes_env] == built["env"]
        assert {**sent, "env": built["env"]} == built
    assert {k: v for k, v in created["spec"].items() if k not in ("containers", "initContainers")} == {
        k: v for k, v in expected.items() if k not in ("containers", "initContainers")
    }
    labels = created["metadata"]["labels"]
    assert labels["codexk8s.io/correlation-key"] == label_value(CORRELATION_KEY)
    assert labels["codexk8s.io/agent"] == "dev" and INVOCATION_LABEL in labels
    assert created["metadata"]["annotations"]["codexk8s.io/correlation-key"] == CORRELATION_KEY
    # The recorded manifest is a valid Pod (PipesK8sClient's body carries no apiVersion/kind; the URL says it).
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **created}, SCHEMA_VERSION, strict=True)
    text = json.dumps(created)
    assert token not in text and openai not in text and mcp_token not in text  # readable by pod listers
    assert ("DELETE", f"/api/v1/namespaces/agents-test/pods/{name}", {}) in kube_api.requests()
    # The run's MCP token: in a Secret of the run, referenced by the agent container only, created once the pod is,
    # with the pod as its owner (it goes with the pod); the run asks nothing else of secrets.
    specs = {c["name"]: RunnerSpec.model_validate_json(_env(c)[SPEC_ENV_VAR]["value"]) for c in built_all}
    assert all(settings.MCP_TOKEN_VAR not in s.env for s in specs.values())
    assert specs["agent"].pass_env == limited.pass_env and settings.MCP_TOKEN_VAR in specs["agent"].pass_env
    assert specs["agent-runner"].env[settings.MCP_URL_VAR] == mcp[settings.MCP_URL_VAR]
    ref = {"secretKeyRef": {"name": secret_name, "key": "token"}}
    assert _env(sent_all[1])[settings.MCP_TOKEN_VAR] == {"name": settings.MCP_TOKEN_VAR, "valueFrom": ref}
    assert all(settings.MCP_TOKEN_VAR not in _env(c) for c in (sent_all[0], sent_all[2]))
    assert secret["namespace"] == "agents-test"
    assert secret["created"]["stringData"] == {"token": mcp_token} and secret["created"]["immutable"] is True
    assert secret["created"]["metadata"]["labels"][INVOCATION_LABEL] == labels[INVOCATION_LABEL]
    (owner,) = secret["created"]["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", name, pod["last"]["metadata"]["uid"])
    kubernetes_validate.validate(secret["created"], SCHEMA_VERSION, strict=True)
    asked = [(method, path) for method, path, _ in kube_api.requests() if "/secrets" in path]
    assert asked == [("POST", "/api/v1/namespaces/agents-test/secrets")]
    kept = (tmp_path / "run" / "pod-spec.json").read_text()
    assert mcp_token not in kept and token not in kept and openai not in kept
    assert json.loads(kept) == expected


@pytest.mark.timeout(90)
def test_a_refused_mcp_token_secret_fails_the_run_and_deletes_its_pod(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path
) -> None:
    """Without RBAC for secrets in the agent namespace the run fails at once, saying what the Role lacks, and its
    pod (created just before) is deleted."""
    runtime = _runtime(kube_api)
    mcp = {settings.MCP_TOKEN_VAR: "mcp-run-token-" + "8" * 24, settings.MCP_URL_VAR: "http://mcp:8765/mcp"}
    spec = _spec(prompt_file).model_copy(update={"env": mcp, "pass_env": [settings.MCP_TOKEN_VAR]})
    error = kmock.KubernetesError(status=403, reason="Forbidden", message="secrets is forbidden")

    def forbid() -> None:
        kube_api.emulator[kmock.action.CREATE, kmock.resource("v1/secrets")] << error

    kube_api.call(forbid)
    result = _run_in_op(runtime, spec, tmp_path / "run")
    assert (result.status, result.reason) == ("failed", "pod_failed")
    assert "could not create the Secret with the run's MCP token in namespace 'agents-test': 403" in result.message
    assert "the launcher's Role needs secrets create there" in (result.message or "")
    (pod,) = kube_api.pods().values()
    assert pod["deleted"]


@pytest.mark.timeout(90)
def test_a_failed_pod_still_returns_the_result_the_runner_reported(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path
) -> None:
    kube_api.kubelet.behaviour = "fail"  # runs, reports `failed`, exits 1: PipesK8sClient raises

    result = _run_in_op(_runtime(kube_api), _spec(prompt_file), tmp_path / "run")

    assert (result.status, result.reason, result.agent_exit_code) == ("failed", "agent_failed", 1)
    name, pod = _only_pod(kube_api)
    assert pod["deleted"]
    log_reads = [query for method, path, query in kube_api.requests() if path.endswith(f"/pods/{name}/log")]
    assert log_reads[0] == {"follow": "True", "timestamps": "True"}
    assert {"container": "agent-runner", "tailLines": "200"} not in log_reads, "the followed stream had the result"


@pytest.mark.timeout(90)
def test_a_pod_that_failed_before_its_logs_were_followed_is_read_back(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path
) -> None:
    # The container ends before the first status poll sees it running: dagster-k8s raises without reading logs.
    kube_api.kubelet.behaviour = "fail_fast"

    result = _run_in_op(_runtime(kube_api), _spec(prompt_file), tmp_path / "run")

    assert (result.status, result.reason) == ("failed", "agent_failed"), result.message
    name, pod = _only_pod(kube_api)
    assert pod["deleted"]
    log_reads = [query for method, path, query in kube_api.requests() if path.endswith(f"/pods/{name}/log")]
    assert {"container": "agent-runner", "tailLines": "200"} in log_reads, "read back after the failure"


@pytest.mark.timeout(90)
def test_a_crash_without_a_result_is_pod_failed_with_the_log_tail_redacted(
    kube_api: KubeApi, fake_secrets: dict[str, dict[str, str]], prompt_file: Path, tmp_path: Path
) -> None:
    kube_api.kubelet.behaviour = "crash"  # prints the token in a traceback and exits 3, no Pipes at all

    result = _run_in_op(_runtime(kube_api), _spec(prompt_file), tmp_path / "run")

    assert (result.status, result.reason, result.branch) == ("failed", "pod_failed", "codex/issue-42")
    assert "git push refused for [redacted]" in result.message
    assert fake_secrets["codexk8s-github"]["token"] not in result.message
    assert _only_pod(kube_api)[1]["deleted"]


@pytest.mark.timeout(90)
def test_a_pod_past_its_deadline_is_timed_out(kube_api: KubeApi, prompt_file: Path, tmp_path: Path) -> None:
    kube_api.kubelet.behaviour = "deadline"

    result = _run_in_op(_runtime(kube_api), _spec(prompt_file), tmp_path / "run")

    assert (result.status, result.reason) == ("timed_out", "pod_deadline_exceeded")
    assert _only_pod(kube_api)[1]["deleted"]


@pytest.mark.timeout(90)
def test_an_interrupted_run_deletes_the_pod_and_reraises(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube_api.kubelet.behaviour = "hang"
    seen: dict[str, Any] = {}

    def interrupted(self: PipesK8sPodLogsMessageReader, *, pod_name: str, **kwargs: Any) -> None:
        # The run is cancelled while its logs are followed: Dagster raises this in the op's thread.
        seen["alive_when_interrupted"] = not kube_api.pods()[pod_name]["deleted"]
        raise DagsterExecutionInterruptedError()

    monkeypatch.setattr(PipesK8sPodLogsMessageReader, "consume_pod_logs", interrupted)
    runtime, spec = _runtime(kube_api), _spec(prompt_file)

    @dg.op
    def run_agent(context: dg.OpExecutionContext, agent_runtime: KubernetesAgentRuntime) -> None:
        with pytest.raises(DagsterExecutionInterruptedError):
            agent_runtime.run(context, spec, tmp_path / "run", _agent())
        seen["reraised"] = True

    @dg.job
    def agent_job() -> None:
        run_agent()

    assert agent_job.execute_in_process(resources={"agent_runtime": runtime}).success
    assert seen == {"alive_when_interrupted": True, "reraised": True}
    assert _only_pod(kube_api)[1]["deleted"]


def test_a_runner_spec_never_pushes_to_its_base_branch() -> None:
    """An agent's work reaches the base branch only through a reviewed PR, whatever a PR's head names."""
    with pytest.raises(ValidationError, match="branch 'main' is the base branch"):
        RunnerSpec.model_validate({**_spec("/p").model_dump(), "branch": "main", "base_branch": "main"})
