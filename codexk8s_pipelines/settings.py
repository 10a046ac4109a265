"""Every environment variable the platform reads, in one place.

Secrets (GitHub tokens, App keys, database passwords) are read here from the environment only; they are never
part of the YAML configuration or of Dagster run config, which the UI shows.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Environment(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


ENV_VAR = "CODEXK8S_ENV"
CONFIG_VAR = "CODEXK8S_CONFIG"
DATABASE_URL_VAR = "CODEXK8S_DATABASE_URL"
# `codexk8s db migrate` (run as the migrator) re-grants this role, the one the platform connects as, its rights.
DATABASE_APP_ROLE_VAR = "CODEXK8S_DATABASE_APP_ROLE"
HOME_VAR = "CODEXK8S_HOME"
GITHUB_TOKEN_VAR = "CODEXK8S_GITHUB_TOKEN"
GITHUB_API_URL_VAR = "CODEXK8S_GITHUB_API_URL"
GITHUB_APP_ID_VAR = "CODEXK8S_GITHUB_APP_ID"
GITHUB_APP_PRIVATE_KEY_VAR = "CODEXK8S_GITHUB_APP_PRIVATE_KEY"
AGENT_CATALOG_VAR = "CODEXK8S_AGENT_CATALOG"
# Runs agents without the local sandbox (no namespaces, no process cap): unsafe, off by default, logged loudly.
UNSAFE_NO_AGENT_SANDBOX_VAR = "CODEXK8S_UNSAFE_NO_AGENT_SANDBOX"
BWRAP_VAR = "CODEXK8S_BWRAP"  # the bubblewrap binary of the agent sandbox (default: bwrap on PATH)
EMBEDDING_MODEL_VAR = "CODEXK8S_EMBEDDING_MODEL"
# MCP: the secret that signs run-scoped tokens (a secret), the token a run hands its agent, the server's URL.
MCP_SECRET_VAR = "CODEXK8S_MCP_SECRET"
WEBHOOK_SECRET_VAR = "CODEXK8S_WEBHOOK_SECRET"  # the GitHub webhook secret the receiver verifies signatures with
WEBHOOK_MAX_BYTES_VAR = "CODEXK8S_WEBHOOK_MAX_BYTES"
MCP_TOKEN_VAR = "CODEXK8S_MCP_TOKEN"
MCP_URL_VAR = "CODEXK8S_MCP_URL"
DAGSTER_URL_VAR = "CODEXK8S_DAGSTER_URL"
# Kubernetes agent runtime (non-secret; the token comes from a Kubernetes Secret, never from here).
K8S_NAMESPACE_VAR = "CODEXK8S_K8S_NAMESPACE"
# Every agent namespace, comma-separated (the chart's agents.namespaces): where a run's agent pods are looked for and
# deleted when the run ends outside its ops. The launch namespace (K8S_NAMESPACE_VAR) is always one of them.
K8S_AGENT_NAMESPACES_VAR = "CODEXK8S_K8S_AGENT_NAMESPACES"
K8S_SERVICE_ACCOUNT_VAR = "CODEXK8S_K8S_SERVICE_ACCOUNT"
K8S_TOKEN_SECRET_VAR = "CODEXK8S_K8S_TOKEN_SECRET"
K8S_TOKEN_SECRET_KEY_VAR = "CODEXK8S_K8S_TOKEN_SECRET_KEY"
K8S_IMAGE_PULL_POLICY_VAR = "CODEXK8S_K8S_IMAGE_PULL_POLICY"
K8S_RUNNER_IMAGE_VAR = "CODEXK8S_K8S_RUNNER_IMAGE"  # image of the runner's containers, which hold the GitHub token
K8S_WORKSPACE_SIZE_VAR = "CODEXK8S_K8S_WORKSPACE_SIZE"  # sizeLimit of each of the pod's volumes (/workspace, /runner)
K8S_AGENT_STORAGE_VAR = "CODEXK8S_K8S_AGENT_EPHEMERAL_STORAGE"  # the agent container's own disk (home, caches)
K8S_RUNNER_STORAGE_VAR = "CODEXK8S_K8S_RUNNER_EPHEMERAL_STORAGE"  # each runner container's own disk
KUBECONFIG_VAR = "KUBECONFIG"  # the cluster the ops drift check reads (in-cluster config when unset)
HELM_VAR = "CODEXK8S_HELM"  # the helm binary that renders a repository's chart for the drift check

DEFAULT_CONFIG_FILE = "codexk8s.yaml"


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use."""


def environment() -> Environment:
    raw = os.environ.get(ENV_VAR, Environment.LOCAL.value).strip().lower()
    try:
        return Environment(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in Environment)
        raise SettingsError(f"{ENV_VAR}={raw!r} is not an environment; expected one of: {allowed}") from None


STATE_DIR_NAME = ".codexk8s"
PROJECT_NAME = "codexk8s-pipelines"  # pyproject.toml's, to know this project's checkout from another


def state_dir() -> Path:
    """Where the local environment keeps its embedded database and DAGSTER_HOME (git-ignored): `$CODEXK8S_HOME` when
    set (the Kubernetes pods set it), else `.codexk8s` of the checkout the working directory is in (`checkout_root`),
    so that the CLI run from a subdirectory finds the running `make run`; else `./.codexk8s`."""
    if HOME_VAR in os.environ:
        return Path(os.environ[HOME_VAR]).resolve()
    here = Path.cwd()
    return ((checkout_root(here) or here) / STATE_DIR_NAME).resolve()


def checkout_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` that is this project's checkout: it holds workspace.yaml, and
    `.codexk8s` (a `make run` ran there) or this project's pyproject.toml. None outside one."""
    for folder in (start, *start.parents):
        if not (folder / "workspace.yaml").is_file():
            continue
        if (folder / STATE_DIR_NAME).is_dir() or _is_this_project(folder / "pyproject.toml"):
            return folder
    return None


def _is_this_project(pyproject: Path) -> bool:
    import tomllib

    try:
        with pyproject.open("rb") as f:
            return tomllib.load(f).get("project", {}).get("name") == PROJECT_NAME
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return False


@dataclass(frozen=True)
class ConfigLocation:
    path: Path
    explicit: bool


def config_location() -> ConfigLocation:
    raw = os.environ.get(CONFIG_VAR)
    if raw:
        return ConfigLocation(Path(raw), explicit=True)
    return ConfigLocation(Path(DEFAULT_CONFIG_FILE), explicit=False)


def database_url() -> str | None:
    return os.environ.get(DATABASE_URL_VAR) or None


# What a command that reads the platform database says when it has none (the `codexk8s` commands in
# `cli.DATABASE_COMMANDS` first look for the running `make run`'s).
NO_DATABASE = (
    f"no platform database: set {DATABASE_URL_VAR}, or start the local platform with `make run` "
    "(the commands then find its database by themselves)"
)


def database_app_role() -> str | None:
    return (os.environ.get(DATABASE_APP_ROLE_VAR) or "").strip() or None


def helm_binary() -> str | None:
    """`$CODEXK8S_HELM` (`make test` points it at the copy it fetches), else `helm` on PATH."""
    return os.environ.get(HELM_VAR) or shutil.which("helm")


def osv_database_dir(configured: str | None) -> Path:
    """The OSV database directory: the configured one, else `<state dir>/osv` where `osv_refresh` writes."""
    return Path(configured).expanduser().resolve() if configured else state_dir() / "osv"
