"""Group `database`: the platform database's URL, the connection, the schema version and pgvector."""

from __future__ import annotations

from typing import Any

from .. import settings
from .base import Check, Context, cause, fail, ok, one_line, warn

DB_CONNECT_TIMEOUT_SECONDS = 5
# Written without `user:password@`, which the redaction of every output line would blank out.
_URL_EXAMPLE = "postgresql://user@host:5432/dbname, with :password after the user"


def check_database(ctx: Context) -> list[Check]:
    import psycopg
    import psycopg.conninfo

    from ..store import PlatformStore

    var = settings.DATABASE_URL_VAR
    raw = settings.database_url()
    if not raw:
        return [
            fail(
                "database.url",
                f"{var} is not set",
                f"set {var} to the platform database's URL ({_URL_EXAMPLE}); locally, `codexk8s dev` starts an "
                "embedded database and sets it",
            )
        ]
    url = PlatformStore(raw).url
    try:
        password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    except Exception as exc:
        return [
            fail(
                "database.url",
                f"{var} is not a PostgreSQL connection URL: {one_line(exc)}",
                f"set {var} to a URL like {_URL_EXAMPLE}",
            )
        ]
    if password:
        ctx.secrets.add(str(password))
    shown = ctx.scrub(url)
    checks = [ok("database.url", f"{var} is set ({shown})")]
    try:
        conn = psycopg.connect(url, connect_timeout=DB_CONNECT_TIMEOUT_SECONDS, autocommit=True)
    except Exception as exc:
        cause = one_line(exc)
        if "password authentication failed" in cause or "no password supplied" in cause:
            fix = f"check the user and password in {var}"
        elif "does not exist" in cause and "database" in cause:
            fix = f"create the database, or correct its name in {var}"
        else:
            fix = f"check that the server is running and reachable from here, and the host and port in {var}"
        return [*checks, fail("database.connect", f"cannot connect to {shown}: {cause}", fix)]
    with conn:
        version = conn.info.server_version
        checks.append(ok("database.connect", f"connected to {shown} (PostgreSQL {version // 10000}.{version % 10000})"))
        checks.append(_check_migrations(conn, _migrate_fix(raw)))
        checks.append(_check_pgvector(conn))
        checks.append(_check_role(conn))
    return checks


def _migrate_fix(url: str) -> str:
    """How to apply pending migrations to the database at `url`: `codexk8s db migrate` does it for the running
    `make run` (as its migrator); elsewhere the platform's URL is the application role's, which may not migrate."""
    from ..cli import local_migrator_url

    if local_migrator_url(url) is not None:
        return "codexk8s db migrate (it migrates the running `make run`'s database), or restart `make run`"
    return (
        f"codexk8s db migrate as the schema's owner: the migrator role's URL in {settings.DATABASE_URL_VAR}, not the "
        "application role's (on Kubernetes the chart's migration Job runs it at each helm upgrade)"
    )


def _check_migrations(conn: Any, fix: str) -> Check:
    from ..store.migrations import available_migrations, current_version, schema_ahead

    name = "database.migrations"
    try:
        migrations = available_migrations()
        latest = max(m.version for m in migrations)
        current = current_version(conn)
    except Exception as exc:
        return fail(name, f"cannot read the schema version: {cause(exc)}", "check the database user's rights")
    if current == latest:
        return ok(name, f"schema version {current} (latest)")
    if current < latest:
        pending = ", ".join(str(m.version) for m in migrations if m.version > current)
        return fail(name, f"schema version {current}, latest is {latest} (pending: {pending})", fix)
    return fail(
        name, schema_ahead(current, latest) or "", "run the codexk8s_pipelines release that migrated this database"
    )


def _check_pgvector(conn: Any) -> Check:
    name = "database.pgvector"
    try:
        row = conn.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    except Exception as exc:
        return fail(name, f"cannot read pg_available_extensions: {cause(exc)}", "check the database user's rights")
    if row is None:
        return fail(
            name,
            "the pgvector extension is not available on this server",
            "install pgvector on the PostgreSQL server (a pgvector image, or a managed PostgreSQL with pgvector)",
        )
    default_version, installed = row
    if installed:
        return ok(name, f"available ({default_version}), installed ({installed})")
    return ok(name, f"available ({default_version}), not installed in this database yet")


def _check_role(conn: Any) -> Check:
    """The role the platform connects as must not be able to rewrite the audit trail (store/roles.py)."""
    from ..store.roles import APP_ROLE, role_report

    name = "database.role"
    try:
        report = role_report(conn)
    except Exception as exc:
        return fail(name, f"cannot read the connected role's rights: {cause(exc)}", "check the database user's rights")
    fix = (
        f"connect the platform as a role that owns nothing and is no superuser (e.g. {APP_ROLE}); keep the owner's "
        f"URL for `codexk8s db migrate --grant-to <that role>` only (the Helm chart's migration Job)"
    )
    if report.superuser:
        return warn(
            name, f"{report.role} is a superuser: it can switch off the audit trail's append-only triggers", fix
        )
    if report.owns_audit:
        return warn(
            name, f"{report.role} owns the audit table flow_events: it can disable its triggers or drop it", fix
        )
    if report.audit_rights:
        return warn(name, f"{report.role} holds {', '.join(report.audit_rights)} on flow_events", fix)
    return ok(name, f"{report.role}: no superuser, owns nothing, may only append to and read the audit trail")
