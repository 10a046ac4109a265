"""The production runtime: the agent runner in its own pod, launched and followed by `dagster_k8s.PipesK8sClient`.

The op hands over the same `RunnerSpec` as locally and gets a `RunnerResult` back. What differs:

- the pod is built from the catalog agent (image, cpu, memory, secrets) by the pure `build_pod_spec`, so a test
  can validate exactly what `run` sends against the Kubernetes schema. It has three containers that run one after
  the other (issue 12: the agent is untrusted): the init container `checkout` (the runner, with the GitHub token)
  prepares the checkout; the init container `agent` runs the agent under another uid, with its own secrets but no
  GitHub token and the runner's volume read-only, and everything it started ends with it; the main container
  `agent-runner` (the runner again, with the token) builds the commit, checks the write scope by content and
  pushes that commit by SHA. `shareProcessNamespace` is false, so the agent never sees the runner's processes;
- the spec and the prompt travel as environment variables (no shared volume between the run pod and the agent
  pod); the GitHub token and the agent's own secrets are `secretKeyRef`s that only the kubelet resolves, so they
  are never part of the pod object, of run config, or of the event log. So is the run's MCP token: it is put in a
  Secret of the run, created once the pod exists with the pod as its owner (`_AgentPipesK8sClient`), which only
  the agent container references; it is scoped to the run's issue, expires with the run, and may only read once
  the run has finished;
- `PipesK8sClient` raises on a non-zero exit before handing back the Pipes session, yet the runner reports its
  result as a Pipes message before it exits. A message reader that keeps its handler recovers that message;
  if the pod failed before its logs were followed, the result is read back from the pod's log tail. We delete
  the pod ourselves (`delete_pod_on_completion=False`) so that it still exists while we read it, and on every
  path out, including `DagsterExecutionInterruptedError` (re-raised);
- until the main container starts, the runtime waits itself (`_AgentPipesK8sClient._await_start`), reading the pod
  phase and status that dagster-k8s's wait ignores: a pod Failed by its deadline before the main container started
  is timed out at once, a pod that cannot be scheduled or started fails after `pending_timeout_seconds` naming why,
  and a pod that ended without a result is read back to say how (its deadline, an OOM kill, an eviction);
- nothing owns an agent pod (it lives in another namespace than the run pod), so a run pod that dies without running
  its `finally` (an OOM kill, a lost node, SIGKILL) leaves it working. The run status sensors then call
  `end_run_agents`: the pods labelled with that run's id, in every agent namespace of the platform's settings (never a
  namespace a run's tags name), are deleted, and the run's MCP token Secret with each, its dependent.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import dagster as dg
import kubernetes
from dagster._core.errors import DagsterPipesExecutionError
from dagster._core.pipes.context import PipesMessageHandler
from dagster_k8s.client import DagsterK8sError, DagsterKubernetesClient
from dagster_k8s.pipes import PipesK8sClient, PipesK8sPodLogsMessageReader
from dagster_pipes import PipesParams
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from urllib3.exceptions import HTTPError

from .. import settings
from ..domain.redaction import redact_text
from ..domain.stages import Role
from ..kube import load_kube, quantity
from .catalog import AgentSpec
from .runner_spec import AGENT_SECRET_PREFIX, TOKEN_ENV_VAR, RunnerResult, RunnerSpec, RunnerStatus
from .runtime import AgentCleanup, AgentRuntime, remove_run_files, with_agent_limits
from .transcript import json_object

RUNNER_MODULE = "codexk8s_pipelines.agents.runner"
CONTAINER_NAME = "agent-runner"  # the main container: verify and push (the one Pipes follows)
CHECKOUT_CONTAINER = "checkout"
AGENT_CONTAINER = "agent"
WORKSPACE_VOLUME = "workspace"
WORKSPACE_DIR = PurePosixPath("/workspace")
CHECKOUT_DIR = WORKSPACE_DIR / "checkout"
PROMPT_PATH = WORKSPACE_DIR / "prompt.md"
RUNNER_VOLUME = "runner"
RUNNER_DIR = PurePosixPath("/runner")
RUNNER_GIT_DIR = RUNNER_DIR / "git"
SPEC_PATH = PurePosixPath("/tmp/spec.json")
SPEC_ENV_VAR = "CODEXK8S_RUNNER_SPEC"
PROMPT_ENV_VAR = "CODEXK8S_PROMPT"
# Linux refuses to exec with one "NAME=value" string over 128 KiB (MAX_ARG_STRLEN); stay clear of it.
MAX_ENV_VALUE_BYTES = 120_000
# The run tag the stage jobs set (delivery.stage_jobs.stage_run_tags); read here, as the agents layer may not
# import delivery.
CORRELATION_TAG = "codexk8s/correlation_key"
LABEL_PREFIX = "codexk8s.io"
INVOCATION_LABEL = f"{LABEL_PREFIX}/invocation"
APP_NAME_LABEL = "app.kubernetes.io/name"
AGENT_APP_NAME = "codexk8s-agent"  # every agent pod's APP_NAME_LABEL (the chart's network policy selects on it too)
RUN_ID_LABEL = "dagster/run-id"  # the Dagster run that launched the pod: what `end_run_agents` selects on
MCP_TOKEN_SECRET_KEY = "token"

# Waiting reasons the kubelet never gets over by retrying: the pod cannot start, so there is nothing to wait for.
_NEVER_STARTS = frozenset({"InvalidImageName", "ErrImageNeverPull", "RunContainerError", "CrashLoopBackOff"})
_PULLING = frozenset({"ErrImagePull", "ImagePullBackOff"})

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_LABEL_VALUE_MAX = 63
_MESSAGE_MAX_CHARS = 4000
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS-1123 label
_CLEANUP_TIMEOUT_SECONDS = 10  # each list or delete of `end_run_agents`: a sensor tick must not hang on the API


class PodSpecError(ValueError):
    """The spec cannot be turned into a pod (e.g. the prompt is too large for an environment variable)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def label_value(raw: str) -> str:
    """`raw` as a valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends.

    A correlation key (`owner/repo#12:label:event`) has `/`, `#` and `:`; a long one is cut and suffixed with a
    hash of the whole, so that two keys sharing a long prefix still get different labels.
    """
    value = _LABEL_VALUE_BAD.sub("-", raw).strip("-._")
    if len(value) > _LABEL_VALUE_MAX:
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:10]
        value = value[: _LABEL_VALUE_MAX - len(digest) - 1].rstrip("-._") + "-" + digest
    return value


def _secret_env(name: str, ref: str) -> dict[str, Any]:
    """An env entry the kubelet fills from a secret: the pod object carries the reference, never the value."""
    secret_name, _, key = ref.partition("/")
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}


