"""The platform store against the embedded PostgreSQL: migrations, runs, the append-only audit, approvals."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from codexk8s_pipelines.store import DatabaseUrls, PlatformStore
from codexk8s_pipelines.store.database import RunRecord, StoreError
from codexk8s_pipelines.store.migrations import available_migrations
from tests.helpers import undo_migration_21

KEY = "acme/shop#7:run:dev:9001"


def _run(key: str = KEY, **kw: object) -> RunRecord:
    fields: dict[str, object] = {"repository": "acme/shop", "role": "dev", "stage": "dev", "issue_number": 7}
    fields.update(kw)
    return RunRecord(correlation_key=key, **fields)  # type: ignore[arg-type]


def test_migrations_apply_once_and_are_idempotent(bare_database: DatabaseUrls) -> None:
    store = PlatformStore(bare_database.migrator)
    assert store.schema_version() == 0
    latest = max(m.version for m in available_migrations())
    assert store.migrate() == [m.version for m in available_migrations()]
    assert store.migrate() == []
    assert store.schema_version() == latest
    with psycopg.connect(bare_database.migrator) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "flow_events", "approvals", "schema_migrations"} <= tables


def test_concurrent_starters_apply_each_migration_once(bare_database: DatabaseUrls) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            results.append(PlatformStore(bare_database.migrator).migrate())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results, key=len) == [[], [], [], [m.version for m in available_migrations()]]


def test_one_correlation_key_one_run(store: PlatformStore) -> None:
    assert store.register_run(_run()) is True
    assert store.register_run(_run(stage="qa")) is False
    row = store.get_run(KEY)
    assert row is not None and row["stage"] == "dev" and row["status"] == "requested"
    with store.connect() as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO runs (correlation_key, repository, issue_number, role) VALUES (%s, 'x/y', 1, 'dev')", (KEY,)
        )


def test_run_needs_an_issue_or_a_pull_request(store: PlatformStore) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        store.register_run(_run(issue_number=None, pr_number=None))


def test_run_status_timestamps_and_errors(store: PlatformStore) -> None:
    store.register_run(_run())
    store.set_run_status(KEY, "running", dagster_run_id="abc-123")
    row = store.get_run(KEY)
    assert row is not None
    assert row["started_at"] is not None and row["finished_at"] is None and row["dagster_run_id"] == "abc-123"
    store.set_run_status(KEY, "succeeded")
    row = store.get_run(KEY)
    assert row is not None and row["finished_at"] is not None and row["dagster_run_id"] == "abc-123"
    with pytest.raises(StoreError, match="unknown run status 'done'"):
        store.set_run_status(KEY, "done")
    with pytest.raises(StoreError, match="no run with correlation key"):
        store.set_run_status("acme/shop#8:run:dev:1", "running")


def test_run_history_for_revise_and_dev_precondition(store: PlatformStore) -> None:
    store.register_run(_run("acme/shop#7:run:plan:1", stage="plan", role="em"))
    store.register_run(_run("acme/shop#7:run:dev:2", stage="dev"))
    store.register_run(_run("acme/shop#9:run:qa:3", stage="qa", role="qa", issue_number=9, pr_number=12))
    assert store.has_stage_run("acme/shop", 7, "dev") is True
    assert store.has_stage_run("acme/shop", 9, "dev") is False
    assert store.has_stage_run("acme/shop", 7, "dev", statuses=("succeeded",)) is False
    assert store.recent_stages("acme/shop", issue_number=7) == ["dev", "plan"]
    assert store.recent_stages("acme/shop", pr_number=12) == ["qa"]
    assert store.recent_stages("other/repo", issue_number=7) == []


def test_a_discussions_run_does_not_count_as_work_done(store: PlatformStore) -> None:
    store.register_run(_run("acme/shop#7:run:dev:1", discussion=True))
    store.set_run_status("acme/shop#7:run:dev:1", "succeeded")
    assert store.has_stage_run("acme/shop", 7, "dev", ("succeeded",)) is True
    assert store.has_stage_run("acme/shop", 7, "dev", ("succeeded",), writing_only=True) is False
    store.register_run(_run("acme/shop#7:run:dev:2"))
    store.set_run_status("acme/shop#7:run:dev:2", "succeeded")
    assert store.has_stage_run("acme/shop", 7, "dev", ("succeeded",), writing_only=True) is True


def test_runs_recorded_before_the_mode_column_take_it_from_their_decision(bare_database: DatabaseUrls) -> None:
    """An upgrade: runs registered by a version without `runs.discussion` get it from their `run.requested`."""
    store = PlatformStore(bare_database.migrator)
    store.migrate()
    with psycopg.connect(bare_database.migrator) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN discussion")
        conn.execute("DELETE FROM schema_migrations WHERE version = 19")
        # and 0020 (which follows): the latest version applied is what `migrate` starts from
        conn.execute("ALTER TABLE run_usage DROP CONSTRAINT run_usage_correlation_key_attempt_key")
        conn.execute("ALTER TABLE run_usage DROP COLUMN dagster_run_id")
        conn.execute("ALTER TABLE run_usage ADD CONSTRAINT run_usage_correlation_key_key UNIQUE (correlation_key)")
        conn.execute("DELETE FROM schema_migrations WHERE version = 20")
        undo_migration_21(conn)  # and 0021, for the same reason
        for key in ("acme/shop#7:run:dev:1", "acme/shop#7:run:dev:2"):
            conn.execute(
                "INSERT INTO runs (correlation_key, repository, issue_number, stage, role, status)"
                " VALUES (%s, 'acme/shop', 7, 'dev', 'dev', 'succeeded')",
                (key,),
            )
        conn.execute(
            "INSERT INTO runs (correlation_key, repository, issue_number, stage, role, status)"
            " VALUES ('acme/shop#7:manual', 'acme/shop', 7, 'dev', 'dev', 'succeeded')"
        )
    store.append_event("acme/shop#7:run:dev:1", "run.requested", "system", "sensor", {"discussion": True})
    store.append_event("acme/shop#7:run:dev:2", "run.requested", "system", "sensor", {"discussion": False})
    assert store.migrate() == [19, 20, 21]
    modes = {key: store.get_run(key)["discussion"] for key in  # type: ignore[index]
             ("acme/shop#7:run:dev:1", "acme/shop#7:run:dev:2", "acme/shop#7:manual")}  # fmt: skip
    assert modes == {"acme/shop#7:run:dev:1": True, "acme/shop#7:run:dev:2": False, "acme/shop#7:manual": False}


def test_flow_events_are_append_only_in_the_database(store: PlatformStore, migrator_database_url: str) -> None:
    """The triggers refuse even the table's owner (the application role is refused earlier: test_roles.py)."""
    first = store.append_event(KEY, "run.requested", "system", "sensor", {"stage": "dev"})
    store.append_event(KEY, "run.started", "system", "dagster", {})
    owner = PlatformStore(migrator_database_url)
    for statement in (
        "UPDATE flow_events SET event_type = 'forged'",
        "DELETE FROM flow_events",
        "TRUNCATE flow_events",
    ):
        with owner.connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
    events = store.events(KEY)
    assert [e["event_type"] for e in events] == ["run.requested", "run.started"]
    assert events[0]["id"] == first and events[0]["payload"] == {"stage": "dev"}
    assert events[0]["created_at"] <= events[1]["created_at"]


