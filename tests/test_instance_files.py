"""The dagster.yaml of both environments, kept in instance/: generated from the sample configuration, and
loaded by a real DagsterInstance — the Kubernetes one with dagster-postgres on the embedded PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.instance.config import (
    dagster_instance_config,
    get_default_tick_retention_settings,
    get_tick_retention_settings,
)
from dagster._core.scheduler.instigation import TickStatus
from dagster_k8s import K8sRunLauncher

from codexk8s_pipelines.config import load_config
from codexk8s_pipelines.instance import TICK_RETENTION_DAYS, instance_yaml, kubernetes_instance, local_instance
from codexk8s_pipelines.store import DatabaseUrls

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("env", "build"), [("local", local_instance), ("kubernetes", kubernetes_instance)])
def test_committed_instance_files_match_the_generator(env: str, build) -> None:
    expected = instance_yaml(build(load_config(ROOT / "codexk8s.yaml")))
    assert (ROOT / "instance" / env / "dagster.yaml").read_text() == expected


def test_local_instance_loads_with_sqlite_the_default_launcher_and_the_queue(tmp_path: Path) -> None:
    shutil.copy(ROOT / "instance" / "local" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
    limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits  # type: ignore[union-attr]
    keys = {x["key"] for x in limits}
    assert keys == {"codexk8s/issue", "codexk8s/pr", "codexk8s/branch", "codexk8s/repository", "codexk8s/kind"}


def test_kubernetes_instance_loads_against_postgres_with_the_k8s_launcher(
    bare_database: DatabaseUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dagster's own storage creates its tables: an empty database, the owner's URL (the app role creates nothing).
    base, _, query = bare_database.migrator.partition("?")
    monkeypatch.setenv("DAGSTER_PG_URL", base.replace("postgresql://", "postgresql+psycopg2://", 1) + "?" + query)
    monkeypatch.setenv("DAGSTER_K8S_JOB_NAMESPACE", "codexk8s")
    monkeypatch.setenv("DAGSTER_K8S_SERVICE_ACCOUNT", "codexk8s-runs")
    monkeypatch.setenv("DAGSTER_K8S_INSTANCE_CONFIG_MAP", "dagster-instance")
    loaded: list[bool] = []
    # Outside a cluster there is no service-account token to read: stand in for the in-cluster loader only.
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda *a, **k: loaded.append(True))
    shutil.copy(ROOT / "instance" / "kubernetes" / "dagster.yaml", tmp_path / "dagster.yaml")

    instance = dg.DagsterInstance.from_config(str(tmp_path))
    launcher = instance.run_launcher
    assert isinstance(launcher, K8sRunLauncher) and loaded == [True]
    assert launcher.job_namespace == "codexk8s" and launcher.service_account_name == "codexk8s-runs"
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"

    run = instance.create_run_for_job(
        dg.GraphDefinition(name="noop", node_defs=[]).to_job(), tags={"codexk8s/issue": "a/b#1"}
    )
    (stored,) = instance.get_runs(dg.RunsFilter(tags={"codexk8s/issue": "a/b#1"}))
    assert stored.run_id == run.run_id
    limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits  # type: ignore[union-attr]
    assert {x["key"]: x["limit"] for x in limits}["codexk8s/issue"] == 1
    assert {x["key"]: x["limit"] for x in limits}["codexk8s/branch"] == 1  # two pods never push one branch at once
    assert instance.run_monitoring_enabled


def tick_days(instance_config: dict[str, Any], kind: InstigatorType) -> dict[str, int]:
    """Days Dagster keeps the ticks of `kind`, per tick status, as the daemon reads an instance's `retention`."""
    section = instance_config.get("retention", {}).get(kind.value.lower())
    settings = get_tick_retention_settings(section, get_default_tick_retention_settings(kind))
    return {status.value.lower(): days for status, days in settings.items()}


@pytest.mark.parametrize("env", ["local", "kubernetes"])
def test_both_instances_purge_old_sensor_and_schedule_ticks(env: str, tmp_path: Path) -> None:
    """Each sensor tick row holds the cursor (77-171 KB at 300 repositories) and two sensors tick every 3 s: with
    Dagster's defaults skipped ticks were kept 7 days and the others forever (over 1 GB a day)."""
    shutil.copy(ROOT / "instance" / env / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # through Dagster's own schema
    for kind in (InstigatorType.SENSOR, InstigatorType.SCHEDULE):
        assert tick_days(dict(config), kind) == TICK_RETENTION_DAYS
        assert TICK_RETENTION_DAYS == {"skipped": 1, "failure": 7, "success": 7, "started": -1}
    if env == "local":
        instance = dg.DagsterInstance.from_config(str(tmp_path))
        assert instance.get_tick_retention_settings(InstigatorType.SENSOR)[TickStatus.SKIPPED] == 1
