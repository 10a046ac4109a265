"""The hourly docs index: one run per watched repository (the partitions `docs_index_sensor` keeps in sync)."""

from codexk8s_pipelines.autonomous.docs_index import docs_index_job

from .periodic import fan_out

DOCS_INDEX_CRON = "17 * * * *"

docs_index_hourly = fan_out(
    "docs_index_hourly",
    DOCS_INDEX_CRON,
    docs_index_job,
    "Re-index every watched repository's docs (incremental: unchanged chunks are not re-embedded).",
    run_key_prefix="docs",
)
