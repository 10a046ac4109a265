"""Cron schedules of the periodic checks, derived from `autonomous.registry.PERIODIC_CHECKS`: one run per watched
repository and check (or one run, for the unpartitioned OSV database).

Crons come from `periodic:` in codexk8s.yaml, read when the code location loads. Every schedule starts RUNNING:
a team that installs the platform gets its nightly checks without a click. A check with a `due` rule (drift:
repositories with a drift section; self-improve: enough finished runs; the hourly docs index: repositories whose
index is not of their head now) says in its skip reason why it waits.
"""

from datetime import datetime
from typing import Any

import dagster as dg

from codexk8s_pipelines.autonomous.partitions import first_reasons, repository_keys
from codexk8s_pipelines.config.models import PlatformConfig
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase

NO_PARTITION = "no repository partition yet: docs_index_sensor adds them from codexk8s.yaml"


def _stamp(context: dg.ScheduleEvaluationContext) -> str:
    when = context.scheduled_execution_time
    return when.strftime("%Y%m%dT%H%M") if when else datetime.now().strftime("%Y%m%dT%H%M%S")


def fan_out(
    name: str, cron: str, job: Any, description: str, run_key_prefix: str | None = None
) -> dg.ScheduleDefinition:
    """A RUNNING schedule that requests one run of `job` per repository partition at each tick."""
    prefix = run_key_prefix or name

    @dg.schedule(
        name=name, cron_schedule=cron, job=job, default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )  # fmt: skip
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        keys = repository_keys(context.instance)
        if not keys:
            return dg.SkipReason(NO_PARTITION)
        stamp = _stamp(context)
        return [dg.RunRequest(run_key=f"{prefix}:{key}:{stamp}", partition_key=key) for key in keys]

    return _schedule


def _gated(check: Any, cron: str, job: Any) -> dg.ScheduleDefinition:
    """Fan out over the partitions the check's `due` rule accepts; when none is, the skip reason gives the count of
    the others and the first few reasons."""

    @dg.schedule(
        name=check.schedule, cron_schedule=cron, job=job, default_status=dg.DefaultScheduleStatus.RUNNING,
        description=check.description,
    )  # fmt: skip
    def _schedule(
        context: dg.ScheduleEvaluationContext,
        platform_config: PlatformConfigResource,
        platform_db: PlatformDatabase,
        github: GitHubResource,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        from codexk8s_pipelines.autonomous.registry import DueContext

        keys = repository_keys(context.instance)
        ctx = DueContext(platform_config.get(), platform_db.store(), context.instance, github.credentials())
        decided = check.due(ctx, keys)
        requests = [
            dg.RunRequest(run_key=f"{check.run_key_prefix}:{key}:{_stamp(context)}", partition_key=key)
            for key in keys
            if decided.get(key) is None
        ]
        if requests:
            return requests
        return dg.SkipReason(first_reasons([reason for key in keys if (reason := decided.get(key))]) or NO_PARTITION)

    return _schedule


def schedule_for(check: Any, config: PlatformConfig) -> dg.ScheduleDefinition:
    from codexk8s_pipelines.autonomous.registry import JOBS

    job, cron = JOBS[check.job], check.cron(config)
    if not check.partitioned:
        return dg.ScheduleDefinition(
            name=check.schedule, cron_schedule=cron, job=job, description=check.description,
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )  # fmt: skip
    if check.due is not None:
        return _gated(check, cron, job)
    return fan_out(check.schedule, cron, job, check.description, run_key_prefix=check.run_key_prefix)


def build_periodic_schedules(config: PlatformConfig) -> list[dg.ScheduleDefinition]:
    from codexk8s_pipelines.autonomous.registry import PERIODIC_CHECKS

    return [schedule_for(check, config) for check in PERIODIC_CHECKS]
