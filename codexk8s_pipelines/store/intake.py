"""What the GitHub intake keeps beyond runs and the audit: webhook deliveries.

A webhook delivery is stored before the receiver answers GitHub, with GitHub's `X-GitHub-Delivery` UNIQUE, so
a redelivery changes nothing; the intake sensors drain pending deliveries of their kind and mark them drained
only once the item they name was fully decided, so a receiver or a sensor that dies in between loses nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from ..domain.redaction import redact
from .database import PlatformStore

DELIVERY_STATUSES = ("pending", "drained", "ignored", "rejected")


@dataclass(frozen=True)
class DeliveryRecord:
    """One webhook delivery as the receiver stores it. `intake` is the sensor that drains it (None: nothing to
    drain: an ignored action, a ping, or a rejected payload kept for the record)."""

    delivery_id: str
    event: str
    action: str | None
    repository: str | None
    item_number: int | None
    intake: str | None
    status: str = "pending"
    reason: str | None = None
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PendingDelivery:
    id: int
    delivery_id: str
    event: str
    action: str | None
    repository: str
    item_number: int
    received_at: datetime


def store_delivery(store: PlatformStore, record: DeliveryRecord) -> bool:
    """Insert a delivery; False when GitHub's delivery id is already stored (a redelivery: a no-op)."""
    if record.status not in DELIVERY_STATUSES:
        raise ValueError(f"unknown delivery status {record.status!r}; expected one of {', '.join(DELIVERY_STATUSES)}")
    with store.connect() as conn:
        row = conn.execute(
            "INSERT INTO webhook_deliveries (delivery_id, event, action, repository, item_number, intake, status,"
            " reason, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (delivery_id) DO NOTHING RETURNING id",
            (
                record.delivery_id,
                record.event,
                record.action,
                record.repository.lower() if record.repository else None,
                record.item_number,
                record.intake,
                record.status,
                record.reason,
                None if record.payload is None else Jsonb(dict(record.payload)),
            ),
        ).fetchone()
        return row is not None


@dataclass(frozen=True)
class Inbox:
    """What one sensor tick reads of the webhook deliveries: those waiting for it, oldest first, and the
    repositories whose webhook delivered lately (for them polling is reconciliation)."""

    pending: list[PendingDelivery]
    healthy: set[str]
    # of the repositories backing off, those whose deliveries wait unread (the tick says why they wait)
    waiting: set[str] = field(default_factory=set[str])
    # the database's clock when the inbox was read: every delivery received by then is older than any GitHub read
    # the tick makes after (`covered_deliveries`)
    read_at: datetime | None = None


# The repositories whose webhook delivered since a moment (`healthy_since`), read every intake tick. Indexed on
# received_at, only the rows it reads (0021): the (repository, received_at) index it had needs a skip scan for this,
# which PostgreSQL has only from 18, and before it the whole index was read each tick (12.4 ms at 200,000 deliveries
# on PostgreSQL 15, 0.09 ms with this one).
HEALTHY_SQL = (
    "SELECT DISTINCT repository FROM webhook_deliveries"
    " WHERE received_at >= %s AND status <> 'rejected' AND repository IS NOT NULL"
)
# One intake's pending deliveries, every repository's oldest before any repository's second, at most
# `per_repository` of each, none of the repositories backing off (intake, backing_off, per_repository, limit): the
# partial index of pending deliveries (0008).
PENDING_SQL = (
    "SELECT id, delivery_id, event, action, repository, item_number, received_at FROM ("
    "  SELECT id, delivery_id, event, action, repository, item_number, received_at,"
    "   row_number() OVER (PARTITION BY repository ORDER BY id) AS nth"
    "  FROM webhook_deliveries WHERE status = 'pending' AND intake = %s AND NOT (repository = ANY(%s))"
    ") waiting WHERE nth <= %s ORDER BY nth, id LIMIT %s"
)


