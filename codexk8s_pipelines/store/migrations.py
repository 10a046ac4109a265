"""Versioned, idempotent schema migrations: `migrations/NNNN_name.sql`, each applied once, in order.

An advisory lock serialises concurrent starters (the webserver, the daemon and run workers all apply
migrations at start), so two processes never apply the same version twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import LiteralString, cast

import psycopg

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x636F6465  # "code": any constant shared by every starter
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    package = cast(str, __package__)  # a module of a package: never None here
    for entry in resources.files(package).joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda x: x.version)
    versions = [x.version for x in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


def latest_version() -> int:
    return max(m.version for m in available_migrations())


def schema_ahead(current: int, latest: int | None = None) -> str | None:
    """What to tell an operator whose database a newer release migrated, or None when it is not ahead.

    Why: migrations are not undone. After `helm rollback`, or while a stage run started by the former image still
    runs through an upgrade, code older than the schema runs against it and may fail where the schema changed
    (0020 ended the one usage row per correlation key that releases before it write). Applying nothing said
    nothing: the first sign was a run failing after its agent had pushed."""
    latest = latest_version() if latest is None else latest
    if current <= latest:
        return None
    return (
        f"the database schema is at version {current}, newer than this release's latest migration {latest}: a newer "
        "release migrated it (after a rollback, or in a run of the former image during an upgrade), and this "
        'release\'s writes may fail where the schema changed; see docs/runbook.md, "Upgrades and rollbacks"'
    )


class MigrationPermissionError(RuntimeError):
    """The connected role may not change the schema (the application role): migrations need the migrator."""


def apply_migrations(conn: psycopg.Connection, grant_to: str | None = None) -> list[int]:
    """Apply what is missing in one transaction; return the versions applied now (empty when up to date).

    An up-to-date schema is only read, so the application role (which may not create anything) can call this at
    every start. `grant_to`: the application role, re-granted its rights after migrating (the migrator only).
    """
    available = available_migrations()
    current = current_version(conn)
    conn.commit()
    latest = max(m.version for m in available)
    ahead = schema_ahead(current, latest)
    if ahead:
        log.warning(ahead)
    if grant_to is None and current >= latest:
        return []
    try:
        return _apply(conn, available, grant_to)
    except psycopg.errors.InsufficientPrivilege as exc:
        pending = ", ".join(str(m.version) for m in available if m.version > current) or "none"
        raise MigrationPermissionError(
            f"the database role may not change the schema (pending migrations: {pending}): {exc}. "
            "Run `codexk8s db migrate` with the migrator role's URL (the Helm chart's migration hook Job does)"
        ) from exc


def _apply(conn: psycopg.Connection, available: list[Migration], grant_to: str | None) -> list[int]:
    from .roles import grant_application_role

    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in available:
            if migration.version in done:
                continue
            conn.execute(cast(LiteralString, migration.sql))  # SQL text shipped in this package, not input
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
            applied_now.append(migration.version)
        if grant_to:
            grant_application_role(conn, grant_to)
    return applied_now


def current_version(conn: psycopg.Connection) -> int:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0
