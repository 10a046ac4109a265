"""A Kubernetes API server for the runtime tests: kmock's emulator, plus a fake kubelet that runs pods locally.

kmock stores what the real kubernetes client creates, lists, fetches and deletes, but it has no nodes: a pod
never gets a status and has no logs. The fake kubelet below plays the node. When a pod appears it runs its init
containers one after the other, then its first container, each as a local process with that container's own
environment (plain values, and `secretKeyRef`s from the secrets the test declares), serves the main container's
output as the pod log (timestamped, as `kubectl logs --timestamps`), and moves the pod's status through Pending
(init containers), Running and Terminated. The processes are stand-ins for the runner's phases: an init container
records what it was given (which variables, a digest of the token) in a directory of the pod, and the main one
reports those facts through the real runner's `Reporter`, so the Pipes messages are the runner's.

The emulator runs on its own event loop in a background thread: the code under test (the kubernetes client,
dagster-k8s, Dagster itself) is synchronous and runs in the test's main thread, as it does in production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import pytest

from codexk8s_pipelines.agents.k8s_runtime import KubernetesAgentRuntime
from codexk8s_pipelines.agents.sandbox import host_root_args
from tests.helpers import REPO_ROOT, kmock_kubeconfig

# The agent runner's stand-in: checks what the pod gave it, reports through the runner's own Reporter.
FAKE_RUNNER = r"""
import hashlib, json, os, sys
from codexk8s_pipelines.agents.git_workspace import Scrubber
from codexk8s_pipelines.agents.runner import Reporter
from codexk8s_pipelines.agents.runner_spec import RunnerResult, RunnerSpec

behaviour, container = sys.argv[1], sys.argv[2]
token = os.environ.get("CODEXK8S_GITHUB_TOKEN")
digest = lambda v: hashlib.sha256(v.encode()).hexdigest() if v else None
spec = RunnerSpec.model_validate_json(os.environ["CODEXK8S_RUNNER_SPEC"])
pod_dir = os.environ["FAKE_POD_DIR"]
if container != "agent-runner":  # an init container: record what it was given, in order
    seen = {"env": sorted(k for k in os.environ if k != "FAKE_POD_DIR"), "token_sha256": digest(token),
            "openai_sha256": digest(os.environ.get("OPENAI_API_KEY")), "prompt": os.environ.get("CODEXK8S_PROMPT"),
            "mcp_sha256": digest(os.environ.get("CODEXK8S_MCP_TOKEN")),
            "spec_mcp_sha256": digest(spec.env.get("CODEXK8S_MCP_TOKEN")), "after": sorted(os.listdir(pod_dir))}
    with open(os.path.join(pod_dir, container + ".json"), "w") as handle:
        json.dump(seen, handle)
    print(container + " done", flush=True)
    sys.exit(0)
if behaviour == "crash":
    print("Traceback (most recent call last): git push refused for " + str(token), flush=True)
    sys.exit(3)
reporter = Reporter.open(Scrubber(token))
try:
    reporter.status("checkout", "cloning " + spec.remote_url + " into " + spec.workdir)
    facts = {
        "workdir": spec.workdir,
        "prompt_file": spec.prompt_file,
        "command": spec.command,
        "prompt": os.environ.get("CODEXK8S_PROMPT"),
        "token_sha256": digest(token),
        "openai_sha256": digest(os.environ.get("OPENAI_API_KEY")),
        "via_pipes": reporter.via_pipes,
        "init": {name[:-5]: json.load(open(os.path.join(pod_dir, name))) for name in sorted(os.listdir(pod_dir))},
    }
    ok = behaviour == "succeed"
    result = RunnerResult(
        status="succeeded" if ok else "failed",
        reason="ok" if ok else "agent_failed",
        message="pushed" if ok else "the agent exited 1",
        summary=json.dumps(facts),
        branch=spec.branch,
        commit="0123abc" if ok else None,
        pushed=ok,
        agent_exit_code=0 if ok else 1,
    )
    reporter.result(result)
finally:
    reporter.close()
