"""Fixtures for the sensors: the fake GitHub, the platform database and a configuration that watches it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store import PlatformStore
from sensors.github import POLL_SECONDS_VAR
from tests.github_server import GitHubServer, GitHubState, github_server  # noqa: F401  (fixture)

REPO = "acme/shop"
CONFIG = """
repositories:
  - github: acme/shop
triggers:
  min_permission: write
  allow_logins: [dana]
stages:
  release:
    approval: {required: true, min_permission: maintain, ttl_hours: 1}
"""


@dataclass
class Intake:
    server: GitHubServer
    store: PlatformStore
    state: GitHubState
    cursors: dict[str, str | None]

    def tick(self, sensor: dg.SensorDefinition) -> dg.SensorExecutionData:
        """One evaluation with the cursor the previous one left, as the daemon does. Unless a test sets the
        polling interval, every tick polls, as if the interval had passed since the previous one."""
        resources = {"github": GitHubResource(), "platform_db": PlatformDatabase(url=self.store.url),
                     "platform_config": PlatformConfigResource()}  # fmt: skip
        with pytest.MonkeyPatch.context() as mp:
            if POLL_SECONDS_VAR not in os.environ:
                mp.setenv(POLL_SECONDS_VAR, "0")
            with dg.build_sensor_context(cursor=self.cursors.get(sensor.name), resources=resources) as context:
                data = sensor.evaluate_tick(context)
        self.cursors[sensor.name] = data.cursor
        return data

    def events(self, key: str) -> list[str]:
        return [e["event_type"] for e in self.store.events(key)]


@pytest.fixture
def intake(
    github_server: GitHubServer,  # noqa: F811
    store: PlatformStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Intake]:
    config = tmp_path / "codexk8s.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", github_server.token)
    monkeypatch.setenv("CODEXK8S_GITHUB_API_URL", github_server.url)
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
    state = github_server.state
    state.add_repo(REPO, collaborators={"alice": "write", "bob": "maintain", "carol": "read", "erin": "write"})
    yield Intake(github_server, store, state, {})


LabelFn = Callable[..., int]
