"""Findings of the periodic runs and the issues the platform keeps for them.

A scan reports what it sees now; this module turns that into history: new findings, ones still open, ones that
disappeared (resolved with the date, never deleted) and ones that came back (reopened). Everything for one
repository and kind happens in one transaction under an advisory lock, so two overlapping runs of the same check
cannot resolve each other's findings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from ..domain.redaction import redact
from .database import PlatformStore, StoreError


def periodic_key(repository: str, kind: str) -> str:
    """The correlation key of a repository's periodic check (security, freshness, drift, self-improve) in
    `flow_events`."""
    return f"periodic:{repository}:{kind}"


FINDING_KINDS = ("security", "freshness", "drift")


@dataclass(frozen=True)
class FindingInput:
    """One finding as a scanner reports it, in the platform's terms."""

    fingerprint: str
    title: str
    severity: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class FindingsSync:
    """What one sync changed; rows are `findings` rows as dicts."""

    new: list[dict[str, Any]] = field(default_factory=list)
    reopened: list[dict[str, Any]] = field(default_factory=list)
    still_open: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    preserved: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "new": len(self.new),
            "reopened": len(self.reopened),
            "still_open": len(self.still_open),
            "resolved": len(self.resolved),
            "preserved": len(self.preserved),
        }


def _lock_id(repository: str, kind: str) -> int:
    digest = hashlib.sha256(f"findings:{repository}:{kind}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _check_kind(kind: str) -> None:
    if kind not in FINDING_KINDS:
        raise StoreError(f"unknown finding kind {kind!r}; expected one of {', '.join(FINDING_KINDS)}")


def sync_findings(
    store: PlatformStore,
    repository: str,
    kind: str,
    seen: Iterable[FindingInput],
    now: datetime,
    *,
    preserve: Callable[[Mapping[str, Any]], bool] | None = None,
) -> FindingsSync:
    """Record the findings a check sees now.

    `preserve` keeps an open finding open although it was not seen, when the check could not look at it this
    time (its lockfile failed to parse, its registry did not answer, its object could not be read): a parse
    error must not read as a fix.
    """
    _check_kind(kind)
    incoming: dict[str, FindingInput] = {}
    for item in seen:
        if not item.fingerprint:
            raise StoreError(f"{kind} finding {item.title!r} has no fingerprint")
        incoming.setdefault(item.fingerprint, item)
    result = FindingsSync()
    with store.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(repository, kind),))
        existing = {
            r["fingerprint"]: r
            for r in conn.execute(
                "SELECT * FROM findings WHERE repository = %s AND kind = %s", (repository, kind)
            ).fetchall()
        }
        for fp, item in incoming.items():
            values = (item.title, item.severity, Jsonb(redact(dict(item.details))), now)
            row = existing.get(fp)
            if row is None:
                created = conn.execute(
                    "INSERT INTO findings (repository, kind, fingerprint, title, severity, details, first_seen,"
                    " last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                    (repository, kind, fp, *values, now),
                ).fetchone()
                result.new.append(created)  # type: ignore[arg-type]
                continue
            reopening = row["resolved_at"] is not None
            updated = conn.execute(
                "UPDATE findings SET title = %s, severity = %s, details = %s, last_seen = %s, resolved_at = NULL,"
                " reopened = reopened + %s WHERE id = %s RETURNING *",
                (*values, 1 if reopening else 0, row["id"]),
            ).fetchone()
            (result.reopened if reopening else result.still_open).append(updated)  # type: ignore[arg-type]
        for fp, row in existing.items():
            if fp in incoming or row["resolved_at"] is not None:
                continue
            if preserve is not None and preserve(row["details"] or {}):
                result.preserved.append(row)
                continue
            resolved = conn.execute(
                "UPDATE findings SET resolved_at = %s WHERE id = %s RETURNING *", (now, row["id"])
            ).fetchone()
            result.resolved.append(resolved)  # type: ignore[arg-type]
    return result


def dashboard_findings(
    store: PlatformStore, repository: str, kind: str, now: datetime, keep_resolved: timedelta = timedelta(days=30)
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Open findings and those resolved within `keep_resolved`: what a dashboard shows, in a stable order."""
    _check_kind(kind)
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT * FROM findings WHERE repository = %s AND kind = %s"
            " AND (resolved_at IS NULL OR resolved_at >= %s) ORDER BY first_seen, fingerprint",
            (repository, kind, now - keep_resolved),
        ).fetchall()
    return [r for r in rows if r["resolved_at"] is None], [r for r in rows if r["resolved_at"] is not None]


def open_findings(store: PlatformStore, repository: str, kind: str) -> list[dict[str, Any]]:
    _check_kind(kind)
    with store.connect() as conn:
        return conn.execute(
            "SELECT * FROM findings WHERE repository = %s AND kind = %s AND resolved_at IS NULL"
            " ORDER BY first_seen, fingerprint",
            (repository, kind),
        ).fetchall()


# -- issues the platform opened ---------------------------------------------------------------------------------
def platform_issue(store: PlatformStore, repository: str, purpose: str) -> dict[str, Any] | None:
    with store.connect() as conn:
        return conn.execute(
            "SELECT * FROM platform_issues WHERE repository = %s AND purpose = %s", (repository, purpose)
        ).fetchone()


def platform_issue_by_number(store: PlatformStore, repository: str, issue_number: int) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return conn.execute(
            "SELECT * FROM platform_issues WHERE repository = %s AND issue_number = %s ORDER BY id",
            (repository, issue_number),
        ).fetchall()


def remember_platform_issue(
    store: PlatformStore,
    repository: str,
    purpose: str,
    issue_number: int,
    opened_by: str,
    trigger_label: str | None = None,
) -> None:
    """Record (or re-point, when the old issue is gone) the issue kept for `purpose`."""
    with store.connect() as conn:
        conn.execute(
            "INSERT INTO platform_issues (repository, purpose, issue_number, opened_by, trigger_label)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (repository, purpose) DO UPDATE SET"
            " issue_number = EXCLUDED.issue_number, opened_by = EXCLUDED.opened_by,"
            " trigger_label = EXCLUDED.trigger_label, updated_at = now()",
            (repository, purpose, issue_number, opened_by, trigger_label),
        )
