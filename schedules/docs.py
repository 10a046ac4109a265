"""The hourly docs index: one run per watched repository (the partitions `docs_index_sensor` keeps in sync)."""

import dagster as dg

from codexk8s_pipelines.autonomous.docs_index import docs_index_job
from codexk8s_pipelines.autonomous.partitions import REPOSITORY_PARTITIONS

DOCS_INDEX_CRON = "17 * * * *"


@dg.schedule(
    name="docs_index_hourly",
    cron_schedule=DOCS_INDEX_CRON,
    job=docs_index_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-index every watched repository's docs (incremental: unchanged chunks are not re-embedded).",
)
def docs_index_hourly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    keys = context.instance.get_dynamic_partitions(REPOSITORY_PARTITIONS.name or "repositories")
    if not keys:
        return dg.SkipReason("no repository partition yet: docs_index_sensor adds them from codexk8s.yaml")
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M") if context.scheduled_execution_time else "now"
    return [dg.RunRequest(run_key=f"docs:{key}:{stamp}", partition_key=key) for key in keys]
