"""Least privilege in the platform database: the application role cannot touch the audit trail, whatever it tries.

The database is prepared as `make run` prepares it (the embedded server's superuser only creates the two roles and
the database; the migrator migrates and grants), and every statement below runs as the application role, the
role every platform process connects with.
"""

from __future__ import annotations

import psycopg
import pytest

from codexk8s_pipelines.store import DatabaseUrls, PlatformStore
from codexk8s_pipelines.store.migrations import MigrationPermissionError, available_migrations
from codexk8s_pipelines.store.roles import APP_ROLE, RoleError, grant_application_role, role_report

KEY = "acme/shop#7:run:dev:9001"

# Every way a table owner or a superuser could rewrite or erase the audit trail, each refused to the app role.
BYPASSES = [
    "SET session_replication_role = replica",
    "ALTER TABLE flow_events DISABLE TRIGGER flow_events_no_update_delete",
    "ALTER TABLE flow_events DISABLE TRIGGER ALL",
    "DROP TRIGGER flow_events_no_update_delete ON flow_events",
    "CREATE OR REPLACE FUNCTION flow_events_refuse_change() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "DROP TABLE flow_events",
    "TRUNCATE flow_events",
    "UPDATE flow_events SET event_type = 'forged'",
    "DELETE FROM flow_events",
    "ALTER TABLE flow_events RENAME TO flow_events_old",
    "ALTER TABLE flow_events OWNER TO codexk8s_app",
    "CREATE TABLE flow_events_copy (LIKE flow_events)",
    "DELETE FROM schema_migrations",
    "ALTER ROLE codexk8s_app SUPERUSER",
]


