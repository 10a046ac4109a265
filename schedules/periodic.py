"""Cron schedules of the periodic checks: one run per watched repository and check.

Crons come from `periodic:` in codexk8s.yaml, read when the code location loads. Every schedule starts RUNNING:
a team that installs the platform gets its nightly checks without a click.
"""

from datetime import datetime
from typing import Any

import dagster as dg

from codexk8s_pipelines.autonomous.partitions import repository_keys
from codexk8s_pipelines.config.models import PlatformConfig
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store.evidence import finished_runs_since, last_prepared


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
            return dg.SkipReason("no repository partition yet: docs_index_sensor adds them from codexk8s.yaml")
        stamp = _stamp(context)
        return [dg.RunRequest(run_key=f"{prefix}:{key}:{stamp}", partition_key=key) for key in keys]

    return _schedule


def build_periodic_schedules(config: PlatformConfig) -> list[dg.ScheduleDefinition]:
    from codexk8s_pipelines.autonomous.jobs import (
        dependency_freshness_job,
        ops_drift_job,
        osv_refresh_job,
        security_scan_job,
        self_improve_job,
    )

    periodic = config.periodic

    @dg.schedule(
        name="ops_drift_schedule", cron_schedule=periodic.drift.cron, job=ops_drift_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Compare the live cluster with each repository's manifests (repositories with a drift section).",
    )  # fmt: skip
    def ops_drift_schedule(
        context: dg.ScheduleEvaluationContext, platform_config: PlatformConfigResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        platform = platform_config.get()
        keys = [k for k in repository_keys(context.instance) if (r := platform.repository(k)) and r.drift]
        if not keys:
            return dg.SkipReason("no watched repository has a drift section (manifests or helm_chart)")
        stamp = _stamp(context)
        return [dg.RunRequest(run_key=f"ops_drift:{key}:{stamp}", partition_key=key) for key in keys]

    @dg.schedule(
        name="self_improve_cadence", cron_schedule=periodic.self_improve.cron, job=self_improve_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Open (or refresh) the self-improve evidence issue of a repository once enough runs finished "
        "since the last one.",
    )  # fmt: skip
    def self_improve_cadence(
        context: dg.ScheduleEvaluationContext, platform_config: PlatformConfigResource, platform_db: PlatformDatabase
    ) -> list[dg.RunRequest] | dg.SkipReason:
        threshold = platform_config.get().periodic.self_improve.min_finished_runs
        store = platform_db.store()
        requests, waiting = [], []
        for key in repository_keys(context.instance):
            since = last_prepared(store, key)
            finished = finished_runs_since(store, key, since)
            if finished >= threshold:
                requests.append(dg.RunRequest(run_key=f"self_improve:{key}:{_stamp(context)}", partition_key=key))
            else:
                waiting.append(f"{key}: {finished} of {threshold} runs finished since the last evidence issue")
        if requests:
            return requests
        return dg.SkipReason("; ".join(waiting) or "no repository partition yet")

    osv_refresh_schedule = dg.ScheduleDefinition(
        name="osv_refresh_schedule", cron_schedule=periodic.security.refresh_cron, job=osv_refresh_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Fetch OSV's per-ecosystem all.zip exports; on failure the previous database is kept.",
    )  # fmt: skip
    return [
        fan_out(
            "security_scan_schedule", periodic.security.cron, security_scan_job,
            "Match every watched repository's lockfiles against the OSV database.",
        ),
        fan_out(
            "dependency_freshness_schedule", periodic.freshness.cron, dependency_freshness_job,
            "Compare every watched repository's dependencies with the registries' latest releases.",
        ),
        ops_drift_schedule,
        self_improve_cadence,
        osv_refresh_schedule,
    ]  # fmt: skip
