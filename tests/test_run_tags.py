"""Every run carries the platform's tags, however it was launched: a UI materialization of a periodic asset and a
stage run from the Launchpad are queued by the same coordinator the UI uses, and come out tagged."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from codexk8s_pipelines.config.loader import parse_config
from codexk8s_pipelines.definitions import build_definitions
from codexk8s_pipelines.delivery.stage_jobs import StageRunConfig, stage_run_config
from codexk8s_pipelines.instance import local_instance_yaml
from codexk8s_pipelines.run_tags import PlatformRunCoordinator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating a run resolves the resources' config; nothing here connects."""
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", "postgresql://unused@127.0.0.1:1/none")


def _instance(tmp_path: Path) -> dg.DagsterInstance:
    (tmp_path / "dagster.yaml").write_text(local_instance_yaml(parse_config("concurrency: {per_repository: 2}\n", "c")))
    return dg.DagsterInstance.from_config(str(tmp_path))


@contextmanager
def _workspace(instance: dg.DagsterInstance) -> Iterator[Any]:
    """The code location loaded as the webserver loads it, for the runs' origins."""
    origin = LoadableTargetOrigin(module_name="codexk8s_pipelines.definitions", working_directory=str(ROOT))
    with in_process_test_workspace(instance, origin) as workspace:
        yield workspace


def _remote_job(workspace: Any, name: str) -> Any:
    (location,) = [e.code_location for e in workspace.get_code_location_entries().values()]
    (repository,) = location.get_repositories().values()
    return repository.get_full_job(name)


def _queued(instance: dg.DagsterInstance, workspace: Any, run: dg.DagsterRun) -> dg.DagsterRun:
    """What the webserver does with a launched run: `instance.submit_run`, through the instance's coordinator."""
    assert isinstance(instance.run_coordinator, PlatformRunCoordinator)
    instance.submit_run(run.run_id, workspace)
    stored = instance.get_run_by_id(run.run_id)
    assert stored is not None and stored.status == dg.DagsterRunStatus.QUEUED
    return stored


def test_a_ui_materialization_of_a_periodic_asset_is_tagged(tmp_path: Path) -> None:
    defs = build_definitions()
    job = defs.resolve_implicit_global_asset_job_def()  # `__ASSET_JOB`: what an asset page's Materialize runs
    with _instance(tmp_path) as instance, _workspace(instance) as workspace:
        run = instance.create_run_for_job(
            job, asset_selection=frozenset({dg.AssetKey("security_findings")}), tags={"dagster/partition": "acme/shop"},
            remote_job_origin=(remote := _remote_job(workspace, job.name)).get_remote_origin(),
            job_code_origin=remote.get_python_origin(),
        )  # fmt: skip
        assert "codexk8s/kind" not in run.tags
        tagged = _queued(instance, workspace, run)
        assert tagged.tags["codexk8s/kind"] == "periodic" and tagged.tags["dagster/partition"] == "acme/shop"
        assert tagged.tags["dagster/priority"] == "-10"  # after stage runs in the queue


def test_a_launchpad_stage_run_gets_the_issue_and_repository_tags_the_limits_use(tmp_path: Path) -> None:
    config = StageRunConfig(
        repository="acme/shop", correlation_key="acme/shop#7:manual", issue_number=7, stage="dev", role="dev",
        trigger_label="run:dev", model="gpt-5.4", reasoning="high",
    )  # fmt: skip
    job = build_definitions().resolve_job_def("stage_dev")
    with _instance(tmp_path) as instance, _workspace(instance) as workspace:
        remote = _remote_job(workspace, job.name)
        origins = {"remote_job_origin": remote.get_remote_origin(), "job_code_origin": remote.get_python_origin()}
        # From the Launchpad: the job's own tag and the config the user typed; none of the sensor's tags.
        run = instance.create_run_for_job(
            job, run_config=stage_run_config(config), tags={"codexk8s/kind": "stage"}, **origins
        )
        tagged = _queued(instance, workspace, run)
        assert tagged.tags["codexk8s/issue"] == "acme/shop#7" and tagged.tags["codexk8s/repository"] == "acme/shop"
        assert tagged.tags["dagster/priority"] == "10"  # before periodic runs in the queue
        queue = instance.run_coordinator.get_run_queue_config()  # type: ignore[union-attr]
        from dagster._utils.tags import TagConcurrencyLimitsCounter

        second = instance.create_run_for_job(job, run_config=stage_run_config(config), tags={}, **origins)
        blocked = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [tagged])
        assert blocked.is_blocked(_queued(instance, workspace, second))  # one active run per issue, for manual runs too
