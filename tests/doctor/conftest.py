"""Fixtures for `codexk8s doctor`: a healthy deployment (database, fake GitHub, kmock cluster) to break piece by piece.

The cluster is the agents_k8s emulator (`kube_api`) plus what doctor reads there: the agent namespace (kmock
parses `/api/v1/namespaces/<name>` as a namespace filter, not an object, so it is served by a reaction), the agent
service account, the token Secret, and SelfSubjectAccessReview answering allowed per request body unless the
(verb, resource, subresource) is in `Cluster.denied`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import psycopg
import pytest
import yaml

from codexk8s_pipelines.domain.stages import Role
from codexk8s_pipelines.store import PlatformStore
from tests.agents_k8s.conftest import KubeApi, fake_secrets, kube_api  # noqa: F401  (fixtures)
from tests.github_server import DEFAULT_TOKEN_LOGIN, GitHubServer, github_server  # noqa: F401  (fixture)
from tests.helpers import free_port

NAMESPACE = "codexk8s-agents"
SERVICE_ACCOUNT = "codexk8s-agent"
SECRET = "codexk8s-github"
REPO = "acme/shop"
PINNED_IMAGE = "ghcr.io/codex-k8s/agent-runner:1.4.2"
MODEL_SECRET = "codexk8s-model-keys"
MCP_SECRET = "doctor-test-mcp-signing-secret-0123456789abcdef"
SSAR = kmock.resource("authorization.k8s.io/v1/selfsubjectaccessreviews")
SECRETS = kmock.resource("v1/secrets")
VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1-kmock",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2025-05-15T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass
class Cluster:
    api: KubeApi
    namespaces: set[str] = field(default_factory=lambda: {NAMESPACE})
    denied: set[tuple[str, str, str]] = field(default_factory=set)
    reviews: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.api.kubeconfig

    def run(self, fn: Callable[[kmock.KubernetesEmulator], Any]) -> Any:
        emulator = self.api.emulator
        return self.api.call(lambda: fn(emulator))

    def delete_secret(self) -> None:
        self.run(lambda em: em.objects[SECRETS, NAMESPACE, SECRET].delete())

    def forbid_secrets(self) -> None:
        def forbidden(request: kmock.Request) -> None:
            raise kmock.KubernetesError(
                status=403,
                reason="Forbidden",
                message=f'secrets "{request.name}" is forbidden: User cannot get resource "secrets"',
            )

        self.run(lambda em: em[kmock.action.FETCH, SECRETS] << forbidden)


@pytest.fixture
def cluster(kube_api: KubeApi) -> Cluster:  # noqa: F811
    state = Cluster(kube_api)

    def setup(em: kmock.KubernetesEmulator) -> None:
        em.objects[kmock.resource("v1/serviceaccounts"), NAMESPACE, SERVICE_ACCOUNT] = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
        }
        em.objects[SECRETS, NAMESPACE, SECRET] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NAMESPACE},
            "data": {"token": "Z2hwX25vdF9hX3JlYWxfdG9rZW4="},
        }
        em.objects[SECRETS, NAMESPACE, MODEL_SECRET] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": MODEL_SECRET, "namespace": NAMESPACE},
            "data": {"OPENAI_API_KEY": "c2stbm90LWEtcmVhbC1rZXk="},
        }

        def namespace(request: kmock.Request) -> dict[str, Any]:
            if NAMESPACE not in state.namespaces:
                raise kmock.KubernetesObjectNotFoundError(message=f'namespaces "{NAMESPACE}" not found')
            meta = {"name": NAMESPACE}
            return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "status": {"phase": "Active"}}

        def review(request: kmock.Request) -> dict[str, Any]:
            # The emulator stores every created object under (resource, namespace, name); a review has no name, so
            # the stored one is dropped at once, or the next review would be a 409 conflict.
            em.objects[SSAR, None, None].delete()
            attrs = request.data["spec"]["resourceAttributes"]
            state.reviews.append(attrs)
            wanted = (attrs.get("verb"), attrs.get("resource"), attrs.get("subresource") or "")
            return {**request.data, "status": {"allowed": wanted not in state.denied}}

        em["get /version/"] << VERSION  # the kubernetes client asks with a trailing slash; kmock serves /version
        em[f"get /api/v1/namespaces/{NAMESPACE}"] << namespace
        em[kmock.action.CREATE, SSAR] << review

    state.run(setup)
    return state


def write_catalog(path: Path, images: dict[str, str] | None = None) -> Path:
    """A user catalog pinning every role's agent to PINNED_IMAGE, except the `images` given."""
    agents = {
        role.value: {
            "image": (images or {}).get(role.value, PINNED_IMAGE),
            "endpoint": {"key_secret": f"{MODEL_SECRET}/OPENAI_API_KEY"},  # as the chart's modelCredentials render
        }
        for role in Role
    }
    path.write_text(yaml.safe_dump({"agents": agents}), encoding="utf-8")
    return path


