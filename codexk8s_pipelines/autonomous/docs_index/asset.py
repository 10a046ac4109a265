"""`docs_index`: every watched repository's documentation in pgvector + full text, one partition each.

Materialised by the hourly schedule and by `docs_index_sensor` when a default branch moves; the knowledge
package does the work, this asset only finds the checkout and reports what was done. Its check compares the
commit the index holds with the head of the default branch, asked of the remote after the run.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from ...config.models import PlatformConfig, RepositoryConfig
from ...config.periodic import INDEX_AT_HEAD
from ...github.client import GitHubCredentials
from ...github.resource import GitHubResource
from ...resources import PlatformConfigResource, PlatformDatabase
from ...store import PlatformStore
from ...store.doc_index import indexed_commits
from ..checkouts import remote_head
from ..factory import check_result, open_partition, periodic_asset

MAX_FILES_NOTED = 50  # files skipped or garbled that a run lists, each a warning; the rest are counted


@periodic_asset(
    "docs_index",
    group_name="knowledge",
    description="Docs of a watched repository chunked by heading, embedded and indexed (HNSW + full text).",
    kinds={"postgres", "pgvector"},
    checks={INDEX_AT_HEAD: "Every indexed chunk was read from the commit the default branch points at now."},
)
def docs_index(
    context: dg.AssetExecutionContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dg.MaterializeResult:
    from ...knowledge.index import DEFAULT_GLOBS, LOCALE_LANGUAGES, index_repository
    from ...knowledge.tuning import tune

    key = context.partition_key
    run = open_partition(context, platform_db, platform_config).checked_out(github)
    repo, root, commit = run.repo, run.root, run.commit

    def progress(done: int, total: int) -> None:
        if total and (done == total or done % 200 == 0):
            context.log.info(f"{key}: embedded {done}/{total} chunks")

    globs = tuple(repo.docs_globs) if repo.docs_globs else DEFAULT_GLOBS
    language = LOCALE_LANGUAGES[run.platform.locale]  # the docs' stemming: a ru installation's docs are Russian
    stats = index_repository(run.store.url, key, root, commit=commit, globs=globs, progress=progress, language=language)
    for folder in stats.folders_skipped:
        context.log.warning(f"{key}: not indexed: {folder}")
    files_noted = noted_files(stats.files_noted)
    for line in files_noted:
        context.log.warning(f"{key}: {line}")
    tuning = tune(run.store.url)  # measured again only when the corpus moved by a tenth
    if tuning and tuning.fresh:
        context.log.info(f"search tuned: {tuning.describe()}")
    check = head_check(run.platform, run.store, repo, key, github.credentials())
    return dg.MaterializeResult(
        metadata={
            "commit": commit or "",
            "files": stats.files,
            "chunks": stats.chunks,
            "embedded_now": stats.embedded,
            "reused": stats.reused,
            "deleted": stats.deleted,
            "seconds": float(round(stats.seconds, 3)),
            "globs": dg.MetadataValue.json(list(globs)),
            "folders_not_read": dg.MetadataValue.json(list(stats.folders_skipped)),
            # Docs left out or read garbled, which the CLI reports and a run said nowhere: counted, then listed
            # with the reason (up to MAX_FILES_NOTED), so the owner of the repository can fix each.
            "skipped_too_large": len(stats.oversized),
            "skipped_binary": stats.binary_skipped,
            "skipped_links": stats.links_skipped,
            "skipped_name_not_utf8": len(stats.names_skipped),
            "skipped_unreadable": len(stats.unreadable),
            "not_utf8_indexed": len(stats.not_utf8),
            "files_noted": dg.MetadataValue.json(files_noted),
            "index_size": dg.MetadataValue.int(stats.index_bytes),
            "search_ef_search": tuning.ef_search if tuning else 0,
            "search_recall_at_10": float(round(tuning.recall, 3)) if tuning else 0.0,
            # 0: large filters are ranked exactly (no count of binary codes reached the recall)
            "search_code_candidates": (tuning.code_candidates or 0) if tuning else 0,
        },
        check_results=[check],
    )


def noted_files(noted: Sequence[tuple[str, str]]) -> list[str]:
    """The "path: why" of the first MAX_FILES_NOTED files left out or garbled, then how many more: a generated tree of
    thousands of binary "docs" must not flood the run's log or the asset's metadata."""
    lines = [f"{path}: {why}" for path, why in noted[:MAX_FILES_NOTED]]
    if len(noted) > MAX_FILES_NOTED:
        lines.append(f"… and {len(noted) - MAX_FILES_NOTED} more files skipped or garbled")
    return lines


def head_check(
    platform: PlatformConfig, store: PlatformStore, repo: RepositoryConfig, key: str, credentials: GitHubCredentials
) -> dg.AssetCheckResult:
    commits = indexed_commits(store, key)
    try:
        head: str | None = remote_head(repo, credentials)
    except Exception as exc:  # a plain directory has no head; an unreachable remote is said, not raised
        head, why = None, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    else:
        why = ""
    meta: dict[str, Any] = {"head": head or "", "indexed_commits": dg.MetadataValue.json(sorted(map(str, commits)))}
    if not commits:
        return check_result(platform, INDEX_AT_HEAD, True, "no document to index (nothing matched the globs)", **meta)
    if head is None:
        if repo.path is not None and set(commits) == {None}:
            return check_result(platform, INDEX_AT_HEAD, True, "a plain directory (no git): indexed as it is", **meta)
        return check_result(
            platform, INDEX_AT_HEAD, False, f"the head of {repo.default_branch_shown} is unknown: {why}", **meta
        )
    stale = {c: n for c, n in commits.items() if c != head}
    if not stale:
        return check_result(platform, INDEX_AT_HEAD, True, f"all {sum(commits.values())} chunks at {head[:12]}", **meta)
    older = ", ".join(f"{n} chunk(s) at {(c or 'no commit')[:12]}" for c, n in stale.items())
    return check_result(
        platform,
        INDEX_AT_HEAD,
        False,
        f"{repo.default_branch_shown} is at {head[:12]} but the index has {older}",
        **meta,
    )
