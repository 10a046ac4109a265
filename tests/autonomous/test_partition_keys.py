"""The code location's partition keys are the repositories' readable names: the sample's `path: .` checked out in a
directory `main` is the partition `main`, not `local:.`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines import settings
from codexk8s_pipelines.autonomous.partitions import PARTITIONS_NAME
from codexk8s_pipelines.definitions import build_definitions
from codexk8s_pipelines.store import PlatformStore
from tests.helpers import git


def test_the_definitions_register_readable_partition_keys(
    tmp_path: Path, store: PlatformStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "main"
    checkout.mkdir()
    git("init", "-q", "-b", "main", str(checkout))
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "i", cwd=checkout)
    (checkout / "codexk8s.yaml").write_text("repositories:\n  - path: .\n  - github: Acme/Shop\n")
    monkeypatch.chdir(checkout)
    monkeypatch.delenv("CODEXK8S_CONFIG", raising=False)
    monkeypatch.setenv("CODEXK8S_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(settings.DATABASE_URL_VAR, store.url)
    for name in ("CODEXK8S_GITHUB_TOKEN", "CODEXK8S_GITHUB_APP_ID", "CODEXK8S_GITHUB_APP_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)

    defs = build_definitions(settings.Environment.LOCAL)
    sensor = defs.resolve_sensor_def("docs_index_sensor")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=defs, resources=dict(defs.resources or {}))
        data = sensor.evaluate_tick(context)
        (added,) = data.dynamic_partitions_requests or []
        assert isinstance(added, dg.AddDynamicPartitionsRequest) and added.partitions_def_name == PARTITIONS_NAME
        assert sorted(added.partition_keys) == ["acme/shop", "main"]