print("runner done", flush=True)
sys.exit(0 if behaviour == "succeed" else 1)
"""

BEHAVIOURS = ("succeed", "fail", "fail_fast", "crash", "hang", "deadline")


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _container_status(name: str, image: str, state: dict[str, Any], *, ready: bool = False) -> dict[str, Any]:
    # Every field the kubernetes client's V1ContainerStatus requires.
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": ready,
        "restartCount": 0,
        "started": ready,
        "state": state,
    }


_NOT_FROM_HOST = {"proc", "dev", "sys", "tmp", "run", "workspace", "runner"}
IMAGE_WORKDIR = "/workspace"  # Dockerfile.agent's WORKDIR: where a container without `workingDir` starts


def _real_argv(container: dict[str, Any], pod_dir: Path, writable: list[Path], read_only: list[Path]) -> list[str]:
    """The container's own `command` as its node would run it, in bubblewrap: the host's filesystem read-only in
    place of the image (python with this package, git, the agent CLIs), its own /tmp, PID namespace and /proc, and
    the pod's emptyDir volumes at their mount paths, read-only where the container mounts them so. The containers of
    one pod share those volumes and nothing else, as on a node."""
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session"]
    args += [*host_root_args(_NOT_FROM_HOST), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in read_only:
        args += ["--ro-bind", str(path), str(path)]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    for mount in container.get("volumeMounts") or []:
        volume = pod_dir / mount["name"]
        volume.mkdir(exist_ok=True)
        os.chmod(volume, 0o777)
        args += ["--ro-bind" if mount.get("readOnly") else "--bind", str(volume), mount["mountPath"]]
    return [*args, "--chdir", container.get("workingDir") or IMAGE_WORKDIR, "--", *container["command"]]


@dataclass
class FakePod:
    """What the fake kubelet knows of one pod: its log lines (timestamped) and whether its container ended."""

    key: Any
    logs: list[str] = field(default_factory=list)
    init_logs: dict[str, list[str]] = field(default_factory=dict)
    init_statuses: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    process: asyncio.subprocess.Process | None = None
    last_ts: datetime.datetime | None = None

    def log(self, line: str) -> None:
        # Strictly increasing timestamps: dagster-k8s joins lines that share one into a single log item.
        ts = datetime.datetime.now(tz=datetime.UTC)
        if self.last_ts is not None and ts <= self.last_ts:
            ts = self.last_ts + datetime.timedelta(microseconds=1)
        self.last_ts = ts
        self.logs.append(f"{ts.strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {line}")


@dataclass
class FakeKubelet:
    """Runs each new pod's first container as a local process; see the module docstring."""

    emulator: kmock.KubernetesEmulator
    secrets: dict[str, dict[str, str]]
    behaviour: str = "succeed"
    # behaviour "real": the containers' own commands, each in a bubblewrap sandbox (see `_real_argv`), with these
    # host paths writable as well (a test's git remote) and this PATH (the image's: the venv, the agent CLIs).
    real_binds: list[Path] = field(default_factory=list)
    real_read_only: list[Path] = field(default_factory=list)  # shown again over the pod's own /tmp (a checkout there)
    real_path: str = "/usr/bin:/bin"
    pods: dict[Any, FakePod] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def loop(self) -> None:
        while True:
            for key, obj in list(self.emulator.objects.items()):
                if key not in self.pods and not obj.deleted and key[0].plural == "pods":
                    self.pods[key] = FakePod(key)
                    task = asyncio.create_task(self._run(self.pods[key]))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(0.02)

    def _argv(self, container: dict[str, Any], pod_dir: str) -> list[str]:
        if self.behaviour == "real":
            return _real_argv(container, Path(pod_dir), self.real_binds, self.real_read_only)
        return [sys.executable, "-c", FAKE_RUNNER, self.behaviour, container["name"]]

    async def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {
            "PATH": self.real_path if self.behaviour == "real" else "/usr/bin:/bin",
            "HOME": "/tmp",
            "LC_ALL": "C.UTF-8",
        }
        for entry in container.get("env") or []:
            if "value" in entry:
                env[entry["name"]] = entry["value"]
            else:
                ref = entry["valueFrom"]["secretKeyRef"]
                env[entry["name"]] = await self._secret(ref["name"], ref["key"])
        return env

    async def _secret(self, name: str, key: str) -> str:
        """A secret's value: one the test declared, else one created through the API (alive), waited for as a
        kubelet retries a container whose Secret is not there yet (for at most 10 s here)."""
        if name in self.secrets:
            return self.secrets[name][key]
        for _ in range(500):
            for (resource, _namespace, found), obj in self.emulator.objects.items():
                if resource.plural == "secrets" and found == name and not obj.deleted:
                    raw = obj.raw
                    if key in (raw.get("stringData") or {}):
                        return str(raw["stringData"][key])
                    return base64.b64decode(raw["data"][key]).decode()
            await asyncio.sleep(0.02)
        raise KeyError(f"secret {name} never appeared")

    def _status(self, pod: FakePod, status: dict[str, Any]) -> None:
        if pod.init_statuses and "initContainerStatuses" not in status:  # ended init containers stay listed
            status = {**status, "initContainerStatuses": pod.init_statuses}
        obj = self.emulator.objects[pod.key]
        if not obj.deleted:
            obj.patch({"status": status})

    async def _run(self, pod: FakePod) -> None:
        raw = self.emulator.objects[pod.key].raw
        container = raw["spec"]["containers"][0]
        name, image = container["name"], container["image"]
        waiting = {"waiting": {"reason": "ContainerCreating"}}
        behaviour = self.behaviour
        pod_dir: str | None = None
        try:
            if behaviour == "deadline":
                pod.log("still working...")
                terminated = {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": _now()}}
                self._status(
                    pod,
                    {
                        "phase": "Failed",
                        "reason": "DeadlineExceeded",
                        "message": "Pod was active on the node longer than the specified deadline",
                        "containerStatuses": [_container_status(name, image, terminated)],
                    },
                )
                return
            if behaviour != "fail_fast":  # fail_fast: the container ends before anyone sees it run
                self._status(pod, {"phase": "Pending", "containerStatuses": [_container_status(name, image, waiting)]})
            running = {"running": {"startedAt": _now()}}
            if behaviour == "hang":
                self._status(
                    pod,
                    {"phase": "Running", "containerStatuses": [_container_status(name, image, running, ready=True)]},
                )
                while not self.emulator.objects[pod.key].deleted:
                    await asyncio.sleep(0.02)
                return
            pod_dir = tempfile.mkdtemp(prefix="fake-pod-")
            inits = raw["spec"].get("initContainers") or []
            done = pod.init_statuses
            for init in inits:  # one after the other, each with its own environment, as the kubelet does
                running_init = _container_status(init["name"], init["image"], {"running": {"startedAt": _now()}})
                init_waiting = {"waiting": {"reason": "PodInitializing"}}
                self._status(pod, {"phase": "Pending", "initContainerStatuses": [*done, running_init],
                                   "containerStatuses": [_container_status(name, image, init_waiting)]})  # fmt: skip
                proc = await asyncio.create_subprocess_exec(
                    *self._argv(init, pod_dir), env={**(await self._env(init)), "FAKE_POD_DIR": pod_dir},
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                out, _ = await proc.communicate()
                pod.init_logs[init["name"]] = out.decode("utf-8", "replace").splitlines()
                ended = {"terminated": {"exitCode": proc.returncode, "reason": "Completed"}}
                done.append(_container_status(init["name"], init["image"], ended))
            pod.process = await asyncio.create_subprocess_exec(
                *self._argv(container, pod_dir),
                env={**(await self._env(container)), "FAKE_POD_DIR": pod_dir},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            if behaviour != "fail_fast":
                self._status(
                    pod,
                    {"phase": "Running", "containerStatuses": [_container_status(name, image, running, ready=True)]},
                )
            assert pod.process.stdout is not None
            async for line in pod.process.stdout:
                pod.log(line.decode("utf-8", "replace").rstrip("\n"))
            code = await pod.process.wait()
            terminated = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
            self._status(
                pod,
                {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "containerStatuses": [_container_status(name, image, terminated)],
                },
            )
        finally:
            if pod_dir is not None:  # the pod's volumes go with it, as an emptyDir does
                shutil.rmtree(pod_dir, ignore_errors=True)
            pod.done.set()

    async def serve_log(self, request: kmock.Request) -> bytes:
        """`GET .../pods/<name>/log`: the whole log once the container ended (follow), or its tail."""
        pod = self.pods.get((request.resource, request.namespace, request.name))
        if pod is None:
            return b""
        if str(request.params.get("follow", "")).lower() == "true":
            await asyncio.wait_for(pod.done.wait(), timeout=30)
        lines = pod.logs
        if "tailLines" in request.params:
            lines = lines[-int(request.params["tailLines"]) :]
        if str(request.params.get("timestamps", "")).lower() != "true":
            lines = [line.partition(" ")[2] for line in lines]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    async def stop(self) -> None:
        for pod in self.pods.values():
            if pod.process is not None and pod.process.returncode is None:
                pod.process.kill()
                await pod.process.wait()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class KubeApi:
    """The running emulator as the tests see it: a kubeconfig for the client, and thread-safe inspection."""

    emulator: kmock.KubernetesEmulator
    kubelet: FakeKubelet
    kubeconfig: Path
    loop: asyncio.AbstractEventLoop

    def runtime(self) -> KubernetesAgentRuntime:
        """The agent runtime a test's op runs with: this emulator's API server, in the test namespace, polled fast."""
        return KubernetesAgentRuntime(
            namespace="agents-test",
            load_incluster_config=False,
            kubeconfig_file=str(self.kubeconfig),
            poll_interval_seconds=0.05,
        )

    def run_pods_for_real(self, writable: list[Path], path: str) -> None:
        """From now on the kubelet runs each container's own command (behaviour "real"), with `writable` host paths
        (a test's git remote and scripts) and the checkout read-only (its venv and agent CLIs, also from a clone under
        /tmp), on the image's PATH `path`."""
        self.kubelet.behaviour = "real"
        self.kubelet.real_binds = writable
        self.kubelet.real_read_only = [REPO_ROOT]
        self.kubelet.real_path = path

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the emulator's loop (its state is only touched there) and return its result."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=10)

    def pods(self) -> dict[str, dict[str, Any]]:
        """Every pod the API server ever stored, by name: the manifest as created, and whether it is deleted."""
        return self.objects("pods")

    def objects(self, plural: str) -> dict[str, dict[str, Any]]:
        """Every object of a kind the API server ever stored, by name: the manifest as created, as last stored
        (after patches), and whether it is deleted."""

        def snapshot() -> dict[str, dict[str, Any]]:
            result = {}
            for key, obj in self.emulator.objects.items():
                if key[0].plural == plural:
                    stored = [v for v in obj.history if v is not None]
                    result[key[2]] = {
                        "namespace": key[1],
                        "created": copy.deepcopy(stored[0].raw),
                        "last": copy.deepcopy(stored[-1].raw),
                        "deleted": obj.deleted,
                    }
            return result

        return self.call(snapshot)

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path, query) of every request the server handled, in order."""
        return self.call(lambda: [(r.method.value.upper(), r.url.path, dict(r.params)) for r in list(self.emulator)])


@pytest.fixture
def fake_secrets() -> dict[str, dict[str, str]]:
    """The cluster's secrets as the kubelet resolves them; values shaped like real tokens so redaction sees them."""
    return {
        "codexk8s-github": {"token": "ghp_" + uuid.uuid4().hex + "abcd"},
        "openai": {"api-key": "sk-test-" + uuid.uuid4().hex},
    }


@pytest.fixture
def kube_api(tmp_path: Path, fake_secrets: dict[str, dict[str, str]]) -> Iterator[KubeApi]:
    saved_config = kubernetes.client.Configuration.get_default_copy()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kmock", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def start() -> tuple[kmock.KubernetesEmulator, FakeKubelet, asyncio.Task[None]]:
        emulator = await stack.enter_async_context(kmock.KubernetesEmulator())
        await stack.enter_async_context(kmock.Server(emulator))
        emulator.resources["v1/pods"] = {}
        emulator.resources["v1/secrets"] = {}
        kubelet = FakeKubelet(emulator, fake_secrets)

        def api_server_defaults(request: kmock.Request) -> dict[str, Any]:
            # What a real API server adds on create: namespace, uid, timestamp and a Pending status.
            key = (request.resource, request.namespace, request.data["metadata"]["name"])
            obj = emulator.objects[key]
            meta = {"namespace": request.namespace, "uid": str(uuid.uuid4()), "creationTimestamp": _now()}
            obj.patch({"metadata": meta, "status": {"phase": "Pending"}})
            return obj.raw

        emulator[kmock.action.CREATE, kmock.resource("v1/pods")] << api_server_defaults
        emulator[kmock.resource("v1/pods"), kmock.subresource("log")] << kubelet.serve_log
        return emulator, kubelet, asyncio.create_task(kubelet.loop())

    emulator, kubelet, task = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    api = KubeApi(emulator, kubelet, kmock_kubeconfig(tmp_path / "kubeconfig", str(emulator.url)), loop)
    try:
        yield api
    finally:

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await kubelet.stop()
            await stack.aclose()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        kubernetes.client.Configuration.set_default(saved_config)


# The prompt every runtime test hands its agent.
PROMPT = "Implement issue #42: add a health endpoint.\n"


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "prompt.md"
    path.parent.mkdir(parents=True)
    path.write_text(PROMPT, encoding="utf-8")
    return path
