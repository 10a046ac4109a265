"""Each agent kind as a Kubernetes pod, through the real kubernetes client and dagster-k8s against the emulated API
server: the pod carries the agent's setup (kind, model, endpoint) in its runner spec, the command of that agent,
its model key only as a `secretKeyRef`, and no secret value anywhere."""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes_validate
import pytest

from codexk8s_pipelines.agents.agent_kinds import launch_settings
from codexk8s_pipelines.agents.catalog import load_catalog
from codexk8s_pipelines.agents.k8s_runtime import CORRELATION_TAG, KubernetesAgentRuntime, build_pod_spec
from codexk8s_pipelines.agents.runner_spec import RunnerSpec
from codexk8s_pipelines.domain.stages import WriteScope
from tests.agents_k8s.conftest import KubeApi, fake_secrets, kube_api  # noqa: F401 - fixtures
from tests.helpers import REPO_ROOT, git
from tests.model_server import ModelServer, Say, Shell, WriteFile

from .conftest import KINDS, MODEL_KEY, agent_path, require_agent

GATEWAY = "http://model-gateway.agents.svc:8080/v1"
SPEC_ENV = "CODEXK8S_RUNNER_SPEC"


def _catalog(tmp_path: Path, kind: str) -> Any:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(
        f"kinds:\n  {kind}: {{endpoint: {{base_url: '{GATEWAY}', key_secret: model-gateway/api-key}}}}\n"
        f"agents:\n  dev: {{kind: {kind}}}\n"
    )
    return load_catalog(path)


def _spec(agent: Any, prompt_file: Path) -> RunnerSpec:
    workdir = "/home/dagster/.codexk8s/work/acme-shop"
    model = agent.default_model
    return RunnerSpec(
        remote_url="https://github.com/acme/shop.git",
        branch="codex/issue-7",
        workdir=workdir,
        command=agent.render_command(model, "high", workdir, prompt_file),
        prompt_file=str(prompt_file),
        prompt_via=agent.prompt_via,
        write_scope=WriteScope.ANY_FILE,
        commit_message="dev: #7",
        author_name="codex-k8s agent",
        author_email="codexk8s-agent@users.noreply.github.com",
        pass_env=[agent.endpoint.key_env],
        agent=launch_settings(agent, model, "high"),
    )


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec", pod)
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