def _relocate(value: str, moves: Sequence[tuple[str, str]]) -> str:
    # A whole path component only: moving `/w/repo` must leave `/w/repo2` alone.
    for old, new in moves:
        value = re.sub(re.escape(old) + r"(?=$|[/\s\"'=,;:])", lambda _, new=new: new, value)
    return value


def pod_runner_spec(spec: RunnerSpec, *, relocate_prompt: bool = True) -> RunnerSpec:
    """The spec as the pod sees it: the checkout under the workspace volume, the prompt next to it.

    The op rendered the agent command with its own paths (`--cd <workdir>`, `{prompt_file}`), which do not exist
    in the pod; absolute occurrences are rewritten in the command too. The prompt lives outside the checkout so
    that it never shows up in the diff the write scope is checked against.
    """
    moves: list[tuple[str, str]] = []
    if PurePosixPath(spec.workdir).is_absolute() and spec.workdir != "/":
        moves.append((spec.workdir.rstrip("/"), str(CHECKOUT_DIR)))
    prompt_file = spec.prompt_file
    if relocate_prompt:
        if PurePosixPath(spec.prompt_file).is_absolute():
            moves.append((spec.prompt_file, str(PROMPT_PATH)))
        prompt_file = str(PROMPT_PATH)
    moves.sort(key=lambda move: len(move[0]), reverse=True)  # a prompt inside the workdir moves as itself
    data = spec.model_dump(mode="json")
    data.update(
        workdir=str(CHECKOUT_DIR),
        git_dir=str(RUNNER_GIT_DIR),
        prompt_file=prompt_file,
        command=[_relocate(arg, moves) for arg in spec.command],
    )
    return RunnerSpec.model_validate(data)


def _runner_command(phase: str, with_prompt: bool = False) -> list[str]:
    # The values are written with printf (no echo escapes), then unset so that the agent, which inherits the
    # runner's environment, does not carry a second copy of them. `exec` replaces the shell, so the runner itself
    # receives the SIGTERM of a pod deletion and can stop the agent and report `cancelled`. umask 002: the
    # containers run under different uids and share the pod's fsGroup, which must be able to write the checkout.
    steps = ["umask 002", f'printf %s "${SPEC_ENV_VAR}" > {SPEC_PATH}']
    if with_prompt:
        steps.append(f'printf %s "${PROMPT_ENV_VAR}" > {PROMPT_PATH}')
    steps.append(f"unset {SPEC_ENV_VAR} {PROMPT_ENV_VAR}")
    # `-I` (isolated): no current directory on sys.path, no user site, no PYTHON* variables. The image's working
    # directory is the shared workspace the agent writes: a `codexk8s_pipelines/agents/runner.py` or an
    # `argparse.py` it left there would otherwise be what the finish container runs, with the GitHub token.
    # `-u` stands in for PYTHONUNBUFFERED, which `-I` ignores: Pipes messages reach the log as they are written.
    steps.append(f"exec python -I -u -m {RUNNER_MODULE} --phase {phase} --spec {SPEC_PATH}")
    return ["sh", "-c", " && ".join(steps)]


def _security_context(uid: int) -> dict[str, Any]:
    """Pod Security "restricted" for one container, under its own uid and gid."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,  # the agent CLI writes its home and caches
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
    }


def mcp_token_secret_name(invocation_id: str) -> str:
    """The per-run Secret holding the run's MCP token (`_AgentPipesK8sClient` creates it once the pod exists, owned by
    the pod, so it goes with the pod)."""
    return f"codexk8s-mcp-{invocation_id}"


def mcp_token_secret(name: str, token: str, pod_meta: Mapping[str, Any]) -> dict[str, Any]:
    """The Secret body: the token under MCP_TOKEN_SECRET_KEY, labelled as the pod is (its invocation, run and
    correlation key), immutable."""
    labels = {**pod_meta.get("labels", {}), "app.kubernetes.io/component": "mcp-token"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "type": "Opaque",
        "immutable": True,
        "stringData": {MCP_TOKEN_SECRET_KEY: token},
    }


def without_mcp_token(spec: RunnerSpec) -> str:
    """The spec as JSON without the run's MCP token: for the runner's containers, for the agent container too when
    the token comes from the run's Secret, and for the copy of the pod spec kept with the run (`pod-spec.json`)."""
    env = {name: value for name, value in spec.env.items() if name != settings.MCP_TOKEN_VAR}
    return spec.model_copy(update={"env": env}).model_dump_json()


