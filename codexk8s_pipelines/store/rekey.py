"""Move a repository's stored rows to its new key (a local checkout once keyed `local:<path>`, now `main`).

Why not a numbered migration: the old and new keys come from `codexk8s.yaml` (the path as written, the directory's
name), which SQL files cannot see. So this step runs after the migrations wherever the configuration is known
(`codexk8s db migrate`, `make run`'s start, the docs index sensor), and it is idempotent: a second run finds no
row under the old key and changes nothing.

What moves: findings, the platform's issues and the docs index (chunks, BM25 terms and corpus). The audit trail
(`flow_events`) is append-only, enforced by triggers, so its periodic rows are copied forward under the new key
with their original time, each copy naming the row it came from; the old rows stay as they were written.
Where the new key already holds a row (a run under the new name before the step ran), the newer row wins: a
finding keeps its earliest `first_seen`, a docs index is the one built under the new name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from .database import PlatformStore
from .findings import periodic_key

_LOCK_ID = 0x72656B79  # "reky": one re-keying at a time across every starter


def rekey_summary(store: PlatformStore, renames: Mapping[str, str]) -> str | None:
    """`rekey_repositories`, told as one line for a person (`repository keys renamed: findings 2, …`); None when
    nothing moved. `codexk8s db migrate` and `make run`'s start both say it."""
    moved = rekey_repositories(store, renames)
    if not moved:
        return None
    return "repository keys renamed: " + ", ".join(f"{table} {count}" for table, count in sorted(moved.items()))


def rekey_repositories(store: PlatformStore, renames: Mapping[str, str]) -> dict[str, int]:
    """Apply `old key → new key` (lower-cased, as stored); return how many rows moved or were copied per table."""
    moved: dict[str, int] = {}
    if not renames:
        return moved
    with store.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        for old, new in renames.items():
            if old == new:
                continue
            for table, count in _rekey_one(conn, old, new).items():
                moved[table] = moved.get(table, 0) + count
    return {table: count for table, count in moved.items() if count}


def _rekey_one(conn: psycopg.Connection[Any], old: str, new: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    # Findings: the row under the new key wins, keeping the earliest first sighting of the two.
    conn.execute(
        "UPDATE findings AS n SET first_seen = least(n.first_seen, o.first_seen) FROM findings AS o"
        " WHERE o.repository = %s AND n.repository = %s AND n.kind = o.kind AND n.fingerprint = o.fingerprint",
        (old, new),
    )
    conn.execute(
        "DELETE FROM findings AS o USING findings AS n WHERE o.repository = %s AND n.repository = %s"
        " AND n.kind = o.kind AND n.fingerprint = o.fingerprint",
        (old, new),
    )
    counts["findings"] = conn.execute("UPDATE findings SET repository = %s WHERE repository = %s", (new, old)).rowcount
    conn.execute(
        "DELETE FROM platform_issues AS o USING platform_issues AS n WHERE o.repository = %s AND n.repository = %s"
        " AND n.purpose = o.purpose",
        (old, new),
    )
    counts["platform_issues"] = conn.execute(
        "UPDATE platform_issues SET repository = %s WHERE repository = %s", (new, old)
    ).rowcount
    # The docs index is one unit per repository (chunks, terms, corpus, postings): one under the new key replaces it.
    row = conn.execute("SELECT 1 FROM doc_corpus WHERE repository = %s", (new,)).fetchone()
    has_new = (
        row is not None or conn.execute("SELECT 1 FROM doc_chunks WHERE repository = %s LIMIT 1", (new,)).fetchone()
    )
    for table in ("doc_chunks", "doc_terms", "doc_corpus", "doc_postings"):
        name = sql.Identifier(table)
        if has_new:
            conn.execute(sql.SQL("DELETE FROM {} WHERE repository = %s").format(name), (old,))
            counts[table] = 0
        else:
            update = sql.SQL("UPDATE {} SET repository = %s WHERE repository = %s").format(name)
            counts[table] = conn.execute(update, (new, old)).rowcount
    counts["flow_events"] = _copy_periodic_events(conn, old, new)
    return counts


def _copy_periodic_events(conn: psycopg.Connection[Any], old: str, new: str) -> int:
    """Copy each periodic audit row of the old key (`periodic:<old>:<kind>`) to the new key, once."""
    old_prefix, new_prefix = periodic_key(old, ""), periodic_key(new, "")
    return conn.execute(
        "INSERT INTO flow_events (correlation_key, actor_type, actor_id, event_type, payload, created_at)"
        " SELECT %s || substr(e.correlation_key, length(%s) + 1), e.actor_type, e.actor_id, e.event_type,"
        "  e.payload || jsonb_build_object('rekeyed_from', jsonb_build_object('id', e.id, 'correlation_key',"
        "  e.correlation_key)), e.created_at"
        " FROM flow_events AS e WHERE left(e.correlation_key, length(%s)) = %s"
        " AND NOT EXISTS (SELECT 1 FROM flow_events AS c WHERE left(c.correlation_key, length(%s)) = %s"
        "  AND c.payload -> 'rekeyed_from' ->> 'id' = e.id::text)"
        " ORDER BY e.id",
        (new_prefix, old_prefix, old_prefix, old_prefix, new_prefix, new_prefix),
    ).rowcount