@pytest.mark.timeout(120)
def test_each_agent_kind_becomes_a_pod_with_its_setup_command_and_key_reference(
    kube_api: KubeApi,  # noqa: F811
    fake_secrets: dict[str, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("Implement issue #7.\n", encoding="utf-8")
    runtime = KubernetesAgentRuntime(
        namespace="agents-test", load_incluster_config=False, kubeconfig_file=str(kube_api.kubeconfig),
        poll_interval_seconds=0.05,
    )  # fmt: skip
    kube_api.kubelet.behaviour = "succeed"
    fake_secrets["model-gateway"] = {"api-key": "gw-key-" + "9" * 24}  # resolved only by the (fake) kubelet
    programs = {"codex": "codex", "claude-code": "claude", "opencode": "opencode", "aider": "aider"}
    for kind in KINDS:
        agent = _catalog(tmp_path, kind).for_role("dev")
        spec = _spec(agent, prompt_file)
        pod_spec = build_pod_spec(spec, agent, runtime, prompt=prompt_file.read_text())
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{kind}"}, "spec": pod_spec}
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)

        @dg.op
        def run_agent(context: dg.OpExecutionContext, agent_runtime: KubernetesAgentRuntime) -> None:
            agent_runtime.run(context, spec, tmp_path / f"run-{kind}", agent)  # noqa: B023 - run at once

        @dg.job(name=f"agent_pod_{kind.replace('-', '_')}")
        def agent_job() -> None:
            run_agent()

        assert agent_job.execute_in_process(
            resources={"agent_runtime": runtime}, tags={CORRELATION_TAG: f"acme/shop#7:run:dev:{kind}"}
        ).success

    pods = list(kube_api.pods().values())
    assert len(pods) == len(KINDS)
    seen: dict[str, dict[str, Any]] = {}
    for pod in pods:
        for container in _containers(pod["created"]):
            env = {e["name"]: e for e in container.get("env") or []}
            if SPEC_ENV not in env:
                continue
            runner_spec = json.loads(env[SPEC_ENV]["value"])
            settings = runner_spec["agent"]
            if settings["endpoint"]["key_env"] in env:  # the agent's own container: the only one with the key
                seen[settings["kind"]] = {"spec": runner_spec, "env": env, "name": container["name"]}
            else:  # the checkout and the verify-and-push containers never see the model key
                assert container["name"] != "agent", container["name"]
    assert set(seen) == set(KINDS)
    for kind, found in seen.items():
        runner_spec, env = found["spec"], found["env"]
        assert found["name"] == "agent" and runner_spec["command"][0] == programs[kind]
        assert runner_spec["agent"]["endpoint"]["base_url"] == GATEWAY  # the gateway, set once in the catalog
        key_env = runner_spec["agent"]["endpoint"]["key_env"]
        assert env[key_env]["valueFrom"]["secretKeyRef"] == {"name": "model-gateway", "key": "api-key"}
        assert "value" not in env[key_env]  # the key itself never is part of the pod object
        for secret in (v for values in fake_secrets.values() for v in values.values()):
            assert secret not in json.dumps(runner_spec)


@pytest.mark.timeout(240)
def test_codex_in_its_pod_edits_and_the_runner_pushes_through_the_emulated_cluster(
    kube_api: KubeApi,  # noqa: F811
    fake_secrets: dict[str, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The real pod path end to end: dagster-k8s creates the pod, the fake kubelet runs its three containers' own
    commands (the real runner's checkout, the real Codex against the scripted model without the GitHub token,
    the runner's verify-and-push), and the commit lands on the remote. The run's MCP token reaches Codex's own
    commands from the run's Secret, and no pod object carries it."""
    require_agent("codex")
    remote = tmp_path / "remote.git"
    seed = tmp_path / "seed"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("# shop\n")
    git("add", ".", cwd=seed)
    git("-c", "user.name=seed", "-c", "user.email=seed@example.com", "commit", "-qm", "seed", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("Write the notes. Marker: POD-PROMPT-5c1e.\n", encoding="utf-8")
    fake_secrets["openai"] = {"api-key": MODEL_KEY}
    token = fake_secrets["codexk8s-github"]["token"]
    with ModelServer() as model:
        done = json.dumps({"summary": "Notes written.", "status": "done", "diagnosis": None, "next_step_hint": None})
        model.script(
            Shell("printenv CODEXK8S_MCP_TOKEN"),
            WriteFile("NOTES.md", "# Notes\nwritten in the pod\n"), WriteFile(".codexk8s/result.json", done),
            Say("Done."), workdir="/workspace/checkout",
        )  # fmt: skip
        catalog = tmp_path / "codex.yaml"
        catalog.write_text(
            f"kinds:\n  codex: {{endpoint: {{base_url: '{model.v1}', key_secret: openai/api-key}}}}\n"
            "agents:\n  dev: {kind: codex}\n"
        )
        agent = load_catalog(catalog).for_role("dev")
        mcp_token = "mcp-pod-token-" + "5" * 24
        spec = _spec(agent, prompt_file).model_copy(
            update={
                "remote_url": str(remote),
                "env": {"CODEXK8S_MCP_TOKEN": mcp_token},
                "pass_env": [agent.endpoint.key_env, "CODEXK8S_MCP_TOKEN"],
            }
        )
        runtime = kube_api.runtime()
        kube_api.run_pods_for_real([tmp_path], f"{REPO_ROOT / '.venv' / 'bin'}:{agent_path()}")
        seen: dict[str, Any] = {}

        @dg.op
        def run_agent(context: dg.OpExecutionContext, agent_runtime: KubernetesAgentRuntime) -> None:
            seen["result"] = agent_runtime.run(context, spec, tmp_path / "run", agent)

        @dg.job
        def real_pod_job() -> None:
            run_agent()

        assert real_pod_job.execute_in_process(
            resources={"agent_runtime": runtime}, tags={CORRELATION_TAG: "acme/shop#7:run:dev:pod"}
        ).success
        turns = model.turns()
    result = seen["result"]
    pods = kube_api.kubelet.pods.values()
    logs = [line for pod in pods for lines in [pod.logs, *pod.init_logs.values()] for line in lines]
    assert (result.status, result.pushed) == ("succeeded", True), (result, logs[-30:])
    assert result.summary == "Notes written."
    assert git("show", f"{spec.branch}:NOTES.md", cwd=remote) == "# Notes\nwritten in the pod"
    assert git("log", "-1", "--format=%s", spec.branch, cwd=remote) == "dev: #7"
    assert "POD-PROMPT-5c1e" in turns[0].text  # the prompt reached the model through the pod's volume
    assert all(MODEL_KEY in (t.headers.get("authorization") or "") for t in turns)  # the key from its Secret
    assert (
        result.usage is not None and result.usage.get("agent") == "codex" and result.usage.get("input")
    )  # reached the runner
    assert token not in "\n".join(logs)
    assert mcp_token in turns[1].text  # Codex's `printenv` saw it: from the Secret, through the runner's pass_env
    pod = next(iter(kube_api.pods().values()))
    kept = (tmp_path / "run" / "pod-spec.json").read_text()
    assert mcp_token not in json.dumps(pod["created"]) and mcp_token not in kept
    (secret,) = kube_api.objects("secrets").values()
    assert secret["created"]["metadata"]["ownerReferences"][0]["kind"] == "Pod"