def read_inbox(
    store: PlatformStore,
    intake: str,
    healthy_since: datetime,
    limit: int = 500,
    per_repository: int = 100,
    *,
    backing_off: Collection[str] = (),
) -> Inbox:
    """The tick's deliveries on one connection (two cheap indexed queries when none are waiting): the oldest
    pending ones, at most `per_repository` of each repository, every repository's oldest before any repository's
    second (a repository's backlog never holds up another's), none of the repositories `backing_off` (the tick
    asks them nothing: their deliveries wait, unread, for the backoff to end).

    A repository whose deliveries cannot be decided (in an outage, backing off) keeps them pending; read oldest
    first, `limit` of them would be all a tick ever read, and no other repository's delivery would be read again:
    `per_repository` alone is not enough, five such repositories with 100 each fill 500."""
    skipped = sorted(r.lower() for r in backing_off)
    with store.connect() as conn:
        healthy = conn.execute(HEALTHY_SQL, (healthy_since,)).fetchall()
        pending = conn.execute(PENDING_SQL, (intake, skipped, per_repository, limit)).fetchall()
        waiting = (
            conn.execute(
                "SELECT DISTINCT repository FROM webhook_deliveries"
                " WHERE status = 'pending' AND intake = %s AND repository = ANY(%s)",
                (intake, skipped),
            ).fetchall()
            if skipped
            else []
        )
        read_at = conn.execute("SELECT clock_timestamp() AS at").fetchone()
    return Inbox(
        [PendingDelivery(**r) for r in pending],
        {str(r["repository"]) for r in healthy},
        {str(r["repository"]) for r in waiting},
        read_at["at"] if read_at else None,
    )


def covered_deliveries(
    store: PlatformStore, intake: str, decided: Mapping[str, Collection[int]], read_at: datetime
) -> list[int]:
    """The pending deliveries of one intake that the items `decided` (repository -> numbers) cover: those received
    by `read_at`, when the inbox was read, before the tick read any item. GitHub sends a webhook after the change it
    names, so the item, read later, shows that change: each is decided, read or not (a backlog of 50,000 deliveries
    over 6,000 items costs about 6,000 item reads, not one per delivery). One received after `read_at` may name a
    change made after the item was read: it stays pending for the next tick."""
    pairs = [(repository.lower(), number) for repository, numbers in decided.items() for number in numbers]
    if not pairs:
        return []
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT d.id FROM webhook_deliveries d"
            " JOIN unnest(%s::text[], %s::int[]) AS item (repository, item_number) USING (repository, item_number)"
            " WHERE d.status = 'pending' AND d.intake = %s AND d.received_at <= %s",
            ([r for r, _ in pairs], [n for _, n in pairs], intake, read_at),
        ).fetchall()
    return [int(r["id"]) for r in rows]


def ignore_pending(store: PlatformStore, intake: str, repository: str, reason: str, now: datetime, actor: str) -> int:
    """Set a repository's pending deliveries of one intake aside as `ignored` with `reason` (the repository cannot
    be read: they would stay pending for good), with one `webhook.deliveries_ignored` audit row naming them, both
    in one transaction. Each delivery is set aside once; returns how many were."""
    repository = repository.lower()
    with store.connect() as conn, conn.transaction():
        rows = conn.execute(
            "UPDATE webhook_deliveries SET status = 'ignored', reason = %s, drained_at = %s, payload = NULL"
            " WHERE status = 'pending' AND intake = %s AND repository = %s RETURNING delivery_id",
            (reason, now, intake, repository),
        ).fetchall()
        if rows:
            ids = sorted(str(r["delivery_id"]) for r in rows)
            payload = {"intake": intake, "reason": reason, "count": len(ids), "delivery_ids": ids[:1000]}
            conn.execute(
                "INSERT INTO flow_events (correlation_key, actor_type, actor_id, event_type, payload)"
                " VALUES (%s, 'system', %s, 'webhook.deliveries_ignored', %s)",
                (f"{repository}:intake:{intake}", actor, Jsonb(redact(payload))),
            )
        return len(rows)


def mark_drained(store: PlatformStore, ids: Iterable[int], now: datetime) -> int:
    """Mark pending deliveries drained (their items were decided); how many were. Their GitHub body is dropped: a
    drained delivery is never read again but for its row's columns (the sensors read the item itself from GitHub,
    the inbox never selects the body), and the bodies of a year's deliveries were ~286 MB of a table that only grew.
    Rejected deliveries keep theirs (an operator reads what GitHub sent), and pending ones until they are drained."""
    ids = list(ids)
    if not ids:
        return 0
    with store.connect() as conn:
        cur = conn.execute(
            "UPDATE webhook_deliveries SET status = 'drained', drained_at = %s, payload = NULL"
            " WHERE id = ANY(%s) AND status = 'pending'",
            (now, ids),
        )
        return cur.rowcount


def delivery_status(store: PlatformStore, delivery_id: str) -> dict[str, Any] | None:
    with store.connect() as conn:
        return conn.execute("SELECT * FROM webhook_deliveries WHERE delivery_id = %s", (delivery_id,)).fetchone()
