"""A Kubernetes API server for the drift tests: kmock's emulator, with discovery describing a few real kinds.

The emulator runs on its own event loop in a background thread; the drift check (synchronous, the real
`kubernetes` client) runs in the test's thread, as it does in production. Tests create their objects through
the real client too (`Cluster.create`), then read back what requests the server saw (`Cluster.requests`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import pytest

from codexk8s_pipelines.drift import api_client_from_kubeconfig
from tests.helpers import kmock_kubeconfig

REPO = Path(__file__).resolve().parents[2]

# What a real API server's discovery says of the kinds the tests use: plural, kind, namespaced.
RESOURCES: dict[str, tuple[str, bool]] = {
    "v1/configmaps": ("ConfigMap", True),
    "v1/secrets": ("Secret", True),
    "v1/services": ("Service", True),
    "v1/serviceaccounts": ("ServiceAccount", True),
    "apps/v1/deployments": ("Deployment", True),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
}
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass
class Cluster:
    """The running emulator as the tests see it: a real ApiClient, object creation, and the request log."""

    emulator: kmock.KubernetesEmulator
    loop: asyncio.AbstractEventLoop
    api_client: Any
    kubeconfig: Path

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the emulator's loop (its state is only touched there) and return its result."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=10)

    def create(self, *objects: dict[str, Any], namespace: str = "default") -> None:
        """Create objects through the real client, as `kubectl create` would."""
        for obj in objects:
            kubernetes.utils.create_from_dict(self.api_client, obj, namespace=namespace)

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path, query) of every request the server handled, in order."""
        return self.call(lambda: [(r.method.value.upper(), r.url.path, dict(r.params)) for r in list(self.emulator)])

    def forbid(self, resource: str, action: kmock.action = kmock.action.FETCH) -> None:
        """Answer `action` on `resource` with 403, as RBAC would."""
        error = kmock.KubernetesError(status=403, reason="Forbidden", message=f"{resource} is forbidden")
        self.fail(error, action, kmock.resource(resource))

    def fail(self, error: kmock.KubernetesError, *criteria: Any) -> None:
        """Answer requests matching `criteria` (kmock's: actions, resources, `"get /path"`) with `error`."""

        def install() -> None:
            self.emulator[criteria] << error

        self.call(install)

    def declare(self, resource: str, kind: str, *, namespaced: bool) -> None:
        """Serve one more kind in discovery, as installing a CRD would."""

        def install() -> None:
            self.emulator.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=set(VERBS))

        self.call(install)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kmock-drift", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def start() -> kmock.KubernetesEmulator:
        emulator = await stack.enter_async_context(kmock.KubernetesEmulator())
        await stack.enter_async_context(kmock.Server(emulator))
        for resource, (kind, namespaced) in RESOURCES.items():
            emulator.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=set(VERBS))
        return emulator

    emulator = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    kubeconfig = kmock_kubeconfig(tmp_path / "kubeconfig", str(emulator.url))
    api_client = api_client_from_kubeconfig(str(kubeconfig))
    try:
        yield Cluster(emulator, loop, api_client, kubeconfig)
    finally:
        api_client.close()
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _helm_path() -> Path:
    configured = os.environ.get("CODEXK8S_HELM")
    return Path(configured) if configured else REPO / ".tools" / "helm"


@pytest.fixture(scope="session")
def helm_bin() -> str:
    """The real helm binary (`$CODEXK8S_HELM`, else `.tools/helm`, which `make test` fetches)."""
    path = _helm_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"no helm binary at {path}: run `make .tools/helm` or set CODEXK8S_HELM")
    return str(path)