def test_the_application_role_cannot_bypass_the_append_only_audit(store: PlatformStore) -> None:
    store.append_event(KEY, "run.requested", "system", "sensor", {"stage": "dev"})
    for statement in BYPASSES:
        with psycopg.connect(store.url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
            pytest.fail(f"not refused: {statement}")
        with psycopg.connect(store.url, autocommit=True) as conn:
            # A GRANT of a right one lacks is only a warning in PostgreSQL: it must change nothing either.
            conn.execute("GRANT UPDATE, DELETE, TRUNCATE ON flow_events TO codexk8s_app")
            report = role_report(conn)
            assert not report.can_bypass_audit, (statement, report)
            # Still there, still guarded: no statement changed anything.
            assert conn.execute("SELECT event_type FROM flow_events").fetchall() == [("run.requested",)]
            triggers = conn.execute(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'flow_events'::regclass"
                " AND NOT tgisinternal ORDER BY tgname"
            ).fetchall()
            assert triggers == [("flow_events_no_truncate", "O"), ("flow_events_no_update_delete", "O")], statement


def test_the_application_role_does_its_work(store: PlatformStore) -> None:
    """What the platform needs still works as that role: append and read the audit, write the other tables."""
    assert store.url.startswith(f"postgresql://{APP_ROLE}:")
    first = store.append_event(KEY, "run.requested", "system", "sensor", {"stage": "dev"})
    assert [e["id"] for e in store.events(KEY)] == [first]
    with psycopg.connect(store.url, autocommit=True) as conn:
        report = role_report(conn)
        conn.execute(
            "INSERT INTO runs (correlation_key, repository, role, issue_number) VALUES (%s, 'acme/shop', 'dev', 7)",
            (KEY,),
        )
        conn.execute("UPDATE runs SET status = 'running' WHERE correlation_key = %s", (KEY,))
        conn.execute("DELETE FROM runs WHERE correlation_key = %s", (KEY,))
    assert report.role == APP_ROLE
    assert not report.can_bypass_audit and report.audit_rights == ()


def test_the_owner_is_reported_as_able_to_bypass(migrator_database_url: str) -> None:
    with psycopg.connect(migrator_database_url, autocommit=True) as conn:
        report = role_report(conn)
    assert report.owns_audit and not report.superuser and report.can_bypass_audit


def test_the_application_role_may_not_migrate_and_says_who_may(bare_database: DatabaseUrls) -> None:
    with pytest.raises(MigrationPermissionError) as caught:
        PlatformStore(bare_database.app).migrate()
    pending = ", ".join(str(m.version) for m in available_migrations())
    assert f"pending migrations: {pending}" in str(caught.value)
    assert "codexk8s db migrate` with the migrator role's URL" in str(caught.value)
    assert PlatformStore(bare_database.migrator).schema_version() == 0  # nothing half-applied


def test_migrating_grants_again_idempotently(bare_database: DatabaseUrls) -> None:
    migrator = PlatformStore(bare_database.migrator)
    assert migrator.migrate(grant_to=APP_ROLE) == [m.version for m in available_migrations()]
    assert migrator.migrate(grant_to=APP_ROLE) == []  # an upgrade with nothing new re-grants and applies nothing
    app = PlatformStore(bare_database.app)
    assert app.migrate() == []  # up to date: the app's start-up check reads only
    app.append_event(KEY, "run.requested", "system", "sensor", {})
    with psycopg.connect(bare_database.app, autocommit=True) as conn:
        assert not role_report(conn).can_bypass_audit


def test_granting_to_a_missing_or_superuser_role_is_refused(bare_database: DatabaseUrls) -> None:
    with psycopg.connect(bare_database.migrator, autocommit=True) as conn:
        with pytest.raises(RoleError, match="'nobody_here' does not exist"):
            grant_application_role(conn, "nobody_here")
        with pytest.raises(RoleError, match="'postgres' is a superuser"):
            grant_application_role(conn, "postgres")


def test_db_migrate_as_the_migrator_grants_the_app_role(
    bare_database: DatabaseUrls, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the Helm hook Job runs: `codexk8s db migrate --wait N` with the migrator's URL and the app role named."""
    from codexk8s_pipelines.cli import main

    monkeypatch.setenv("CODEXK8S_DATABASE_URL", bare_database.migrator)
    monkeypatch.setenv("CODEXK8S_DATABASE_APP_ROLE", APP_ROLE)
    assert main(["db", "migrate", "--wait", "5"]) == 0
    latest = max(m.version for m in available_migrations())
    assert f"schema version {latest}; applied now: [" in capsys.readouterr().out
    assert main(["db", "migrate"]) == 0  # idempotent: an upgrade with nothing new
    assert (
        f"schema version {latest}; applied now: nothing; rights of role {APP_ROLE} granted" in capsys.readouterr().out
    )
    PlatformStore(bare_database.app).append_event(KEY, "run.requested", "system", "sensor", {})


def test_a_schema_newer_than_the_release_is_said_not_passed_over(
    bare_database: DatabaseUrls, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """After `helm rollback` (migrations are not undone) the former release applied nothing and said nothing; its
    first sign was a run failing at its usage record after the agent had pushed. Every starter and `db migrate` now
    name both versions and the runbook's section."""
    import logging

    import psycopg

    from codexk8s_pipelines.cli import main
    from codexk8s_pipelines.doctor.database_checks import _check_migrations

    latest = max(m.version for m in available_migrations())
    PlatformStore(bare_database.migrator).migrate(grant_to=APP_ROLE)
    with psycopg.connect(bare_database.migrator) as conn:  # what a newer release's migration leaves
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'from_a_newer_release')", (latest + 1,))
    expected = f"the database schema is at version {latest + 1}, newer than this release's latest migration {latest}"
    with caplog.at_level(logging.WARNING, logger="codexk8s_pipelines.store.migrations"):
        assert PlatformStore(bare_database.app).migrate() == []
    assert any(expected in r.getMessage() and "Upgrades and rollbacks" in r.getMessage() for r in caplog.records)

    with pytest.MonkeyPatch.context() as env:
        env.setenv("CODEXK8S_DATABASE_URL", bare_database.migrator)
        assert main(["db", "migrate"]) == 0  # a warning: a downgrade the operator chose is not refused
    assert f"codexk8s db migrate: warning: {expected}" in capsys.readouterr().err

    with psycopg.connect(bare_database.app) as conn:
        check = _check_migrations(conn, "fix")
    assert check.message.startswith(expected)


def test_db_migrate_waits_for_the_database_then_says_it_did_not_come(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from codexk8s_pipelines.cli import main
    from tests.helpers import free_port

    monkeypatch.setenv("CODEXK8S_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    started = time.monotonic()
    assert main(["db", "migrate", "--wait", "3"]) == 1
    assert 2 <= time.monotonic() - started < 15
    assert "did not accept connections within 3 s" in capsys.readouterr().err
