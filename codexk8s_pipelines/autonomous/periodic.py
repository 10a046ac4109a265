"""What every periodic check does with its findings: store them with history, audit, keep the dashboard issue.

The three assets differ only in how they find things; from "here is what I see now" on, they share this path so
that a finding means the same thing (fingerprint, resolved-not-deleted, one issue per repository and kind)
whichever check produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from ..config.models import PlatformConfig, RepositoryConfig
from ..github.resource import GitHubResource
from ..store import PlatformStore
from ..store.findings import FindingInput, dashboard_findings, periodic_key, sync_findings
from .dashboard import DashboardOutcome, render_dashboard, sync_dashboard

ACTOR = "codexk8s-periodic"


def now_utc() -> datetime:
    return datetime.now(UTC)


def watched_repository(platform: PlatformConfig, key: str) -> RepositoryConfig:
    repo = platform.repository(key)
    if repo is None:
        raise dg.Failure(description=f"{key} is not a watched repository any more (see codexk8s.yaml)")
    return repo


def publish_findings(
    context: dg.AssetExecutionContext,
    *,
    store: PlatformStore,
    github: GitHubResource,
    platform: PlatformConfig,
    repo: RepositoryConfig,
    kind: str,
    findings: Iterable[FindingInput],
    notes: Sequence[str] = (),
    preserve: Callable[[Mapping[str, Any]], bool] | None = None,
    attention: bool = False,
) -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
    """Sync, audit and publish; returns the metadata to attach to the materialisation, the sync result and the
    open findings (the asset checks judge those: a finding kept open because its file broke still counts).

    `attention`: the notes ask a human to look although nothing is open (an advisory that could not be evaluated
    may well apply), so the dashboard issue is opened, or kept open, for them."""
    now = now_utc()
    repository = repo.key.lower()
    synced = sync_findings(store, repository, kind, findings, now, preserve=preserve)
    counts = synced.counts()
    keep = timedelta(days=platform.periodic.keep_resolved_days)
    open_rows, resolved_rows = dashboard_findings(store, repository, kind, now, keep)
    outcome = _publish_dashboard(
        context, store, github, repo, kind, open_rows, resolved_rows, notes, keep.days, attention
    )
    store.append_event(
        periodic_key(repository, kind),
        "findings.synced",
        "system",
        ACTOR,
        {
            **counts,
            "open": len(open_rows),
            "dagster_run_id": context.run.run_id,
            "dashboard": outcome.action,
            "dashboard_issue": outcome.issue_number,
            "notes": list(notes),
        },
    )
    metadata: dict[str, Any] = {
        "open": len(open_rows),
        **counts,
        "dashboard": outcome.action,
    }
    if outcome.url:
        metadata["dashboard_issue"] = dg.MetadataValue.url(outcome.url)
    if notes:
        metadata["notes"] = dg.MetadataValue.md("\n".join(f"- {n}" for n in notes))
    return metadata, synced, open_rows


def _publish_dashboard(
    context: dg.AssetExecutionContext,
    store: PlatformStore,
    github: GitHubResource,
    repo: RepositoryConfig,
    kind: str,
    open_rows: list[dict[str, Any]],
    resolved_rows: list[dict[str, Any]],
    notes: Sequence[str],
    keep_days: int,
    attention: bool = False,
) -> DashboardOutcome:
    """The dashboard lives on GitHub: a local (`path:`) repository or missing credentials keep findings in the
    database and the asset's metadata only, said once in the log."""
    if repo.github is None:
        return DashboardOutcome("skipped")
    credentials = github.credentials()
    if not credentials.configured:
        context.log.warning(f"{repo.key}: no dashboard issue: {credentials.missing_reason()}")
        return DashboardOutcome("skipped")
    body = render_dashboard(kind, repo.github, open_rows, resolved_rows, notes, keep_days)
    wanted = bool(open_rows) or attention
    outcome = sync_dashboard(github.repo_api(repo.github), store, repo.key.lower(), kind, body, wanted)
    context.log.info(f"{repo.key}: {kind} dashboard issue {outcome.action} (#{outcome.issue_number})")
    return outcome
