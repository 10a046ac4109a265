"""A stage run that dies before its ops can report still ends with a comment and an audit row."""

from __future__ import annotations

import dagster as dg

from codexk8s_pipelines.agents.runtime import SubprocessAgentRuntime
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from sensors.run_status import report_outside_failure, stage_run_failure_sensor

from .conftest import REPO, Stage


def _resources(stage: Stage) -> dict:
    return {
        "github": GitHubResource(),
        "platform_db": PlatformDatabase(url=stage.store.url),
        "platform_config": PlatformConfigResource(),
        "agent_runtime": SubprocessAgentRuntime(),
    }


def run_failure_sensor_on(stage: Stage, instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    """Evaluate `stage_run_failure_sensor` on a failed run, as the daemon does once the run has ended."""
    context = dg.build_run_status_sensor_context(
        sensor_name=stage_run_failure_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources=_resources(stage),
    ).for_run_failure()
    stage_run_failure_sensor(context)


def test_a_run_failing_before_it_can_report_is_reported_by_the_sensor(stage: Stage) -> None:
    number = stage.state.add_issue(REPO, "Broken while GitHub is down")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    stage.state.inject("502", path_regex=rf".*/issues/{number}$", times=3)  # prepare_context cannot read the issue
    instance = dg.DagsterInstance.ephemeral()
    job = stage.defs.resolve_job_def("stage_dev")
    result = job.execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
    )
    assert not result.success
    assert stage.state.comments(REPO, number) == []  # the op died before it could say anything

    run_failure_sensor_on(stage, instance, result)

    key = request.run_key or ""
    assert stage.store.get_run(key)["status"] == "failed"  # type: ignore[index]
    events = [e["event_type"] for e in stage.store.events(key)]
    assert "run.failed.outside_ops" in events
    (comment,) = stage.state.comments(REPO, number)
    assert "Run failed" in comment["body"] and "run_failed" in comment["body"] and result.run_id[:8] in comment["body"]

    # A second report of the same run changes nothing.
    run_failure_sensor_on(stage, instance, result)
    assert len(stage.state.comments(REPO, number)) == 1
    assert [e["event_type"] for e in stage.store.events(key)].count("run.failed.outside_ops") == 1


def test_a_cancellation_before_the_agent_is_reported(stage: Stage) -> None:
    number = stage.state.add_issue(REPO, "Cancelled while queued")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    run = dg.DagsterRun(job_name="stage_dev", run_id="a1b2c3d4-0000", tags=request.tags)
    done = report_outside_failure(
        run, "cancelled", "cancelled from the UI", GitHubResource(), PlatformDatabase(url=stage.store.url),
        PlatformConfigResource(), SubprocessAgentRuntime(),
    )  # fmt: skip
    assert done.endswith("comment " + str(stage.state.comments(REPO, number)[0]["id"]) + " updated")
    assert stage.store.get_run(request.run_key or "")["status"] == "canceled"  # type: ignore[index]
    assert "Run cancelled" in stage.state.comments(REPO, number)[0]["body"]
