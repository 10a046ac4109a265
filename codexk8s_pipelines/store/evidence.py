"""Run evidence for the self-improve cadence: what went wrong and where time went since the last look.

Read from the platform's own memory (runs and the audit trail), never from Dagster's event log, so the evidence
is the same whichever Dagster instance ran the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .database import FINISHED, PlatformStore
from .findings import periodic_key

PREPARED_EVENT = "self_improve.prepared"


def cadence_key(repository: str) -> str:
    """The correlation key of a repository's self-improve cadence in `flow_events`."""
    return periodic_key(repository, "self-improve")


@dataclass(frozen=True)
class StageTiming:
    stage: str
    runs: int
    median_seconds: float
    max_seconds: float


@dataclass
class RunEvidence:
    repository: str
    since: datetime | None
    until: datetime
    finished: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    failures_by_reason: list[tuple[str, int]] = field(default_factory=list)
    revise_by_stage: list[tuple[str, int]] = field(default_factory=list)
    slowest_stages: list[StageTiming] = field(default_factory=list)
    status_lines: list[dict[str, Any]] = field(default_factory=list)  # created_at, correlation_key, stage, text


def last_prepared(store: PlatformStore, repository: str) -> datetime | None:
    with store.connect() as conn:
        row = conn.execute(
            "SELECT max(created_at) AS at FROM flow_events WHERE correlation_key = %s AND event_type = %s",
            (cadence_key(repository), PREPARED_EVENT),
        ).fetchone()
    return row["at"] if row else None


def finished_runs_since(store: PlatformStore, repository: str, since: datetime | None) -> int:
    with store.connect() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM runs WHERE repository = %s AND status = ANY(%s)"
            " AND (%s::timestamptz IS NULL OR finished_at > %s)",
            (repository, list(FINISHED), since, since),
        ).fetchone()
    return int(row["n"]) if row else 0


def agent_status_lines(
    store: PlatformStore, repository: str, since: datetime | None, until: datetime, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest status lines the agents reported in (since, until], newest first: created_at, correlation_key,
    stage, text."""
    with store.connect() as conn:
        return _status_lines(conn, repository, since, until, limit)


def _status_lines(
    conn: Any, repository: str, since: datetime | None, until: datetime, limit: int
) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT e.created_at, e.correlation_key, r.stage,"
        " coalesce(e.payload->>'status', e.payload->>'agent_status') AS text FROM flow_events e"
        " JOIN runs r ON r.correlation_key = e.correlation_key"
        " WHERE r.repository = %s AND e.created_at <= %s AND (%s::timestamptz IS NULL OR e.created_at > %s)"
        " AND ((e.event_type = 'run.agent.status_reported' AND e.payload ? 'status')"
        "   OR (e.event_type = 'run.agent.finished' AND coalesce(e.payload->>'agent_status', '') <> ''))"
        " ORDER BY e.id DESC LIMIT %s",
        (repository, until, since, since, limit),
    ).fetchall()
