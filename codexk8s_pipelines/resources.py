"""Dagster resources shared by every job. Settings come from the environment, never from run config."""

import os

import dagster as dg

from . import settings
from .agents.k8s_runtime import runtime_from_environment
from .agents.runtime import SubprocessAgentRuntime
from .config import PlatformConfig, load_config_from_environment
from .github.resource import GitHubResource
from .store import PlatformStore


class PlatformDatabase(dg.ConfigurableResource):
    """The platform database (runs, audit, approvals). The URL is an `EnvVar`: it may hold a password."""

    url: str

    def store(self) -> PlatformStore:
        return PlatformStore(self.url)


class PlatformConfigResource(dg.ConfigurableResource):
    """`codexk8s.yaml`, from `$CODEXK8S_CONFIG` (or `./codexk8s.yaml`), read again when the file changes."""

    def get(self) -> PlatformConfig:
        return load_config_from_environment()


def platform_resources(env: settings.Environment | None = None) -> dict[str, dg.ConfigurableResource]:
    env = env or settings.environment()
    kubernetes = env is settings.Environment.KUBERNETES
    agent_runtime = runtime_from_environment(os.environ) if kubernetes else SubprocessAgentRuntime()
    return {
        "platform_db": PlatformDatabase(url=dg.EnvVar(settings.DATABASE_URL_VAR)),
        "platform_config": PlatformConfigResource(),
        "github": GitHubResource(),
        "agent_runtime": agent_runtime,
    }
