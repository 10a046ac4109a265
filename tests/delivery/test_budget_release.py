"""A run that dies before it can report its usage gives its budget hold back, so it does not block the next run."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from codexk8s_pipelines.config import load_config_from_environment

from .conftest import REPO, Stage
from .test_run_status_sensors import run_failure_sensor_on


def with_budgets() -> None:
    """A run cap of $2 and an issue cap of $3 in the stage's settings: a launch then holds $2 until it reports."""
    path = Path(os.environ["CODEXK8S_CONFIG"])
    path.write_text(path.read_text() + "budgets:\n  per_run: {cost: 2}\n  per_issue: {cost: 3}\n")
    load_config_from_environment.cache_clear()


def _held(stage: Stage) -> int:
    with stage.store.connect() as conn:
        row = conn.execute("SELECT count(*) AS n FROM budget_reservations WHERE released_at IS NULL").fetchone()
    assert row is not None
    return int(row["n"])


def test_a_run_that_dies_before_reporting_releases_its_hold(stage: Stage) -> None:
    with_budgets()
    number = stage.state.add_issue(REPO, "Broken while GitHub is down")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    assert _held(stage) == 1  # the launch reserved its per-run cap
    stage.state.inject("502", path_regex=rf".*/issues/{number}$", times=3)
    instance = dg.DagsterInstance.ephemeral()
    result = stage.defs.resolve_job_def("stage_dev").execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
    )
    assert not result.success
    run_failure_sensor_on(stage, instance, result)
    assert _held(stage) == 0
    # With the hold gone, the issue's budget has room for the next run again (3 - 0 ≥ 2).
    stage.state.unlabel(REPO, number, "run:dev")
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (again,) = stage.trigger()
    assert again.run_key != request.run_key


def test_a_run_its_own_ops_reported_as_cancelled_still_gives_its_hold_back(stage: Stage) -> None:
    """The op that sees the cancellation marks the run cancelled; the cancelled-run sensor then found it "already
    reported" and left its hold, which counted against the issue for good (its later runs were refused)."""
    from codexk8s_pipelines.agents.runtime import SubprocessAgentRuntime
    from codexk8s_pipelines.github.resource import GitHubResource
    from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
    from sensors.run_status import report_outside_failure

    with_budgets()
    number = stage.state.add_issue(REPO, "Cancelled by hand")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    assert _held(stage) == 1
    key = request.run_key or ""
    stage.store.set_run_status(key, "canceled")  # what the agent step's own cancellation handling records
    run = dg.DagsterRun(job_name="stage_dev", run_id="c0ffee00-0000", tags=request.tags)
    done = report_outside_failure(
        run, "cancelled", "cancelled", GitHubResource(), PlatformDatabase(url=stage.store.url),
        PlatformConfigResource(), SubprocessAgentRuntime(),
    )  # fmt: skip
    assert done.endswith("already reported")
    assert _held(stage) == 0
