"""Operator jobs of the platform itself (as opposed to the stage jobs and the periodic runs)."""
# No `from __future__ import annotations`: Dagster reads these type hints at definition time.

import dagster as dg

from .resources import PlatformConfigResource, PlatformDatabase
from .store.migrations import schema_ahead


@dg.op(description="Apply the platform database migrations that are missing and report the schema version.")
def apply_platform_migrations(
    context: dg.OpExecutionContext, platform_db: PlatformDatabase, platform_config: PlatformConfigResource
) -> int:
    store = platform_db.store()
    applied = store.migrate()
    version = store.schema_version()
    config = platform_config.get()
    context.add_output_metadata(
        {
            "applied_now": dg.MetadataValue.json(applied),
            "schema_version": version,
            "watched_repositories": dg.MetadataValue.json([r.key for r in config.repositories]),
        }
    )
    context.log.info(f"schema version {version}; applied now: {applied or 'nothing'}")
    ahead = schema_ahead(version)
    if ahead:
        context.log.warning(ahead)
    return version


@dg.job(
    description="Bring the platform database schema up to date (it is also applied at every start).",
    tags={"codexk8s/kind": "platform"},
)
def platform_migrate() -> None:
    apply_platform_migrations()