@dataclass
class Deployment:
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    database_url: str
    github: GitHubServer
    cluster: Cluster

    def set(self, name: str, value: str | None) -> None:
        if value is None:
            self.monkeypatch.delenv(name, raising=False)
        else:
            self.monkeypatch.setenv(name, value)

    def watch(self, *repos: str) -> None:
        config = self.tmp_path / "codexk8s.yaml"
        config.write_text(yaml.safe_dump({"repositories": [{"github": r} for r in repos]}), encoding="utf-8")
        self.set("CODEXK8S_CONFIG", str(config))

    def catalog(self, images: dict[str, str] | None = None) -> None:
        self.set("CODEXK8S_AGENT_CATALOG", str(write_catalog(self.tmp_path / "agents.yaml", images)))

    def local_agents(self, *, commands: tuple[str, ...] = ("codex",), key: str | None = "sk-doctor-test") -> Path:
        """A local machine whose runs could start their agents: the `commands` on PATH (scripts that do nothing), a
        bubblewrap that works (a stand-in: the probe only asks it to run `true`), the codex model key. The working
        directory has no .tools/bin (the checkout's would be found first). Returns the bin directory."""
        bin_dir = self.tmp_path / "agent-bin"
        bin_dir.mkdir(exist_ok=True)
        for name in (*commands, "bwrap"):
            (bin_dir / name).write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
            (bin_dir / name).chmod(0o755)
        self.set("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
        self.set("CODEXK8S_BWRAP", None)
        self.set("CODEXK8S_UNSAFE_NO_AGENT_SANDBOX", None)
        self.set("OPENAI_API_KEY", key)
        self.monkeypatch.chdir(self.tmp_path)
        return bin_dir

    def osv_database(self) -> None:
        """A fresh one-record OSV database where the platform looks by default (`<CODEXK8S_HOME>/osv`)."""
        import json
        from datetime import UTC, datetime

        home = self.tmp_path / "home"
        record = {"id": "PYSEC-0000-1", "modified": datetime.now(UTC).isoformat(), "affected": [
            {"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}]}]}  # fmt: skip
        (home / "osv").mkdir(parents=True, exist_ok=True)
        (home / "osv" / "PYSEC-0000-1.json").write_text(json.dumps(record), encoding="utf-8")
        self.set("CODEXK8S_HOME", str(home))


@pytest.fixture(scope="session")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real MCP server (`codexk8s mcp serve --transport http`), once per session: doctor only asks whether it
    answers, which touches no database (the URL names a closed port)."""
    port = free_port()
    env = {**os.environ, "CODEXK8S_MCP_SECRET": MCP_SECRET, "CODEXK8S_HOME": str(tmp_path_factory.mktemp("mcp"))}
    env["CODEXK8S_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    cmd = [str(Path(sys.executable).with_name("codexk8s")), "mcp", "serve", "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the MCP server exited with {proc.returncode}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def deployment(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    store: PlatformStore,
    github_server: GitHubServer,  # noqa: F811
    cluster: Cluster,
    mcp_url: str,
) -> Deployment:
    """Everything healthy: migrated database with pgvector installed, the token may push, the cluster is ready."""
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    github_server.state.add_repo(REPO, collaborators={DEFAULT_TOKEN_LOGIN: "write"})
    d = Deployment(monkeypatch, tmp_path, store.url, github_server, cluster)
    for name in (
        "CODEXK8S_GITHUB_APP_ID",
        "CODEXK8S_GITHUB_APP_PRIVATE_KEY",
        "CODEXK8S_K8S_NAMESPACE",
        "CODEXK8S_K8S_SERVICE_ACCOUNT",
        "CODEXK8S_K8S_TOKEN_SECRET",
        "CODEXK8S_K8S_TOKEN_SECRET_KEY",
        "KUBERNETES_SERVICE_HOST",
    ):
        d.set(name, None)
    d.set("CODEXK8S_ENV", "kubernetes")
    d.set("CODEXK8S_DATABASE_URL", store.url)
    d.set("CODEXK8S_GITHUB_TOKEN", github_server.token)
    d.set("CODEXK8S_GITHUB_API_URL", github_server.url)
    d.set("KUBECONFIG", str(cluster.kubeconfig))
    d.set("CODEXK8S_MCP_URL", mcp_url)
    d.set("CODEXK8S_MCP_SECRET", MCP_SECRET)
    d.watch(REPO)
    d.catalog()
    d.osv_database()
    return d
