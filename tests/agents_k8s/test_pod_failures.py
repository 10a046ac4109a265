"""Agent pods that end, or never start, without the runner reporting a result: the runtime says why, promptly.

Each test gives the pod one fixed status (as the kubelet would leave it) and a log endpoint that answers as a real
API server does: 400 "is waiting to start: PodInitializing" for a container that never started. The runtime runs
for real (kubernetes client, dagster-k8s, Dagster); only time is virtual: dagster-k8s's client takes its timer and
sleeper from `DagsterKubernetesClient.production_client`, and the runtime's own wait uses the same ones, so a wait
of hours is a few dozen polls here, and how long a run waited is measured in that virtual time.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kmock
import pytest
from dagster_k8s.client import DagsterKubernetesClient

from codexk8s_pipelines.agents.k8s_runtime import KubernetesAgentRuntime
from codexk8s_pipelines.agents.runner_spec import RunnerResult

from .conftest import FakePod, KubeApi, _container_status
from .test_k8s_runtime import _run_in_op, _spec

IMAGE = "ghcr.io/codex-k8s/agent-runner:1.2.3"  # the test catalog agent's (and so every container's) image
AGENT_LOG = ["[agent] editing src/app.py", "[agent] running npm test"]
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VirtualClock:
    """Virtual seconds for dagster-k8s's client and the runtime's wait: each poll advances `step` seconds and
    really sleeps a little, so that the emulator's thread serves the requests in between."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 1_000_000.0
        self.polls = 0

    def timer(self) -> float:
        return self.now

    def sleeper(self, _seconds: float) -> None:
        self.now += self.step
        self.polls += 1
        time.sleep(0.01)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], VirtualClock]:
    def install(step: float) -> VirtualClock:
        virtual = VirtualClock(step)
        original = DagsterKubernetesClient.production_client

        def production_client(*args: Any, **kwargs: Any) -> DagsterKubernetesClient:
            real = original(*args, **kwargs)
            return DagsterKubernetesClient(real.batch_api, real.core_api, real.logger, virtual.sleeper, virtual.timer)

        monkeypatch.setattr(DagsterKubernetesClient, "production_client", staticmethod(production_client))
        return virtual

    return install


def _fixed_pod(kube_api: KubeApi, status: dict[str, Any], logs: dict[str, list[str]] | None = None) -> None:
    """Every new pod gets `status` at once and keeps it; its log endpoint serves `logs` by container, and answers
    400 for a container with no log (never started), as a real API server does."""
    kubelet, logs = kube_api.kubelet, logs or {}

    async def run(pod: FakePod) -> None:
        obj = kubelet.emulator.objects[pod.key]
        if not obj.deleted:
            obj.patch({"status": status})
        pod.done.set()

    async def serve_log(request: kmock.Request) -> bytes:
        container = str(request.params.get("container") or "agent-runner")
        if container not in logs:
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f'container "{container}" in pod "{request.name}" is waiting to start: PodInitializing',
            )
        return "".join(line + "\n" for line in logs[container]).encode()

    kubelet._run = run

    def reroute() -> None:  # ahead of the fixture's own log reaction
        _ = (kube_api.emulator**100)[kmock.resource("v1/pods"), kmock.subresource("log")] << serve_log

    kube_api.call(reroute)


def _runtime(kube_api: KubeApi, **settings: Any) -> KubernetesAgentRuntime:
    return KubernetesAgentRuntime(
        namespace="agents-test",
        load_incluster_config=False,
        kubeconfig_file=str(kube_api.kubeconfig),
        poll_interval_seconds=0.05,
        **settings,
    )


def _init_statuses(agent_state: dict[str, Any]) -> dict[str, Any]:
    """The checkout done, the agent container in `agent_state`, the main container never started."""
    return {
        "initContainerStatuses": [
            _container_status("checkout", IMAGE, {"terminated": {"exitCode": 0, "reason": "Completed"}}),
            _container_status("agent", IMAGE, agent_state),
        ],
        "containerStatuses": [_container_status("agent-runner", IMAGE, {"waiting": {"reason": "PodInitializing"}})],
    }