def test_audit_payloads_never_store_secrets(store: PlatformStore) -> None:
    token = "ghp_" + "A1b2C3d4" * 5
    store.append_event(
        KEY,
        "run.requested",
        "human",
        "alice",
        {"github_token": token, "note": f"used {token}", "url": "postgresql://app:hunter2@db/x", "stage": "dev"},
    )
    payload = store.events(KEY)[0]["payload"]
    assert token not in str(payload) and "hunter2" not in str(payload)
    assert payload["stage"] == "dev" and payload["github_token"] == "[redacted]"


def test_audit_rejects_unknown_actor_type(store: PlatformStore) -> None:
    with pytest.raises(StoreError, match="unknown actor type 'robot'"):
        store.append_event(KEY, "x", "robot", "r2d2")


def test_approval_lifecycle(store: PlatformStore) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    args = ("acme/shop", 7, "release", False, "run:release", "alice", timedelta(hours=24), now)
    assert store.request_approval(KEY, *args) is True
    assert store.request_approval(KEY, *args) is False
    assert store.open_approval_for_issue("acme/shop", 7)["correlation_key"] == KEY  # type: ignore[index]
    with pytest.raises(StoreError, match="is requested; it cannot become applied"):
        store.transition_approval(KEY, "applied", now)
    approved = store.transition_approval(KEY, "approved", now + timedelta(hours=1), approver="bob")
    assert approved["status"] == "approved" and approved["approver"] == "bob" and approved["decided_at"] is not None
    with pytest.raises(StoreError, match="is approved; it cannot become denied"):
        store.transition_approval(KEY, "denied", now)
    applied = store.transition_approval(KEY, "applied", now + timedelta(hours=2))
    assert applied["status"] == "applied" and applied["applied_at"] is not None
    assert store.open_approval_for_issue("acme/shop", 7) is None
    with pytest.raises(StoreError, match="cannot move to 'requested'"):
        store.transition_approval(KEY, "requested", now)


def test_expired_approvals(store: PlatformStore) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    store.request_approval(
        "a/b#1:run:release:1", "a/b", 1, "release", False, "run:release", "al", timedelta(hours=1), now
    )
    store.request_approval(
        "a/b#2:run:release:2", "a/b", 2, "release", False, "run:release", "al", timedelta(hours=5), now
    )
    assert store.expire_approvals(now + timedelta(hours=2)) == ["a/b#1:run:release:1"]
    assert store.expire_approvals(now + timedelta(hours=2)) == []
    assert store.get_approval("a/b#1:run:release:1")["status"] == "expired"  # type: ignore[index]
    assert store.get_approval("a/b#2:run:release:2")["status"] == "requested"  # type: ignore[index]


def test_store_requires_a_url() -> None:
    with pytest.raises(StoreError, match="CODEXK8S_DATABASE_URL"):
        PlatformStore("")
