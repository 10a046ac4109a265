"""Fixtures of the periodic assets: a watched GitHub repository whose git remote is a local bare repository, the
fake GitHub for its dashboard issues, the platform database and a Dagster instance with its partition."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store import PlatformStore
from tests.github_server import GitHubServer, GitHubState, github_server  # noqa: F401  (fixture)
from tests.helpers import git

REPO = "acme/shop"


@dataclass
class Watched:
    """The repository as the platform sees it, and the means to change it between runs."""

    seed: Path
    config: Path
    state: GitHubState
    instance: dg.DagsterInstance
    resources: dict
    store: PlatformStore

    def push(self, files: dict[str, str], message: str = "change") -> None:
        for name, text in files.items():
            (self.seed / name).parent.mkdir(parents=True, exist_ok=True)
            (self.seed / name).write_text(text)
        git("add", "-A", cwd=self.seed)
        git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message, cwd=self.seed)
        git("push", "-q", "origin", "main", cwd=self.seed)

    def configure(self, extra: str) -> None:
        remote = self.seed.parent / "remote.git"
        self.config.write_text(f"repositories:\n  - github: {REPO}\n    git_url: {remote}\n{extra}")
        load_config_from_environment.cache_clear()

    def materialize(self, asset: dg.AssetsDefinition) -> dict:
        result = dg.materialize([asset], partition_key=REPO, instance=self.instance, resources=self.resources)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def checks(self, asset: dg.AssetsDefinition) -> dict[str, dg.AssetCheckEvaluation]:
        """The asset checks the last materialization of `asset` reported, by name, as Dagster stored them."""
        return latest_checks(self.instance, asset)

    def fail(self, asset: dg.AssetsDefinition) -> str:
        """Materialize, expecting a failure: the failure's description."""
        result = dg.materialize(
            [asset], partition_key=REPO, instance=self.instance, resources=self.resources, raise_on_error=False
        )
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return failure.step_failure_data.user_failure_data.description

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _ in self.state.requests if m in ("POST", "PATCH", "PUT", "DELETE")]


def latest_checks(instance: dg.DagsterInstance, asset: dg.AssetsDefinition) -> dict[str, dg.AssetCheckEvaluation]:
    """Read back from the instance (what the UI's Checks tab shows), not from the function's return value."""
    found: dict[str, dg.AssetCheckEvaluation] = {}
    for key in asset.check_keys:
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        if records:
            event = records[0].event
            assert event is not None and event.dagster_event is not None
            found[key.name] = event.dagster_event.event_specific_data
    return found


@pytest.fixture
def watched(
    tmp_path: Path,
    store: PlatformStore,
    github_server: GitHubServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[dict[str, str], str], Watched]]:
    monkeypatch.setenv("CODEXK8S_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", github_server.token)
    monkeypatch.setenv("CODEXK8S_GITHUB_API_URL", github_server.url)
    github_server.state.add_repo(REPO)
    # A temporary instance that is not entered as a context here: `materialize` enters the instance itself, and a
    # nested enter would leave Dagster's defs-state context variable pointing at a disposed instance.
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    instance.add_dynamic_partitions("repositories", [REPO])

    def make(files: dict[str, str], extra: str = "") -> Watched:
        remote = tmp_path / "remote.git"
        git("init", "-q", "--bare", "-b", "main", str(remote))
        seed = tmp_path / "seed"
        git("clone", "-q", str(remote), str(seed))
        git("checkout", "-q", "-b", "main", cwd=seed)
        config = tmp_path / "codexk8s.yaml"
        monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
        resources = {"platform_db": PlatformDatabase(url=store.url), "platform_config": PlatformConfigResource(),
                     "github": GitHubResource()}  # fmt: skip
        env = Watched(seed, config, github_server.state, instance, resources, store)
        env.push(files, "initial")
        env.configure(extra)
        return env

    yield make
    instance.dispose()
