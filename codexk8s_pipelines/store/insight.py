"""Reads of the audit trail for delivery insight: a day's runs, approvals and merges, and one issue's story.

Every daily read starts from the day's rows through `flow_events_type_idx (event_type, created_at)` and widens
only to the keys (or issues) those rows name, through `flow_events_key_idx` and `flow_events_key_prefix_idx`: the
cost follows the day's rows, not the table's (see bench/insight.py). The metrics themselves are computed in
`domain/delivery_metrics.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ..domain.delivery_metrics import (
    FINISH_EVENTS,
    MERGED_EVENT,
    AuditEvent,
    RunInfo,
)
from .database import PlatformStore

_COLUMNS = "e.id, e.correlation_key, e.event_type, e.actor_type, e.actor_id, e.payload, e.created_at"
APPROVAL_DAY_EVENTS = ("approval.approved", "approval.expired")


def _event(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=int(row["id"]),
        correlation_key=str(row["correlation_key"]),
        event_type=str(row["event_type"]),
        actor_type=str(row["actor_type"]),
        actor_id=str(row["actor_id"]),
        payload=row["payload"] or {},
        at=row["created_at"],
    )


def issue_prefix(repository: str, number: int) -> str:
    """Every correlation key of an issue (or PR) starts with this."""
    return f"{repository.strip().lower()}#{int(number)}:"


def _upper(prefix: str) -> str:
    """The smallest string above every string starting with `prefix` (its last character is ':')."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def events_of_keys_on_day(
    store: PlatformStore, event_types: Sequence[str], start: datetime, end: datetime
) -> list[AuditEvent]:
    """Every event of the keys that have an event of `event_types` in [start, end)."""
    with store.connect() as conn:
        rows = conn.execute(
            "WITH day AS (SELECT DISTINCT correlation_key FROM flow_events"
            "  WHERE event_type = ANY(%s) AND created_at >= %s AND created_at < %s)"
            f" SELECT {_COLUMNS} FROM day JOIN flow_events e ON e.correlation_key = day.correlation_key"
            " ORDER BY e.id",
            (list(event_types), start, end),
        ).fetchall()
    return [_event(r) for r in rows]


def finished_run_events(store: PlatformStore, start: datetime, end: datetime) -> list[AuditEvent]:
    """The events of every run with a finish event in [start, end)."""
    return events_of_keys_on_day(store, tuple(FINISH_EVENTS), start, end)


def approval_events(store: PlatformStore, start: datetime, end: datetime) -> list[AuditEvent]:
    """The events of every approval granted or expired in [start, end)."""
    return events_of_keys_on_day(store, APPROVAL_DAY_EVENTS, start, end)


