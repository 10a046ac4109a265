"""Which repositories the hourly docs schedule re-indexes: those whose index is not of their default branch now.

Why not all of them: `docs_index_sensor` already indexes a repository whose head moved, within a minute. The hourly
run of every repository re-indexed 300 unchanged repositories an hour on a 300-repository installation, and queued
300 runs ahead of a label's stage run. The schedule stays as the backstop that keeps the index right where the
sensor does not look: a run it asked for that failed (the sensor does not ask twice for one head), a plain
directory (no commit to compare: indexed every hour, as before), docs globs, locale or embedding model changed
since, an index half written or emptied. A repository whose head cannot be read now (an unreachable remote, the
tick's budget spent) is indexed as before: the run says what is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from ...config.models import PlatformConfig, RepositoryConfig
from ...store.doc_index import indexed_versions
from ..checkouts import Head, remote_heads

if TYPE_CHECKING:
    from ..registry import DueContext

# A schedule evaluation has 60 s, as a sensor's (sensors/tick.py): the heads are asked within 40 of them, 8 at once,
# each for at most 20 s.
HEADS_BUDGET_SECONDS = 40.0
HEAD_LOOKUP_WORKERS = 8
HEAD_LOOKUP_TIMEOUT_SECONDS = 20.0


def docs_index_due(ctx: DueContext, keys: Sequence[str]) -> dict[str, str | None]:
    """Per partition, None when it is to be indexed now, else why not ("<key>: indexed at <commit>")."""
    repos = {key: ctx.platform.repository(key) for key in keys}
    watched = [key for key in keys if repos[key] is not None]
    found = remote_heads(
        [r for r in repos.values() if r is not None], ctx.credentials, time.monotonic() + HEADS_BUDGET_SECONDS,
        workers=HEAD_LOOKUP_WORKERS, timeout=HEAD_LOOKUP_TIMEOUT_SECONDS,
    )  # fmt: skip
    heads = dict(zip(watched, found, strict=True))
    wanted = _wanted(ctx.platform)
    due: dict[str, str | None] = {}
    for key in keys:
        repo = repos[key]
        if repo is None:  # docs_index_sensor removes its partition at its next tick
            due[key] = f"{key}: not in codexk8s.yaml"
            continue
        versions = indexed_versions(ctx.store, key)
        due[key] = _current(key, heads[key], _last_indexed(ctx.instance, key), versions, (*wanted, _globs(repo)))
    return due


def _wanted(platform: PlatformConfig) -> tuple[str | None, str]:
    """The embedding model and text search configuration a run would index with now (no model: cannot tell)."""
    from ...knowledge.embedding import resolve_model
    from ...knowledge.index import LOCALE_LANGUAGES

    try:
        model: str | None = resolve_model()[1]
    except Exception:  # the run reports a model it cannot load
        model = None
    return model, LOCALE_LANGUAGES[platform.locale]


def _globs(repo: RepositoryConfig) -> list[str]:
    from ...knowledge.index import DEFAULT_GLOBS

    return list(repo.docs_globs) if repo.docs_globs else list(DEFAULT_GLOBS)


def _last_indexed(instance: dg.DagsterInstance, key: str) -> Mapping[str, Any] | None:
    """The metadata of the partition's last docs_index materialization (commit, chunks, globs), or None."""
    from .asset import docs_index

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=docs_index.key, asset_partitions=[key]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    if materialization is None:
        return None
    return {name: value.value for name, value in materialization.metadata.items()}


def _current(
    key: str,
    head: Head,
    last: Mapping[str, Any] | None,
    versions: Mapping[tuple[str | None, str, str], int],
    wanted: tuple[str | None, str, list[str]],
) -> str | None:
    """Why the index of `key` needs no run now, or None when it does."""
    model, language, globs = wanted
    if not isinstance(head, str) or last is None or model is None:
        return None  # head unknown (a plain directory, an unreachable remote), never indexed, model unknown
    if last.get("commit") != head or list(last.get("globs") or []) != globs:
        return None
    if any(version != (head, model, language) for version in versions) or sum(versions.values()) != last.get("chunks"):
        return None  # a run stopped half-way, another model or locale, rows removed since
    return f"{key}: indexed at {head[:12]}"
