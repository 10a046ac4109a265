"""Every stage run has a deadline: Dagster's run monitoring ends a hung run (freeing its issue's queue slot) and its
Kubernetes Job has a hard deadline of its own, built by dagster-k8s from the run's tags."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.launcher import RunLauncher
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES
from dagster._daemon.monitoring import run_monitoring
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job

from codexk8s_pipelines.delivery.stage_jobs import (
    JOB_DEADLINE_GRACE_SECONDS,
    MAX_RUNTIME_TAG,
    RUN_DEADLINE_MARGIN_SECONDS,
    StageRunConfig,
    stage_run_tags,
)

MARGIN = RUN_DEADLINE_MARGIN_SECONDS


def _config(stage: str | None, role: str = "dev") -> StageRunConfig:
    return StageRunConfig(
        repository="acme/shop", correlation_key=f"acme/shop#7:run:{stage}:1", issue_number=7, stage=stage,
        role=role, trigger_label=f"run:{stage}", model="m", reasoning="r",
    )  # fmt: skip


def test_the_deadline_is_the_stages_timeout_plus_a_margin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEXK8S_CONFIG", str(tmp_path / "missing.yaml"))
    assert stage_run_tags(_config("dev"))[MAX_RUNTIME_TAG] == str(120 * 60 + MARGIN)  # the domain's dev timeout
    assert stage_run_tags(_config("plan", "em"))[MAX_RUNTIME_TAG] == str(60 * 60 + MARGIN)
    # A reviewer run has no stage: its agent's timeout (the catalog's reviewer, 30 minutes).
    assert stage_run_tags(_config(None, "reviewer"))[MAX_RUNTIME_TAG] == str(30 * 60 + MARGIN)

    config = tmp_path / "codexk8s.yaml"
    config.write_text("stages:\n  dev: {timeout_minutes: 300}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    from codexk8s_pipelines.config import loader

    loader.load_config_from_environment.cache_clear()
    assert stage_run_tags(_config("dev"))[MAX_RUNTIME_TAG] == str(300 * 60 + MARGIN)  # the override is longer


def test_a_broken_configuration_does_not_break_the_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sensor tick builds the tags: a configuration error must not crash it (the run reports the error)."""
    bad = tmp_path / "codexk8s.yaml"
    bad.write_text("stages: [not, a, mapping]\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(bad))
    assert stage_run_tags(_config("dev"))[MAX_RUNTIME_TAG] == str(120 * 60 + MARGIN)


class JobDeletingLauncher(RunLauncher, ConfigurableClass):
    """Terminates as K8sRunLauncher does once it has deleted the run's Job: successfully (no cluster here)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict) -> JobDeletingLauncher:
        return cls(inst_data)

    def launch_run(self, context: object) -> None:
        raise NotImplementedError

    def terminate(self, run_id: str) -> bool:
        return True


def test_run_monitoring_ends_a_run_past_its_deadline_and_frees_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = stage_run_tags(_config("dev"))
    deadline = int(tags[MAX_RUNTIME_TAG])
    launcher = {"module": __name__, "class": "JobDeletingLauncher"}
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as instance:
        job = dg.GraphDefinition(name="stage_dev", node_defs=[]).to_job()
        hung = instance.create_run_for_job(job, tags=tags)
        fresh = instance.create_run_for_job(job, tags=tags)
        for run in (hung, fresh):
            instance.handle_new_event(
                dg.EventLogEntry(
                    error_info=None, level="debug", user_message="", run_id=run.run_id, timestamp=1_000.0,
                    dagster_event=dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name="stage_dev"),
                )
            )  # fmt: skip
        started = instance.get_run_record_by_id(hung.run_id)
        assert started is not None and started.start_time == 1_000.0

        log = logging.getLogger("test.run_monitoring")
        monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: 1_000.0 + deadline - 1)
        run_monitoring.check_run_timeout(instance, started, log, 0)
        assert instance.get_run_by_id(hung.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]

        monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: 1_000.0 + deadline + 1)
        run_monitoring.check_run_timeout(instance, started, log, 0)
        ended = instance.get_run_by_id(hung.run_id)
        assert ended is not None and ended.status == dg.DagsterRunStatus.FAILURE
        messages = [e.message for e in instance.all_logs(hung.run_id)]
        assert f"Canceling due to exceeding maximum runtime of {deadline} seconds." in messages
        # The failure event the stage_run_failure_sensor puts into the service comment says why.
        (failure,) = instance.all_logs(hung.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert failure.message == f"Exceeded maximum runtime of {deadline} seconds."
        # The queue counts active runs by the issue's tag: only the untouched run still holds the issue's slot.
        holding = instance.get_runs(
            dg.RunsFilter(tags={"codexk8s/issue": "acme/shop#7"}, statuses=list(ACTIVE_RUN_STATUSES))
        )
        assert [r.run_id for r in holding] == [fresh.run_id]


def test_the_run_job_built_by_dagster_k8s_carries_a_hard_deadline() -> None:
    tags = stage_run_tags(_config("dev"))
    run = dg.DagsterRun(job_name="stage_dev", tags=tags)
    context = K8sContainerContext.create_for_run(run, None, include_run_tags=True)  # type: ignore[arg-type]
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image="ghcr.io/codex-k8s/codexk8s-pipelines:0.1.0", dagster_home="/h"),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-1",
        user_defined_k8s_config=context.run_k8s_config,
    )
    expected = int(tags[MAX_RUNTIME_TAG]) + JOB_DEADLINE_GRACE_SECONDS
    assert job.spec.active_deadline_seconds == expected
