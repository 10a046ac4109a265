"""The periodic checks, listed once: jobs, schedules and the code location's assets are derived from here.

Adding a check means a folder next to the others (its asset, built with `factory.periodic_asset`, and its asset
checks) and one entry below; nothing else lists checks by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from ..config.models import PlatformConfig
from ..github.client import GitHubCredentials
from ..queue_tags import KIND_TAG, PERIODIC_KIND, PERIODIC_PRIORITY, PRIORITY_TAG
from ..store import PlatformStore
from .docs_index.asset import docs_index
from .docs_index.due import docs_index_due
from .drift.asset import ops_drift
from .factory import repository_checkout
from .freshness.asset import dependency_freshness
from .security.asset import security_findings
from .security.osv_database import osv_database
from .self_improve.asset import self_improve_evidence

# The run queue limits periodic runs to half its slots and starts them after stage runs (queue_tags).
PERIODIC_TAGS = {KIND_TAG: PERIODIC_KIND, PRIORITY_TAG: str(PERIODIC_PRIORITY)}
DOCS_INDEX_CRON = "17 * * * *"


@dataclass(frozen=True)
class DueContext:
    """What a schedule tick's `due` rule may read: the configuration, the platform database, the Dagster instance
    (a partition's last materialization) and the GitHub credentials (a remote's head)."""

    platform: PlatformConfig
    store: PlatformStore
    instance: dg.DagsterInstance
    credentials: GitHubCredentials


# Which partitions a schedule tick runs, decided for all at once (a rule may ask each remote, several at a time):
# per partition key, None for "run it", else the reason it waits (the skip reason counts them, shows a few).
Due = Callable[[DueContext, Sequence[str]], Mapping[str, str | None]]


def one_by_one(rule: Callable[[PlatformConfig, PlatformStore, str], str | None]) -> Due:
    """A rule that decides each partition alone, from the configuration and the platform database."""

    def due(ctx: DueContext, keys: Sequence[str]) -> dict[str, str | None]:
        return {key: rule(ctx.platform, ctx.store, key) for key in keys}

    return due


@dataclass(frozen=True)
class PeriodicCheck:
    asset: dg.AssetsDefinition
    job: str
    schedule: str
    cron: Callable[[PlatformConfig], str]
    description: str  # the schedule's
    run_key_prefix: str
    due: Due | None = None  # None: every repository partition at every tick
    partitioned: bool = True


def _drift_due(platform: PlatformConfig, _store: PlatformStore, key: str) -> str | None:
    repo = platform.repository(key)
    return None if repo is not None and repo.drift is not None else f"{key}: no drift section"


def _self_improve_due(platform: PlatformConfig, store: PlatformStore, key: str) -> str | None:
    from ..store.evidence import finished_runs_since, last_prepared

    threshold = platform.periodic.self_improve.min_finished_runs
    finished = finished_runs_since(store, key, last_prepared(store, key))
    if finished >= threshold:
        return None
    return f"{key}: {finished} of {threshold} runs finished since the last evidence issue"


PERIODIC_CHECKS: tuple[PeriodicCheck, ...] = (
    PeriodicCheck(
        osv_database, "osv_refresh", "osv_refresh_schedule", lambda c: c.periodic.security.refresh_cron,
        "Refresh the OSV database (OSV's all.zip exports, or periodic.security.osv_source); on failure the "
        "previous database is kept.",
        "osv_refresh", partitioned=False,
    ),
    PeriodicCheck(
        security_findings, "security_scan_job", "security_scan_schedule", lambda c: c.periodic.security.cron,
        "Match every watched repository's lockfiles against the OSV database.", "security_scan_schedule",
    ),
    PeriodicCheck(
        dependency_freshness, "dependency_freshness_job", "dependency_freshness_schedule",
        lambda c: c.periodic.freshness.cron,
        "Compare every watched repository's dependencies with the registries' latest releases.",
        "dependency_freshness_schedule",
    ),
    PeriodicCheck(
        ops_drift, "ops_drift_job", "ops_drift_schedule", lambda c: c.periodic.drift.cron,
        "Compare the live cluster with each repository's manifests (repositories with a drift section).",
        "ops_drift", due=one_by_one(_drift_due),
    ),
    PeriodicCheck(
        self_improve_evidence, "self_improve_job", "self_improve_cadence", lambda c: c.periodic.self_improve.cron,
        "Open (or refresh) the self-improve evidence issue of a repository once enough runs finished since the "
        "last one.",
        "self_improve", due=one_by_one(_self_improve_due),
    ),
    PeriodicCheck(
        docs_index, "docs_index_job", "docs_index_hourly", lambda _c: DOCS_INDEX_CRON,
        "Re-index the docs of every watched repository whose index is not of its default branch's head now (a "
        "failed run, a plain directory, new globs, locale or model); docs_index_sensor indexes a head that moved.",
        "docs", due=docs_index_due,
    ),
)  # fmt: skip

JOBS: dict[str, dg.UnresolvedAssetJobDefinition] = {
    c.job: dg.define_asset_job(c.job, selection=[c.asset], tags=PERIODIC_TAGS, description=c.description)
    for c in PERIODIC_CHECKS
}
ASSETS = [repository_checkout, *(c.asset for c in PERIODIC_CHECKS)]
