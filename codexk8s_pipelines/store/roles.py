"""The platform database's two roles: the migrator owns the schema, the application role may only use it.

Why two: the audit trail (`flow_events`) is append-only by triggers, and a table's owner or a superuser can
switch those off (`ALTER TABLE … DISABLE TRIGGER`, `SET session_replication_role = replica`, `DROP TABLE`). So
the role every platform process connects with owns nothing and is no superuser: it gets INSERT and SELECT on
`flow_events`, SELECT on `schema_migrations`, and the ordinary row rights on the other tables, never TRUNCATE,
REFERENCES or TRIGGER. Only `codexk8s db migrate`, run with the migrator's URL (the Helm hook Job, `make run`),
changes the schema and then re-grants, so a table added by a later migration is granted the same way.

Role names are the operator's (managed PostgreSQL services have their own conventions), so the grants are made
here with the name quoted, not written into a migration.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import psycopg
from psycopg import sql

MIGRATOR_ROLE = "codexk8s_migrator"
APP_ROLE = "codexk8s_app"
AUDIT_TABLE = "flow_events"
# Tables the application may read and append to, never change: the audit trail and the schema's history.
APPEND_ONLY_TABLES: tuple[str, ...] = (AUDIT_TABLE,)
READ_ONLY_TABLES: tuple[str, ...] = ("schema_migrations",)
# Rights that would let the application role rewrite or erase the audit trail.
AUDIT_FORBIDDEN_PRIVILEGES: tuple[str, ...] = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES")


class RoleError(RuntimeError):
    pass


def grant_application_role(conn: psycopg.Connection, role: str) -> None:
    """Give `role` what the platform needs in the connected database's `public` schema, and nothing more.

    Run by the schema owner after every migration (idempotent). Rights granted before are revoked first, so a
    right removed here is removed from existing databases too.
    """
    exists = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists is None:
        raise RoleError(
            f"the application role {role!r} does not exist on this server: create it first "
            f"(CREATE ROLE {role} LOGIN PASSWORD '…'), or correct CODEXK8S_DATABASE_APP_ROLE"
        )
    if exists[0]:
        raise RoleError(f"the application role {role!r} is a superuser: it could bypass the audit trail's triggers")
    who = sql.Identifier(role)
    tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY c.relname"
        )
    ]
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(who))
    conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(who))
    conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))  # PostgreSQL < 15 granted it to everyone
    for table in tables:
        name = sql.Identifier(table)
        conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(name, who))
        conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(name))
        if table in APPEND_ONLY_TABLES:
            rights = "SELECT, INSERT"
        elif table in READ_ONLY_TABLES:
            rights = "SELECT"
        else:
            rights = "SELECT, INSERT, UPDATE, DELETE"
        conn.execute(sql.SQL("GRANT " + rights + " ON TABLE {} TO {}").format(name, who))
    conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(who))


@dataclass(frozen=True)
class RoleReport:
    """What the connected role could do to the audit trail (for `codexk8s doctor`)."""

    role: str
    superuser: bool
    owns_audit: bool
    audit_rights: tuple[str, ...]  # forbidden rights it holds on flow_events

    @property
    def can_bypass_audit(self) -> bool:
        return self.superuser or self.owns_audit or bool(self.audit_rights)


def role_report(conn: psycopg.Connection) -> RoleReport:
    row = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if row is None:
        raise RoleError("the connected role is not in pg_roles")
    role, superuser = str(row[0]), bool(row[1])
    table = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{AUDIT_TABLE}",)).fetchone()
    if not table or not table[0]:
        return RoleReport(role, superuser, False, ())
    owns = conn.execute(
        "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = %s::regclass",
        (f"public.{AUDIT_TABLE}",),
    ).fetchone()
    rights = tuple(
        p
        for p in AUDIT_FORBIDDEN_PRIVILEGES
        if conn.execute("SELECT has_table_privilege(%s, %s)", (f"public.{AUDIT_TABLE}", p)).fetchone()[0]  # type: ignore[index]
    )
    return RoleReport(role, superuser, bool(owns and owns[0]), rights)


def create_roles(conn: psycopg.Connection, migrator: str = MIGRATOR_ROLE, app: str = APP_ROLE) -> None:
    """As a superuser: the two login roles, neither a superuser (the embedded database of `make run` and tests).

    Idempotent. Passwords are not set: the embedded server trusts its local socket, which only its owner reaches.
    In production the operator (or the managed service) creates them, each with a password in its own Secret.
    """
    for role in (migrator, app):
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None:
            continue
        with contextlib.suppress(psycopg.errors.DuplicateObject):  # another process created it meanwhile
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS").format(
                    sql.Identifier(role)
                )
            )