def _redacted_pod_spec(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """`pod_spec` with any MCP token taken out of its runner specs: what `pod-spec.json` keeps. With the token in the
    run's Secret there is none to take out; without it (a spec that does not pass the token on from the runner's
    environment) the agent container's spec carries it."""
    copy = json.loads(json.dumps(pod_spec))
    for container in [*copy.get("initContainers", []), *copy.get("containers", [])]:
        for entry in container.get("env") or []:
            if entry.get("name") == SPEC_ENV_VAR and "value" in entry:
                entry["value"] = without_mcp_token(RunnerSpec.model_validate_json(entry["value"]))
    return copy


def _disk(own: str, volume: str | None) -> dict[str, str]:
    """A container's `ephemeral-storage` limit: its own layer plus the pod's two volumes (`volume` each), or none when
    the volumes are unbounded. The kubelet evicts a pod whose whole use (every container's layer and the emptyDirs)
    passes the larger of its app containers' limits added up and its biggest init container's: a limit of the
    container's own layer alone would evict every pod whose checkout is larger than that."""
    if volume is None:
        return {}
    total = (quantity(own) or 0) + 2 * (quantity(volume) or 0)
    for unit, size in (("Gi", 2**30), ("Mi", 2**20)):
        if total % size == 0:
            return {"ephemeral-storage": f"{int(total // size)}{unit}"}
    return {"ephemeral-storage": str(int(total))}


def _check_env_size(name: str, value: str, reason: str) -> None:
    size = len(name) + 1 + len(value.encode("utf-8"))
    if size > MAX_ENV_VALUE_BYTES:
        raise PodSpecError(reason, f"{name} would be {size} bytes; a pod can take at most {MAX_ENV_VALUE_BYTES}")


def build_pod_spec(
    spec: RunnerSpec,
    agent: AgentSpec,
    runtime: KubernetesAgentRuntime,
    *,
    prompt: str | None = None,
    mcp_secret: str | None = None,
) -> dict[str, Any]:
    """The pod `spec` (camelCase, as the API takes it) that `KubernetesAgentRuntime.run` hands to PipesK8sClient.

    `prompt` is the prompt text, written to `/workspace/prompt.md` in the pod (the op's prompt file is on another
    machine); without it the spec's `prompt_file` is kept as is and must exist in the image. Raises
    `PodSpecError` when the spec or the prompt is too large to travel as an environment variable.

    `mcp_secret`: the Secret with the run's MCP token (`mcp_token_secret`). The agent container then takes the
    token from it, and no container's spec carries it: a pod's spec is readable by everyone who may list pods in
    the namespace, a Secret only by those who may read secrets. Without it the token travels in the agent
    container's copy of the spec, as the spec has it.
    """
    in_pod = pod_runner_spec(spec, relocate_prompt=prompt is not None)
    pod_spec_json = in_pod.model_dump_json()
    _check_env_size(SPEC_ENV_VAR, pod_spec_json, "spec_too_large")
    # The runner's own containers never pass the run's MCP token on: their copy of the spec has none.
    runner_spec_env = {"name": SPEC_ENV_VAR, "value": without_mcp_token(in_pod)}
    unbuffered = {"name": "PYTHONUNBUFFERED", "value": "1"}  # Pipes messages reach the log as they are written
    token = _secret_env(TOKEN_ENV_VAR, f"{runtime.token_secret_name}/{runtime.token_secret_key}")
    if mcp_secret is not None:  # the runner passes it from its environment (the spec's pass_env names it)
        agent_env: list[dict[str, Any]] = [
            runner_spec_env,
            _secret_env(settings.MCP_TOKEN_VAR, f"{mcp_secret}/{MCP_TOKEN_SECRET_KEY}"),
        ]
    else:
        agent_env = [{"name": SPEC_ENV_VAR, "value": pod_spec_json}]
    if prompt is not None:
        _check_env_size(PROMPT_ENV_VAR, prompt, "prompt_too_large")
        agent_env.append({"name": PROMPT_ENV_VAR, "value": prompt})
    agent_env.append(unbuffered)
    agent_env.extend(_secret_env(name, ref) for name, ref in sorted(agent.env_from_secrets.items()))

    workspace_mount = {"name": WORKSPACE_VOLUME, "mountPath": str(WORKSPACE_DIR)}
    runner_mount = {"name": RUNNER_VOLUME, "mountPath": str(RUNNER_DIR)}
    runner_resources = {"cpu": runtime.runner_cpu, "memory": runtime.runner_memory}
    agent_resources = {"cpu": agent.cpu, "memory": agent.memory}
    runner_disk = _disk(runtime.runner_ephemeral_storage, runtime.workspace_size_limit)
    agent_disk = _disk(runtime.agent_ephemeral_storage, runtime.workspace_size_limit)
    image = runtime.runner_image or agent.image

    # The finish step reads what the agent wrote (its result, its commit): it gets the agent's secrets again, under
    # names no agent reads, to redact them and to refuse a push that holds one (`AGENT_SECRET_PREFIX`).
    # Not the run's MCP token: its Secret reaches the agent's container alone (it expires with the run).
    refs = [ref for _, ref in sorted(agent.env_from_secrets.items())]
    kept_out = [_secret_env(f"{AGENT_SECRET_PREFIX}{n}", ref) for n, ref in enumerate(refs)]

    def runner_container(name: str, phase: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": image,
            "imagePullPolicy": runtime.image_pull_policy,
            "command": _runner_command(phase),
            "workingDir": str(RUNNER_DIR),  # not the image's: the workspace is the agent's to write
            "env": [runner_spec_env, unbuffered, token, *(kept_out if phase == "finish" else [])],
            "resources": {
                "requests": {**runner_resources, "ephemeral-storage": runtime.runner_ephemeral_storage},
                "limits": {**runner_resources, **runner_disk},
            },
            "securityContext": _security_context(runtime.run_as_user),
            "volumeMounts": [workspace_mount, runner_mount],
        }

    agent_container: dict[str, Any] = {
        "name": AGENT_CONTAINER,
        "image": agent.image,
        "imagePullPolicy": runtime.image_pull_policy,
        "command": _runner_command("agent", with_prompt=prompt is not None),
        "env": agent_env,  # no GitHub token: the push is the runner's
        "resources": {
            "requests": {**agent_resources, "ephemeral-storage": runtime.agent_ephemeral_storage},
            "limits": {**agent_resources, **agent_disk},
        },
        "securityContext": _security_context(runtime.agent_run_as_user),
        # The runner's git directory read-only: the agent's own .git borrows its objects, and cannot touch it.
        "volumeMounts": [workspace_mount, {**runner_mount, "readOnly": True}],
    }
    workspace: dict[str, Any] = {"sizeLimit": runtime.workspace_size_limit} if runtime.workspace_size_limit else {}
    return {
        "initContainers": [runner_container(CHECKOUT_CONTAINER, "prepare"), agent_container],
        "containers": [runner_container(CONTAINER_NAME, "finish")],
        "restartPolicy": "Never",
        "shareProcessNamespace": False,  # the agent must not see the runner's processes (nor their environment)
        # The runner's own timeout fires first and reports `timed_out`; the margin covers clone and push.
        "activeDeadlineSeconds": spec.timeout_seconds + runtime.deadline_margin_seconds,
        "terminationGracePeriodSeconds": runtime.termination_grace_period_seconds,
        "serviceAccountName": runtime.service_account,
        "automountServiceAccountToken": False,  # the agent has no business with the Kubernetes API
        "enableServiceLinks": False,  # no env var per service in the namespace leaking into the agent
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": runtime.fs_group,  # shared by the runner's and the agent's uid: both write the checkout
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [
            {"name": WORKSPACE_VOLUME, "emptyDir": workspace},
            {"name": RUNNER_VOLUME, "emptyDir": dict(workspace)},  # the runner's clone: as large as the checkout
        ],
    }


def build_pod_meta(
    spec: RunnerSpec,
    agent: AgentSpec,
    *,
    invocation_id: str,
    run_id: str | None = None,
    correlation_key: str | None = None,
) -> dict[str, Any]:
    """Labels to find the pod by (`kubectl get pods -l codexk8s.io/correlation-key=...`), annotations to read.

    Label values are sanitised; the correlation key and branch are kept verbatim as annotations. The name is
    PipesK8sClient's to choose.
    """
    labels = {
        APP_NAME_LABEL: AGENT_APP_NAME,
        "app.kubernetes.io/component": CONTAINER_NAME,
        f"{LABEL_PREFIX}/agent": label_value(agent.name),
        f"{LABEL_PREFIX}/role": label_value(agent.role.value),
        INVOCATION_LABEL: label_value(invocation_id),
    }
    annotations = {f"{LABEL_PREFIX}/branch": spec.branch, f"{LABEL_PREFIX}/mode": spec.mode}
    if run_id:
        labels[RUN_ID_LABEL] = label_value(run_id)
    if correlation_key:
        labels[f"{LABEL_PREFIX}/correlation-key"] = label_value(correlation_key)
        annotations[f"{LABEL_PREFIX}/correlation-key"] = correlation_key
    return {"labels": labels, "annotations": annotations}


def default_agent() -> AgentSpec:
    """What runs when the op names no catalog agent: the default image with the catalog's default limits."""
    return AgentSpec(name="default", role=Role.DEV)


def _pipes_payloads(lines: Sequence[str]) -> list[Any]:
    """The `report_custom_message` payloads among raw log lines (Pipes writes one JSON message per line)."""
    payloads = []
    for line in lines:
        message = json_object(line)  # strict: a line nested too deep to decode is not a Pipes message either
        if message and "__dagster_pipes_version" in message and message.get("method") == "report_custom_message":
            payloads.append((message.get("params") or {}).get("payload"))
    return payloads


def _result_from_payloads(payloads: Sequence[Any], spec: RunnerSpec) -> RunnerResult | None:
    """The last `result` message; one that does not validate (an image with another runner version) is a failure."""
    for payload in reversed(payloads):
        if isinstance(payload, dict) and payload.get("type") == "result":
            try:
                return RunnerResult.model_validate({k: v for k, v in payload.items() if k != "type"})
            except ValidationError as exc:
                message = f"the runner's result does not match this platform's RunnerResult: {exc}"
                return RunnerResult(
                    status="failed", reason="invalid_result", message=_shorten(message), branch=spec.branch
                )
    return None


def _shorten(text: str, limit: int = _MESSAGE_MAX_CHARS) -> str:
    text = redact_text(text)
    return text if len(text) <= limit else "..." + text[-limit:]


class _RecordingPodLogsReader(PipesK8sPodLogsMessageReader):
    """The default pod-log reader, keeping the session's handler so messages outlive a raising `run`."""

    def __init__(self) -> None:
        super().__init__()
        self.handler: PipesMessageHandler | None = None

    @contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[PipesParams]:
        self.handler = handler
        with super().read_messages(handler) as params:
            yield params

    def custom_messages(self) -> list[Any]:
        return list(self.handler.get_custom_messages()) if self.handler is not None else []


class _McpSecretRefused(DagsterK8sError):
    """The run's MCP token Secret could not be created; the message says why and what the Role needs."""


class _Verdict(NamedTuple):
    """How a run without the runner's result ended: the status, the reason code (docs/runbook.md has a section for
    each) and the first sentence of the message ("" when the error's own text says it all)."""

    status: RunnerStatus
    reason: str
    head: str = ""


class _PodNotStarted(DagsterK8sError):
    """The runtime's own wait ended before the main container started, so dagster-k8s never followed its log.

    Either the pod ended (its deadline, a killed init container, an eviction: the pod read back says which), or
    the wait knows the verdict itself (`verdict`: the pod could not start within `pending_timeout_seconds`, or can
    never start, or outlived every bound without Kubernetes ending it)."""

    def __init__(self, message: str, verdict: _Verdict | None = None) -> None:
        super().__init__(message)
        self.verdict = verdict


def _container_statuses(pod: Any) -> list[Any]:
    """The pod's init containers' statuses, then its containers', in the order the kubelet runs them."""
    status = pod.status
    if status is None:
        return []
    return [*(status.init_container_statuses or []), *(status.container_statuses or [])]


def _spec_containers(pod: Any) -> dict[str, Any]:
    spec = pod.spec
    if spec is None:
        return {}
    return {c.name: c for c in [*(spec.init_containers or []), *(spec.containers or [])]}


def _memory_limit(pod: Any, container: str) -> str | None:
    found = _spec_containers(pod).get(container)
    limits = found.resources.limits if found is not None and found.resources is not None else None
    return (limits or {}).get("memory")


def _image(pod: Any, status: Any) -> str:
    """The image as the pod spec names it (the status may carry the resolved one, or none yet)."""
    found = _spec_containers(pod).get(status.name)
    return (found.image if found is not None else None) or status.image or "?"


def _unscheduled(pod: Any) -> str | None:
    """The scheduler's own words when it cannot place the pod (condition PodScheduled=False), else None."""
    for condition in (pod.status.conditions if pod.status is not None else None) or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"the pod cannot be scheduled ({condition.reason or 'Unschedulable'}): {condition.message or ''}"
    return None


def _waiting_text(pod: Any, status: Any) -> str:
    """Why a container is not running, as its status says (the Role reads pods, not events)."""
    waiting = status.state.waiting
    reason, message = waiting.reason or "Waiting", (waiting.message or "").strip()
    if reason in _PULLING or reason in ("InvalidImageName", "ErrImageNeverPull"):
        text = f'container "{status.name}" cannot pull its image {_image(pod, status)} ({reason})'
    elif reason == "CreateContainerConfigError":  # e.g. 'secret "codexk8s-model-keys" not found'
        text = f'container "{status.name}" cannot be created ({reason})'
    elif reason == "ContainerCreating":
        text = f'container "{status.name}" is being created (image {_image(pod, status)})'
    else:
        text = f'container "{status.name}" is waiting ({reason})'
    return f"{text}: {message}" if message else text


def _start_state(pod: Any) -> tuple[str, str | None, str]:
    """Where the pod is on its way to its main container: (kind, container, description).

    kind: "started" (the main container runs or ran: dagster-k8s follows it from here), "ended" (the pod failed, or
    an init container failed and will not be retried, before the main container started), "refused" (a start
    error the kubelet never gets over), "running" (an init container runs: progress), "blocked" (nothing runs: not
    scheduled, pulling, a missing Secret...). The pod phase comes first: a pod Failed by its deadline keeps its main
    container "Waiting: PodInitializing" for good, which is all dagster-k8s looks at."""
    status: Any = pod.status
    if status is None:
        return "blocked", None, "the pod has no status yet"
    main = next((s for s in (status.container_statuses or []) if s.name == CONTAINER_NAME), None)
    main_started = main is not None and main.state is not None and (main.state.running or main.state.terminated)
    if main_started or status.phase == "Succeeded":
        return "started", CONTAINER_NAME, "the main container started"
    if status.phase == "Failed":
        why = f" ({status.reason})" if status.reason else ""
        return "ended", None, f"the pod failed{why}" + (f": {status.message.strip()}" if status.message else "")
    init_names = {c.name for c in ((pod.spec.init_containers or []) if pod.spec is not None else [])}
    init_statuses = status.init_container_statuses or []
    if not init_statuses and not status.container_statuses:
        return "blocked", None, _unscheduled(pod) or "the pod is not scheduled or has no container status yet"
    if init_names and not init_statuses:
        return "blocked", None, "the pod's init containers have no status yet"
    for each in [*init_statuses, *([main] if main is not None else [])]:
        state = each.state
        if state is None:
            return "blocked", each.name, f'container "{each.name}" has no state yet'
        if state.terminated is not None:
            if each.name in init_names and state.terminated.exit_code != 0:
                code, why = state.terminated.exit_code, state.terminated.reason
                return "ended", each.name, f'container "{each.name}" exited {code} ({why})'
            continue
        if state.running is not None:
            return "running", each.name, f'container "{each.name}" is running'
        if state.waiting is not None and state.waiting.reason in _NEVER_STARTS:
            return "refused", each.name, _waiting_text(pod, each)
        if state.waiting is not None:
            return "blocked", each.name, _waiting_text(pod, each)
    return "blocked", CONTAINER_NAME, f'container "{CONTAINER_NAME}" has no status yet'


def _last_started(pod: Any) -> str | None:
    """The last container that ran (or runs): whose log tells what happened when the main one never started."""
    started = [
        s.name for s in _container_statuses(pod) if s.state is not None and (s.state.running or s.state.terminated)
    ]
    return started[-1] if started else None


def _pod_verdict(pod: Any) -> _Verdict:
    """(status, reason, first sentence) for a pod that ended without a result, from the pod as read back.

    The deadline first (whatever its containers show: the main one may never have started); then an OOM kill of
    any container, init containers included, which dagster-k8s's error text leaves out (it lists the main
    container's status only); then the pod's own reason (an eviction says why) and every container that failed."""
    if pod is None or pod.status is None:
        return _Verdict(status="failed", reason="pod_failed", head="the agent pod failed without reporting a result")
    status: Any = pod.status
    if status.reason == "DeadlineExceeded":
        deadline = pod.spec.active_deadline_seconds if pod.spec is not None else None
        during = _last_started(pod)
        head = f"the agent pod ran past its activeDeadlineSeconds ({deadline}s)"
        head += f' during container "{during}"' if during else ""
        return _Verdict(status="timed_out", reason="pod_deadline_exceeded", head=head)
    failed: list[str] = []
    for each in _container_statuses(pod):
        ended = each.state.terminated if each.state is not None else None
        if ended is None:
            continue
        limit = _memory_limit(pod, each.name) or "unknown"
        if ended.reason == "OOMKilled":
            killed = f'container "{each.name}" was OOMKilled (exit {ended.exit_code}) at its memory limit of {limit}'
            if each.name == AGENT_CONTAINER:
                head = f"the agent ran out of memory: {killed}; raise the catalog agent's memory"
                return _Verdict(status="failed", reason="agent_oom_killed", head=head)
            head = f"the runner ran out of memory: {killed}; raise runner_memory"
            return _Verdict(status="failed", reason="runner_crashed", head=head)
        if ended.exit_code != 0:
            detail = f": {ended.message.strip()}" if ended.message else ""
            failed.append(f'container "{each.name}" exited {ended.exit_code} ({ended.reason}){detail}')
    head = "the agent pod failed without reporting a result"
    if status.reason or status.message:
        head += f"; pod {status.phase} ({status.reason or 'no reason'}): {(status.message or '').strip()}"
    if failed:
        head += "; " + "; ".join(failed)
    return _Verdict(status="failed", reason="pod_failed", head=head)


class _AgentPipesK8sClient(PipesK8sClient):
    """PipesK8sClient that remembers which pod it launched, so the runtime can read it back and delete it, and
    creates the run's MCP token Secret owned by that pod."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pod: tuple[str, str] | None = None  # (namespace, name)
        self.k8s: DagsterKubernetesClient | None = None
        self.pod_secret: dict[str, Any] | None = None  # the run's MCP token Secret, created once the pod is
        # Bounds of the runtime's own wait for the main container (`_await_start`); 0 is none.
        self.pending_timeout: float = 0
        self.start_timeout: float = 0

    @contextmanager
    def consume_pod_logs(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        client: DagsterKubernetesClient,
        namespace: str,
        pod_name: str,
        enable_multi_container_logs: bool = False,
        ignore_containers: set | None = None,
    ) -> Iterator[None]:
        # Called right after the pod is created: the one place where its generated name is handed out.
        self.pod = (namespace, pod_name)
        self.k8s = client
        if self.pod_secret is not None:
            self._create_pod_secret(client, namespace, pod_name, self.pod_secret)
        self._await_start(context, client, namespace, pod_name)
        with super().consume_pod_logs(
            context=context,
            client=client,
            namespace=namespace,
            pod_name=pod_name,
            enable_multi_container_logs=enable_multi_container_logs,
            ignore_containers=ignore_containers,
        ):
            yield

    def _await_start(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        client: DagsterKubernetesClient,
        namespace: str,
        pod_name: str,
    ) -> None:
        """Wait for the main container to start before dagster-k8s takes over, raising `_PodNotStarted` if it never
        will.

        dagster-k8s's own wait looks at container states only and with bounds of its own (a day for a pod without
        container statuses, e.g. unschedulable; five hours for a CreateContainerConfigError or a pod Failed by its
        deadline whose main container stays "Waiting: PodInitializing"). This one reads the pod phase too, ends a
        stall (not scheduled, an image not pulled, a missing Secret) after `pending_timeout` seconds naming its
        cause as the pod status gives it, and the whole wait after `start_timeout`. It uses the client's timer and
        sleeper, as dagster-k8s's wait does."""
        start = client.timer()
        stalled_since: float | None = start
        current: str | None = None
        said = ""
        while True:
            try:
                pod: Any = client.core_api.read_namespaced_pod(pod_name, namespace)
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    raise _PodNotStarted(f"agent pod {pod_name} was deleted before it started") from exc
                raise
            now = client.timer()
            kind, container, text = _start_state(pod)
            if kind == "started":
                return
            if kind == "ended":
                raise _PodNotStarted(f"agent pod {pod_name} ended before its main container started: {text}")
            if kind == "refused":
                raise _PodNotStarted(
                    f"the agent pod cannot start: {text}", _Verdict(status="failed", reason="pod_failed")
                )
            # Progress (a container runs, or one ran to its end since the last poll) starts a stall over; being
            # scheduled does not: scheduling and pulling the first image are one wait.
            if kind == "running":
                stalled_since = None
            elif stalled_since is None or (current is not None and container != current):
                stalled_since = now
            current = container
            if text != said:
                context.log.info(f"agent pod {pod_name}: {text}")
                said = text
            if self.pending_timeout and stalled_since is not None and now - stalled_since >= self.pending_timeout:
                raise _PodNotStarted(
                    f"the agent pod did not start within pending_timeout_seconds ({self.pending_timeout:.0f}s): {text}",
                    _Verdict(status="failed", reason="pod_failed"),
                )
            if self.start_timeout and now - start >= self.start_timeout:
                raise _PodNotStarted(
                    f"the agent pod was not done within its activeDeadlineSeconds plus pending_timeout_seconds"
                    f" ({self.start_timeout:.0f}s) and Kubernetes had not ended it: {text}",
                    _Verdict(status="timed_out", reason="pod_deadline_exceeded"),
                )
            client.sleeper(self.poll_interval)

    def _create_pod_secret(
        self, client: DagsterKubernetesClient, namespace: str, pod_name: str, body: dict[str, Any]
    ) -> None:
        """Create the run's MCP token Secret with the pod as its owner, so that it goes when the pod goes (deleted
        by the run, by hand, or by the clean-up CronJob), and the launcher needs no right on secrets but create: no
        patch, delete, get or list, which would reach the namespace's other secrets (the push token).

        The pod exists by now and its first container is the checkout: the agent container, the only one that reads
        the Secret, starts after it (and a kubelet retries a container whose Secret is not there yet). A refusal
        (no RBAC, the API down) ends the run with the reason, and the pod is deleted."""
        try:
            pod: Any = client.core_api.read_namespaced_pod(pod_name, namespace)
            owner = {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod.metadata.uid}
            owned = {**body, "metadata": {**body["metadata"], "ownerReferences": [owner]}}
            client.core_api.create_namespaced_secret(namespace, owned)
        except (kubernetes.client.ApiException, HTTPError) as exc:
            status = getattr(exc, "status", None)
            detail = f"{status} {getattr(exc, 'reason', '')}".strip() if status else _shorten(str(exc), 300)
            raise _McpSecretRefused(
                f"could not create the Secret with the run's MCP token in namespace {namespace!r}: {detail}"
                " (the launcher's Role needs secrets create there)"
            ) from exc