def _run(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path, clock: VirtualClock, timeout_seconds: int = 1800, **kw: Any
) -> tuple[RunnerResult, float]:
    start = clock.now
    result = _run_in_op(_runtime(kube_api, **kw), _spec(prompt_file, timeout_seconds), tmp_path / "run")
    (pod,) = kube_api.pods().values()
    assert pod["deleted"], "the pod is deleted on this path too"
    return result, clock.now - start


# ------------------------------------------------------------------------------------------------ the deadline


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "agent_state",
    [
        # The runner's CancelGuard turns the kubelet's SIGTERM into a `cancelled` verdict and exits 0: the pod is
        # Failed, but no container failed. dagster-k8s waited up to five hours on "PodInitializing".
        {"terminated": {"exitCode": 0, "reason": "Completed"}},
        # Killed at the end of the grace period: dagster-k8s raised at once, but the pod was never read back.
        {"terminated": {"exitCode": 137, "reason": "Error"}},
    ],
    ids=["agent-exited-0", "agent-killed"],
)
def test_a_deadline_during_the_agent_container_is_timed_out_at_once(
    kube_api: KubeApi,
    prompt_file: Path,
    tmp_path: Path,
    clock: Callable[[float], VirtualClock],
    agent_state: dict[str, Any],
) -> None:
    status = {"phase": "Failed", "reason": "DeadlineExceeded", "message": DEADLINE_MESSAGE, "startTime": _now()}
    _fixed_pod(kube_api, {**status, **_init_statuses(agent_state)}, {"checkout": [], "agent": AGENT_LOG})
    virtual = clock(60.0)

    result, waited = _run(kube_api, prompt_file, tmp_path, virtual)

    assert (result.status, result.reason) == ("timed_out", "pod_deadline_exceeded"), result.message
    assert result.message.startswith(
        'the agent pod ran past its activeDeadlineSeconds (2100s) during container "agent"'
    )
    assert "[agent] running npm test" in result.message  # the agent container's log: the main one has none
    # A few polls (the fake kubelet sets the status a moment after creation), not dagster-k8s's five hours.
    assert waited < 1800, f"reported after {waited:.0f} virtual seconds: the pod had failed from the start"


# ------------------------------------------------------------------------------------------------ OOM kills


@pytest.mark.timeout(60)
def test_an_oom_killed_agent_container_is_reported_as_such_with_its_memory_limit(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path, clock: Callable[[float], VirtualClock]
) -> None:
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": _now()}}
    _fixed_pod(kube_api, {"phase": "Failed", "startTime": _now(), **_init_statuses(oom)}, {"agent": AGENT_LOG})

    result, _ = _run(kube_api, prompt_file, tmp_path, clock(600.0))

    assert (result.status, result.reason) == ("failed", "agent_oom_killed"), result.message
    assert 'container "agent" was OOMKilled (exit 137) at its memory limit of 3Gi' in result.message
    assert "[agent] running npm test" in result.message


@pytest.mark.timeout(60)
def test_an_evicted_pod_says_why_it_was_evicted(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path, clock: Callable[[float], VirtualClock]
) -> None:
    gone = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}
    why = "Pod ephemeral local storage usage exceeds the total limit of containers 24Gi."
    status = {"phase": "Failed", "reason": "Evicted", "message": why, **_init_statuses(gone)}
    _fixed_pod(kube_api, status, {"agent": AGENT_LOG})

    result, _ = _run(kube_api, prompt_file, tmp_path, clock(600.0))

    assert (result.status, result.reason) == ("failed", "pod_failed")
    assert f"pod Failed (Evicted): {why}" in result.message
    assert 'container "agent" exited 137 (ContainerStatusUnknown)' in result.message


# ------------------------------------------------------------------------------------------------ never started

