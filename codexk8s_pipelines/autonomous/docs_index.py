"""`docs_index`: every watched repository's documentation in pgvector + full text, one partition each.

Materialised by the hourly schedule and by `docs_index_sensor` when a default branch moves; the knowledge
package does the work, this asset only finds the checkout and reports what was done.
"""

import dagster as dg

from ..github.resource import GitHubResource
from ..resources import PlatformConfigResource, PlatformDatabase
from .checkouts import checkout
from .partitions import REPOSITORY_PARTITIONS


@dg.asset(
    name="docs_index",
    partitions_def=REPOSITORY_PARTITIONS,
    group_name="knowledge",
    description="Docs of a watched repository chunked by heading, embedded and indexed (HNSW + full text).",
    kinds={"postgres", "python"},
)
def docs_index(
    context: dg.AssetExecutionContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dg.MaterializeResult:
    from ..knowledge.index import DEFAULT_GLOBS, index_repository

    key = context.partition_key
    repo = platform_config.get().repository(key)
    if repo is None:
        raise dg.Failure(description=f"{key} is not a watched repository any more (see codexk8s.yaml)")
    root, commit = checkout(repo, github.credentials())

    def progress(done: int, total: int) -> None:
        if total and (done == total or done % 200 == 0):
            context.log.info(f"{key}: embedded {done}/{total} chunks")

    globs = tuple(repo.docs_globs) if repo.docs_globs else DEFAULT_GLOBS
    stats = index_repository(platform_db.store().url, key, root, commit=commit, globs=globs, progress=progress)
    return dg.MaterializeResult(
        metadata={
            "commit": commit or "",
            "files": stats.files,
            "chunks": stats.chunks,
            "embedded_now": stats.embedded,
            "reused": stats.reused,
            "deleted": stats.deleted,
            "seconds": round(stats.seconds, 3),
            "globs": dg.MetadataValue.json(list(globs)),
            "index_size": dg.MetadataValue.int(stats.index_bytes),
        }
    )


docs_index_job = dg.define_asset_job("docs_index_job", selection=[docs_index], tags={"codexk8s/kind": "periodic"})