def run_infos(store: PlatformStore, keys: Iterable[str]) -> dict[str, RunInfo]:
    """The run table's stage and numbers of these keys (authoritative for runs launched by hand)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT correlation_key, stage, revise, issue_number, pr_number FROM runs WHERE correlation_key = ANY(%s)",
            (wanted,),
        ).fetchall()
    return {r["correlation_key"]: RunInfo(r["stage"], bool(r["revise"]), r["issue_number"], r["pr_number"]) for r in rows}


def issues_events(store: PlatformStore, issues: Iterable[tuple[str, int]]) -> list[AuditEvent]:
    """Every event of these issues (keys `<repo>#<n>:…`) in one statement, one index range per issue."""
    prefixes = sorted({issue_prefix(repo, n) for repo, n in issues})
    if not prefixes:
        return []
    with store.connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM unnest(%s::text[], %s::text[]) AS p(low, high)"
            " JOIN LATERAL (SELECT * FROM flow_events f"
            "   WHERE f.correlation_key ~>=~ p.low AND f.correlation_key ~<~ p.high) e ON TRUE"
            " ORDER BY e.id",
            (prefixes, [_upper(p) for p in prefixes]),
        ).fetchall()
    return [_event(r) for r in rows]


def linked_pull_requests(store: PlatformStore, issues: Iterable[tuple[str, int]]) -> dict[tuple[str, int], list[int]]:
    """The PRs of each issue, in one statement: those its runs opened, updated or merged, and those the run table
    links to it (review runs)."""
    wanted = sorted({(repo.strip().lower(), int(n)) for repo, n in issues})
    if not wanted:
        return {}
    prefixes = [issue_prefix(repo, n) for repo, n in wanted]
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT p.low AS prefix, (e.payload->>'number')::int AS n FROM unnest(%s::text[], %s::text[]) AS p(low, high)"
            " JOIN LATERAL (SELECT payload FROM flow_events f"
            "   WHERE f.correlation_key ~>=~ p.low AND f.correlation_key ~<~ p.high"
            "   AND f.event_type IN ('run.pr.created', 'run.pr.updated', 'pr.merged')) e ON TRUE"
            " WHERE e.payload->>'number' ~ '^[0-9]+$'"
            " UNION SELECT r.repository || '#' || r.issue_number || ':', r.pr_number FROM runs r"
            " JOIN unnest(%s::text[], %s::int[]) AS w(repo, num) ON r.repository = w.repo AND r.issue_number = w.num"
            " WHERE r.pr_number IS NOT NULL",
            (prefixes, [_upper(p) for p in prefixes], [r for r, _ in wanted], [n for _, n in wanted]),
        ).fetchall()
    by_prefix = dict(zip(prefixes, wanted, strict=True))
    found: dict[tuple[str, int], set[int]] = {issue: set() for issue in wanted}
    for row in rows:
        issue = by_prefix.get(str(row["prefix"]))
        if issue is not None and row["n"] is not None and int(row["n"]) != issue[1]:
            found[issue].add(int(row["n"]))
    return {issue: sorted(prs) for issue, prs in found.items()}


def issue_story_events(store: PlatformStore, repository: str, issue_number: int) -> list[AuditEvent]:
    """Everything the platform recorded about an issue and its PRs, in the order it was recorded."""
    return stories_events(store, [(repository, issue_number)])[(repository.strip().lower(), issue_number)]


def stories_events(
    store: PlatformStore, issues: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], list[AuditEvent]]:
    """`issue_story_events` of many issues in two statements (a day's merged issues)."""
    links = linked_pull_requests(store, issues)
    owner: dict[tuple[str, int], tuple[str, int]] = {}
    for issue, prs in links.items():
        for pr in prs:
            owner.setdefault((issue[0], pr), issue)
        owner[issue] = issue
    stories: dict[tuple[str, int], list[AuditEvent]] = {issue: [] for issue in links}
    for event in issues_events(store, owner):
        head = event.correlation_key.split(":", 1)[0]
        repo, _, number = head.rpartition("#")
        issue = owner.get((repo, int(number))) if number.isdigit() else None
        if issue is not None:
            stories[issue].append(event)
    return stories


def merged_issues(store: PlatformStore, start: datetime, end: datetime) -> list[tuple[str, int]]:
    """The issues whose PR merged in [start, end) (a `pr.merged` row is keyed by the issue it closes)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT correlation_key FROM flow_events WHERE event_type = %s AND created_at >= %s"
            " AND created_at < %s",
            (MERGED_EVENT, start, end),
        ).fetchall()
    found = set()
    for row in rows:
        head = str(row["correlation_key"]).split(":", 1)[0]
        repo, _, number = head.rpartition("#")
        if repo and number.isdigit():
            found.add((repo, int(number)))
    return sorted(found)


def explain_plan(store: PlatformStore, sql: str, params: Sequence[Any]) -> str:
    """EXPLAIN of a statement (the bench proves which indexes the daily reads use)."""
    with store.connect() as conn:
        rows = conn.execute("EXPLAIN " + sql, params).fetchall()
    return "\n".join(str(next(iter(r.values()))) for r in rows)