PENDING = 600  # pending_timeout_seconds in these tests; each poll is STEP virtual seconds
STEP = 300.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient memory.",
                    }
                ],
            },
            "the pod cannot be scheduled (Unschedulable): 0/3 nodes are available: 3 Insufficient memory.",
        ),
        (
            {
                "phase": "Pending",
                "startTime": "2026-01-01T00:00:00Z",
                **_init_statuses(
                    {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": 'secret "codexk8s-model-keys" not found',
                        }
                    }
                ),
            },
            'container "agent" cannot be created (CreateContainerConfigError): secret "codexk8s-model-keys" not found',
        ),
        (
            {
                "phase": "Pending",
                "startTime": "2026-01-01T00:00:00Z",
                "initContainerStatuses": [
                    _container_status(
                        "checkout",
                        IMAGE,
                        {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{IMAGE}"'}},
                    ),
                    _container_status("agent", IMAGE, {"waiting": {"reason": "PodInitializing"}}),
                ],
                "containerStatuses": [
                    _container_status("agent-runner", IMAGE, {"waiting": {"reason": "PodInitializing"}})
                ],
            },
            f'container "checkout" cannot pull its image {IMAGE} (ImagePullBackOff): Back-off pulling image',
        ),
    ],
    ids=["unschedulable", "missing-secret", "image-pull-backoff"],
)
def test_a_pod_that_cannot_start_fails_after_pending_timeout_seconds_naming_the_cause(
    kube_api: KubeApi,
    prompt_file: Path,
    tmp_path: Path,
    clock: Callable[[float], VirtualClock],
    status: dict[str, Any],
    cause: str,
) -> None:
    """dagster-k8s waited a day for an unschedulable pod, five hours for a missing Secret, and gave up on the
    first image pull back-off, which the kubelet may still get over."""
    _fixed_pod(kube_api, status)
    virtual = clock(STEP)

    result, waited = _run(kube_api, prompt_file, tmp_path, virtual, pending_timeout_seconds=PENDING)

    assert (result.status, result.reason) == ("failed", "pod_failed"), result.message
    assert result.message.startswith(f"the agent pod did not start within pending_timeout_seconds ({PENDING}s): ")
    assert cause in result.message
    assert PENDING <= waited <= PENDING + STEP, f"waited {waited:.0f} virtual seconds"


@pytest.mark.timeout(60)
def test_an_image_that_can_never_be_pulled_fails_at_once_naming_it(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path, clock: Callable[[float], VirtualClock]
) -> None:
    bad = {"waiting": {"reason": "InvalidImageName", "message": 'Failed to apply default image tag "ghcr.io/x:"'}}
    status = {
        "phase": "Pending",
        "initContainerStatuses": [_container_status("checkout", IMAGE, bad)],
        "containerStatuses": [_container_status("agent-runner", IMAGE, {"waiting": {"reason": "PodInitializing"}})],
    }
    _fixed_pod(kube_api, status)

    result, waited = _run(kube_api, prompt_file, tmp_path, clock(STEP), pending_timeout_seconds=100 * PENDING)

    assert (result.status, result.reason) == ("failed", "pod_failed"), result.message
    assert f'the agent pod cannot start: container "checkout" cannot pull its image {IMAGE}' in result.message
    assert waited < 10 * PENDING, f"waited {waited:.0f} virtual seconds for a pod that can never start"


@pytest.mark.timeout(60)
def test_a_pod_kubernetes_never_ends_is_given_up_after_its_deadline_and_pending_timeout(
    kube_api: KubeApi, prompt_file: Path, tmp_path: Path, clock: Callable[[float], VirtualClock]
) -> None:
    """The agent container runs on past the pod's deadline and no kubelet ends it (its node is gone, say):
    dagster-k8s would wait five hours for it; the runtime's own bound is activeDeadlineSeconds + pending."""
    running = {"running": {"startedAt": _now()}}
    _fixed_pod(kube_api, {"phase": "Running", "startTime": _now(), **_init_statuses(running)}, {"agent": AGENT_LOG})
    bound = 60 + 0 + PENDING  # the spec's timeout, no margin, the pending bound

    result, waited = _run(
        kube_api,
        prompt_file,
        tmp_path,
        clock(STEP),
        timeout_seconds=60,
        pending_timeout_seconds=PENDING,
        deadline_margin_seconds=0,
    )

    assert (result.status, result.reason) == ("timed_out", "pod_deadline_exceeded"), result.message
    assert f"plus pending_timeout_seconds ({bound}s) and Kubernetes had not ended it" in result.message
    assert 'container "agent" is running' in result.message
    assert bound <= waited <= bound + STEP, f"waited {waited:.0f} virtual seconds"