class KubernetesAgentRuntime(AgentRuntime):
    """The Kubernetes runtime: one pod per agent run, through `PipesK8sClient`.

    Every field is a setting, none a secret: the token is referenced by secret name and key, and the resource is
    configured from the environment in production.
    """

    namespace: str = Field(default="codexk8s-agents", description="where agent pods run")
    agent_namespaces: list[str] = Field(
        default_factory=list,
        description="every agent namespace (the chart's agents.namespaces), where a run's pods are deleted when it"
        " ends outside its ops; `namespace` is always one of them",
    )
    service_account: str = Field(default="codexk8s-agent", description="the agent pods' service account")
    token_secret_name: str = Field(default="codexk8s-github", description="secret holding the GitHub push token")
    token_secret_key: str = Field(default="token", description="key of the token in that secret")
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int = Field(default=1000, gt=0, description="uid and gid of the runner's containers")
    agent_run_as_user: int = Field(default=1001, gt=0, description="uid and gid of the agent's container")
    fs_group: int = Field(default=2000, gt=0, description="the pod's fsGroup, shared by runner and agent")
    runner_image: str | None = Field(default=None, description="the runner's image (default: the agent's image)")
    runner_cpu: str = Field(default="500m", description="cpu of each runner container (checkout, verify-and-push)")
    runner_memory: str = Field(default="512Mi", description="memory of each runner container")
    load_incluster_config: bool = Field(default=True, description="False: use kubeconfig_file (or the default)")
    kubeconfig_file: str | None = None
    kube_context: str | None = None
    poll_interval_seconds: float = Field(default=5.0, gt=0, description="pod status polling interval")
    deadline_margin_seconds: int = Field(default=300, ge=0, description="added to the spec timeout for clone/push")
    pending_timeout_seconds: int = Field(
        default=1800,
        ge=0,
        description="how long the pod may stall before a container runs (scheduling, image pull, a missing Secret),"
        " each time; 0: no bound",
    )
    termination_grace_period_seconds: int = Field(default=30, ge=0)
    # Disk: without bounds an agent fills its node's disk (the shared /workspace, or its own writable layer), the
    # node comes under disk pressure and evicts other pods. With them, the kubelet evicts this pod alone.
    workspace_size_limit: str | None = Field(
        default="10Gi", description="sizeLimit of each of the pod's volumes, /workspace and /runner (None: unbounded)"
    )
    agent_ephemeral_storage: str = Field(default="4Gi", description="the agent container's own disk: home, caches")
    runner_ephemeral_storage: str = Field(default="1Gi", description="each runner container's own disk")
    log_tail_lines: int = Field(default=200, gt=0, description="log lines read back from a failed pod")

    @field_validator("workspace_size_limit", "agent_ephemeral_storage", "runner_ephemeral_storage")
    @classmethod
    def _a_quantity(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A quantity the API server takes ('10Gi'): a typo in a chart value fails here, naming the setting, not
        as every agent pod's creation error."""
        amount = None if value is None else quantity(value)
        if value is not None and (amount is None or amount <= 0):
            raise ValueError(f"{info.field_name}: {value!r} is not a positive Kubernetes quantity such as '10Gi'")
        return value

    @field_validator("agent_namespaces")
    @classmethod
    def _namespace_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAMESPACE_NAME.fullmatch(name):
                raise ValueError(f"agent_namespaces: {name!r} is not a namespace name (a DNS-1123 label)")
        return value

    @model_validator(mode="after")
    def _agent_has_its_own_uid(self) -> KubernetesAgentRuntime:
        if self.agent_run_as_user == self.run_as_user:
            raise ValueError(
                f"agent_run_as_user must differ from run_as_user ({self.run_as_user}): the agent's container must "
                "not share the runner's uid"
            )
        return self

    def run(
        self,
        context: dg.OpExecutionContext,
        spec: RunnerSpec,
        run_dir: Path,
        agent: AgentSpec | None = None,
    ) -> RunnerResult:
        """Run `spec` in a pod of `agent`'s image and return the runner's result, also when the pod failed."""
        if agent is None:
            context.log.warning("no catalog agent given: running the default agent image with default limits")
            agent = default_agent()
        spec = with_agent_limits(spec, agent)  # as locally: the entry's declared variables reach the agent's env
        try:
            prompt = Path(spec.prompt_file).read_text(encoding="utf-8")
        except OSError as exc:
            message = f"prompt file {spec.prompt_file} cannot be read: {exc.strerror or exc}"
            return RunnerResult(
                status="failed_precondition", reason="prompt_not_found", message=message, branch=spec.branch
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = self._run_pod(context, spec, run_dir, agent, prompt)
        finally:  # every way out, the prompt (issue text) on this side does not outlive the step
            if Path(spec.prompt_file).parent == run_dir:
                remove_run_files([Path(spec.prompt_file)])
        (run_dir / "result.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
        return result

    def _run_pod(
        self, context: dg.OpExecutionContext, spec: RunnerSpec, run_dir: Path, agent: AgentSpec, prompt: str
    ) -> RunnerResult:
        """Build the pod, run it through PipesK8sClient, and read its result back; the pod is deleted on every path
        out (and the run's MCP token Secret with it, its dependent)."""
        invocation_id = uuid.uuid4().hex
        mcp_token = spec.env.get(settings.MCP_TOKEN_VAR) if settings.MCP_TOKEN_VAR in spec.pass_env else None
        mcp_secret = mcp_token_secret_name(invocation_id) if mcp_token else None
        try:
            pod_spec = build_pod_spec(spec, agent, self, prompt=prompt, mcp_secret=mcp_secret)
        except PodSpecError as exc:
            return RunnerResult(status="failed_precondition", reason=exc.reason, message=str(exc), branch=spec.branch)
        pod_meta = build_pod_meta(
            spec,
            agent,
            invocation_id=invocation_id,
            run_id=context.run_id,
            correlation_key=context.run.tags.get(CORRELATION_TAG),
        )
        # As sent (secrets are references), less an MCP token a spec carries when it is not in the run's Secret.
        (run_dir / "pod-spec.json").write_text(json.dumps(_redacted_pod_spec(pod_spec), indent=2), encoding="utf-8")

        reader = _RecordingPodLogsReader()
        client = _AgentPipesK8sClient(
            message_reader=reader,
            load_incluster_config=self.load_incluster_config,
            kubeconfig_file=None if self.load_incluster_config else self.kubeconfig_file,
            kube_context=None if self.load_incluster_config else self.kube_context,
            poll_interval=self.poll_interval_seconds,
        )
        if mcp_secret and mcp_token:
            client.pod_secret = mcp_token_secret(mcp_secret, mcp_token, pod_meta)
        wait_timeout = pod_spec["activeDeadlineSeconds"] + self.pending_timeout_seconds
        client.pending_timeout = self.pending_timeout_seconds
        client.start_timeout = wait_timeout
        try:
            try:
                invocation = client.run(
                    context=context,
                    namespace=self.namespace,
                    base_pod_meta=pod_meta,
                    base_pod_spec=pod_spec,
                    pod_wait_timeout=wait_timeout,
                    delete_pod_on_completion=False,  # ours to delete, after reading a failed pod back
                )
            except _McpSecretRefused as exc:
                result = RunnerResult(status="failed", reason="pod_failed", message=str(exc), branch=spec.branch)
            except (DagsterK8sError, DagsterPipesExecutionError, kubernetes.client.ApiException, HTTPError) as exc:
                result = self._recover(context, client, reader, spec, exc)
            else:
                result = _result_from_payloads(invocation.get_custom_messages(), spec) or RunnerResult(
                    status="failed",
                    reason="runner_crashed",
                    message="the agent pod exited 0 but the runner reported no result",
                    branch=spec.branch,
                )
        finally:
            # Success, failure, or DagsterExecutionInterruptedError (run cancelled): the pod goes either way (and
            # the run's MCP token Secret with it, its dependent).
            self._delete_pod(context, client, invocation_id)
        return result

    def _recover(
        self,
        context: dg.OpExecutionContext,
        client: _AgentPipesK8sClient,
        reader: _RecordingPodLogsReader,
        spec: RunnerSpec,
        exc: BaseException,
    ) -> RunnerResult:
        """The runner's result after PipesK8sClient raised: from the followed messages, else the main container's log
        tail; without one, a verdict from the pod read back (its deadline, an OOM kill, an eviction) or from the
        runtime's own wait. The pod is read even when its log cannot be: a main container that never started has
        none (400 "is waiting to start"), and the pod is what says the deadline passed."""
        result = _result_from_payloads(reader.custom_messages(), spec)
        if result is not None:
            return result
        lines: list[str] = []
        pod: Any = None
        if client.pod is not None and client.k8s is not None:
            namespace, name = client.pod
            try:
                pod = client.k8s.core_api.read_namespaced_pod(name, namespace)
            except (kubernetes.client.ApiException, HTTPError, ValueError) as read_exc:
                context.log.warning(f"could not read back agent pod {name}: {_shorten(str(read_exc), 500)}")
            if pod is None or _start_state(pod)[0] == "started":  # else it has no log to give (400)
                lines = self._log_tail(context, client.k8s, name, namespace, CONTAINER_NAME)
        result = _result_from_payloads(_pipes_payloads(lines), spec)
        if result is not None:
            return result
        human_lines = [line for line in lines if '"__dagster_pipes_version"' not in line][-20:]
        source = CONTAINER_NAME
        last = _last_started(pod) if pod is not None else None
        if not human_lines and last not in (None, CONTAINER_NAME) and client.pod is not None and client.k8s is not None:
            source = str(last)  # the main container never ran: the init container that did tells what happened
            tail = self._log_tail(context, client.k8s, client.pod[1], client.pod[0], source)
            human_lines = [line for line in tail if '"__dagster_pipes_version"' not in line][-20:]
        detail = str(exc) if isinstance(exc, _PodNotStarted) else f"{type(exc).__name__}: {exc}"
        if human_lines:
            detail += f"\nlast log lines of {source}:\n" + "\n".join(human_lines)
        verdict = _pod_verdict(pod)
        if isinstance(exc, _PodNotStarted) and exc.verdict is not None and verdict.reason == "pod_failed":
            verdict = exc.verdict  # the wait's own verdict: the pod says nothing more precise
        status, reason, head = verdict
        return RunnerResult(
            status=status,
            reason=reason,
            message=_shorten(f"{head}. {detail}" if head else detail),
            branch=spec.branch,
        )

    def _log_tail(
        self, context: dg.OpExecutionContext, k8s: DagsterKubernetesClient, name: str, namespace: str, container: str
    ) -> list[str]:
        """The last `log_tail_lines` lines of one container's log, or none (with a warning) when it has none to give."""
        try:
            # Not core_api.read_namespaced_pod_log: with its content preloaded it mangles the text
            # (kubernetes-client/python#811); dagster-k8s's helper reads it raw.
            logs = k8s.retrieve_pod_logs(name, namespace, container_name=container, tail_lines=self.log_tail_lines)
        except (kubernetes.client.ApiException, HTTPError, ValueError) as exc:
            context.log.warning(f"could not read the log of {container} in agent pod {name}: {_shorten(str(exc), 500)}")
            return []
        return logs.splitlines()

    def _delete_pod(self, context: dg.OpExecutionContext, client: _AgentPipesK8sClient, invocation_id: str) -> None:
        """Delete the launched pod (found by name, else by its invocation label); a missing pod is fine."""
        try:
            core_api = client.k8s.core_api if client.k8s is not None else kubernetes.client.CoreV1Api()
            if client.pod is not None:
                targets = [client.pod]
            else:  # interrupted between create and log-following, or create failed: look it up
                selector = f"{INVOCATION_LABEL}={invocation_id}"
                listed: Any = core_api.list_namespaced_pod(self.namespace, label_selector=selector)
                pods = listed.items
                targets = [
                    (self.namespace, pod.metadata.name)
                    for pod in pods
                    if (pod.metadata.labels or {}).get(INVOCATION_LABEL) == invocation_id
                ]
            for namespace, name in targets:
                try:
                    core_api.delete_namespaced_pod(name, namespace)
                except kubernetes.client.ApiException as exc:
                    if exc.status != 404:
                        raise
        except (kubernetes.client.ApiException, HTTPError, kubernetes.config.ConfigException) as exc:
            context.log.warning(f"could not look up or delete the agent pod: {_shorten(str(exc), 500)}")

    def end_run_agents(self, run_id: str) -> AgentCleanup:
        """Delete the agent pods of the Dagster run `run_id`, which has ended without its op deleting them.

        Decided first, then done: the pods labelled `dagster/run-id=<run_id>` (and `app.kubernetes.io/name=
        codexk8s-agent`) are listed in every namespace of `cleanup_namespaces` (settings, never the run's tags),
        each checked again here for the exact run id and its namespace; then each is deleted (its grace period lets
        the runner stop the agent and push nothing). The client is the platform's (`kube.load_kube`), from the same
        source as the runtime's own (`load_incluster_config`, else `kubeconfig_file`). Missing credentials, a refusal
        or an unreachable API server end up in the result's errors, never raised."""
        namespaces = self.cleanup_namespaces()
        if not run_id or label_value(run_id) != run_id:  # the label would not be this id: no exact selector
            return AgentCleanup(run_id, namespaces, errors=(f"run id {run_id!r} is not a label value: not looked up",))
        try:
            kube = load_kube(self.kubeconfig_file, context=self.kube_context, in_cluster=self.load_incluster_config)
        except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
            source = "the in-cluster service account" if self.load_incluster_config else "the kubeconfig"
            error = f"no Kubernetes credentials from {source}: {_shorten(str(exc), 300)}"
            return AgentCleanup(run_id, namespaces, errors=(error,))
        try:
            core = kubernetes.client.CoreV1Api(kube.api)
            found, errors = _run_agent_pods(core, run_id, namespaces)
            deleted: list[str] = []
            gone: list[str] = []
            left: list[str] = []
            for namespace, name in found:
                try:
                    core.delete_namespaced_pod(name, namespace, _request_timeout=_CLEANUP_TIMEOUT_SECONDS)
                except kubernetes.client.ApiException as exc:
                    if exc.status == 404:
                        gone.append(f"{namespace}/{name}")
                        continue
                    left.append(f"{namespace}/{name}")
                    errors.append(f"delete {namespace}/{name}: {_api_error(exc)}")
                except (HTTPError, OSError, ValueError) as exc:
                    left.append(f"{namespace}/{name}")
                    errors.append(f"delete {namespace}/{name}: {_api_error(exc)}")
                else:
                    deleted.append(f"{namespace}/{name}")
        finally:
            kube.api.close()
        return AgentCleanup(run_id, namespaces, tuple(deleted), tuple(gone), tuple(left), tuple(errors))

    def cleanup_namespaces(self) -> tuple[str, ...]:
        """Where a run's agent pods may be: the launch namespace, then the other agent namespaces (a pod launched
        before the launch namespace changed is in one of them)."""
        return tuple(dict.fromkeys([self.namespace, *self.agent_namespaces]))


def _run_agent_pods(core: Any, run_id: str, namespaces: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(namespace, name) of each agent pod of `run_id` in `namespaces`, and what could not be listed."""
    selector = f"{APP_NAME_LABEL}={AGENT_APP_NAME},{RUN_ID_LABEL}={run_id}"
    found: list[tuple[str, str]] = []
    errors: list[str] = []
    for namespace in namespaces:
        try:
            listed: Any = core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=_CLEANUP_TIMEOUT_SECONDS
            )
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:  # 404: no such namespace, so no pod in it
                errors.append(f"list pods in {namespace}: {_api_error(exc)}")
            continue
        except (HTTPError, OSError, ValueError) as exc:
            errors.append(f"list pods in {namespace}: {_api_error(exc)}")
            continue
        for pod in listed.items:
            meta = pod.metadata
            labels = meta.labels or {}
            # The API server applied the selector; checked again, so that nothing but this run's agent pods in this
            # namespace is ever deleted, whatever answered.
            if (
                labels.get(RUN_ID_LABEL) == run_id
                and labels.get(APP_NAME_LABEL) == AGENT_APP_NAME
                and meta.namespace in (None, namespace)
                and meta.name
            ):
                found.append((namespace, meta.name))
    return found, errors


def _api_error(exc: BaseException) -> str:
    """An API error in a few words: the status and the API server's own message (e.g. which verb RBAC refused)."""
    if isinstance(exc, kubernetes.client.ApiException):
        detail = ""
        with suppress(ValueError, AttributeError):  # a body that is not the API server's Status: the code alone
            detail = str(json.loads(exc.body or "").get("message") or "")
        return _shorten(f"{exc.status} {exc.reason}" + (f": {detail}" if detail else ""), 300)
    return _shorten(f"{type(exc).__name__}: {exc}", 300)


def runtime_from_environment(environ: Mapping[str, str]) -> KubernetesAgentRuntime:
    """The runtime with any `CODEXK8S_K8S_*` overrides present in `environ` (non-secret settings only).

    Resources read their settings from the environment, never from run config (shown in the UI); unlike
    `dg.EnvVar`, an unset variable keeps the default instead of failing the launch.
    """
    fields = {
        "namespace": settings.K8S_NAMESPACE_VAR,
        "service_account": settings.K8S_SERVICE_ACCOUNT_VAR,
        "token_secret_name": settings.K8S_TOKEN_SECRET_VAR,
        "token_secret_key": settings.K8S_TOKEN_SECRET_KEY_VAR,
        "image_pull_policy": settings.K8S_IMAGE_PULL_POLICY_VAR,
        "runner_image": settings.K8S_RUNNER_IMAGE_VAR,
        "workspace_size_limit": settings.K8S_WORKSPACE_SIZE_VAR,
        "agent_ephemeral_storage": settings.K8S_AGENT_STORAGE_VAR,
        "runner_ephemeral_storage": settings.K8S_RUNNER_STORAGE_VAR,
    }
    values: dict[str, Any] = {field: environ[var] for field, var in fields.items() if environ.get(var)}
    namespaces = [name.strip() for name in environ.get(settings.K8S_AGENT_NAMESPACES_VAR, "").split(",")]
    if any(namespaces):
        values["agent_namespaces"] = [name for name in namespaces if name]
    return KubernetesAgentRuntime(**values)


__all__ = [
    "CONTAINER_NAME",
    "CORRELATION_TAG",
    "KubernetesAgentRuntime",
    "PodSpecError",
    "build_pod_meta",
    "build_pod_spec",
    "default_agent",
    "label_value",
    "pod_runner_spec",
    "runtime_from_environment",
]
