"""A server with no free connection slot turns a connection away for a moment: the store waits for one.

Every store call opens its own short connection. At max_connections one refusal ("sorry, too many clients already",
"remaining connection slots are reserved ...") failed the call, and the end of a stage run whose agent had already
pushed and spent failed with it: its usage was never recorded, and the run's failure gave its budget hold back
(sensors/run_status.py), so the money left the budgets. Only a refusal for want of a slot (or of a server still
starting) is waited for, and only the opening of a connection: a wrong password fails at once, and a statement that
failed is never run again."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from codexk8s_pipelines.domain.spend import Budgets, Cost, CostSource, Limit, Scope, TokenCounts
from codexk8s_pipelines.knowledge import db as knowledge_db
from codexk8s_pipelines.store import DatabaseUrls, EmbeddedPostgres, PlatformStore
from codexk8s_pipelines.store import database as store_database
from codexk8s_pipelines.store.embedded import url_for
from codexk8s_pipelines.store.usage import UsageRecord, record_usage, release_reservation, reserve, run_usage, spent

REPO = "acme/shop"
KEY = f"{REPO}#7:run:dev:4242"
HELD_SECONDS = 2.0  # how long the slots stay taken before a thread gives them back
STORE_LOG = "codexk8s_pipelines.store.database"


def _take_slots(url: str, held: list[psycopg.Connection[Any]]) -> str:
    """Open connections as `url`'s role until the server turns one away; its words."""
    while True:
        try:
            held.append(psycopg.connect(url, autocommit=True))
        except psycopg.OperationalError as exc:
            return str(exc)
        if len(held) > 10_000:
            raise AssertionError("the server never ran out of connection slots")


@contextmanager
def _no_free_slot(server_url: str, app_url: str, *, reserved_too: bool) -> Iterator[None]:
    """Every slot the application role may take held by this test (and, `reserved_too`, the superuser's reserved
    ones as well: the server is at max_connections), given back by a thread after HELD_SECONDS."""
    held: list[psycopg.Connection[Any]] = []
    release = threading.Timer(HELD_SECONDS, lambda: [c.close() for c in list(held)])
    try:
        refusal = _take_slots(app_url, held)
        assert "remaining connection slots are reserved" in refusal
        if reserved_too:
            refusal = _take_slots(server_url, held)
            assert "sorry, too many clients already" in refusal
        release.start()
        yield
    finally:
        release.cancel()
        for conn in held:
            conn.close()


def _waits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == STORE_LOG and "turned the connection away" in r.message]


@pytest.mark.parametrize("reserved_too", [False, True], ids=["reserved-slots-left", "max-connections"])
def test_a_run_whose_agent_finished_records_its_usage_once_a_slot_is_free(
    pg_server: EmbeddedPostgres, store: PlatformStore, caplog: pytest.LogCaptureFixture, reserved_too: bool
) -> None:
    budgets = Budgets(per_run=Limit(cost=Decimal(5)), per_issue=Limit(cost=Decimal(50)))
    assert reserve(store, budgets, KEY, REPO, 7, "codex") == []  # the sensor's launch held the run's budget
    usage = UsageRecord(
        KEY, REPO, "codex", TokenCounts(900_000, 0, 50_000), Cost(Decimal("4.20"), "USD", CostSource.PRICE_TABLE),
        issue_number=7, stage="dev", dagster_run_id="r1",
    )  # fmt: skip
    assert pg_server.url is not None
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    with _no_free_slot(pg_server.url, store.url, reserved_too=reserved_too):
        started = time.monotonic()
        # the end of the stage run (delivery/stage_jobs.py): its audit row, then its usage (record_run)
        store.append_event(KEY, "run.agent.finished", "system", "dagster", {"pushed": True})
        record_usage(store, usage)
        waited = time.monotonic() - started
    assert waited >= HELD_SECONDS - 0.5, f"the store was admitted at once ({waited:.2f} s): the slots were not taken"
    assert waited < HELD_SECONDS + 10
    slots = ("remaining connection slots are reserved", "sorry, too many clients already")
    assert _waits(caplog) and all(any(f"({words})" in w for words in slots) for w in _waits(caplog)), _waits(caplog)
    assert store.has_event(KEY, "run.agent.finished")
    recorded = run_usage(store, KEY)
    assert recorded is not None and recorded["cost"] == Decimal("4.20")
    assert release_reservation(store, KEY) is False  # the usage released the hold; the money stays in the budgets
    assert spent(store, REPO, 7, "codex", datetime.now(UTC))[Scope.ISSUE].cost == Decimal("4.20")


def _limit_connections(server_url: str, database: str, limit: int) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(sql.Identifier(database), limit))


ENTRY_POINTS: dict[str, Callable[[DatabaseUrls], object]] = {
    "store.connect": lambda urls: PlatformStore(urls.app).get_run(KEY),
    "store.migrate": lambda urls: PlatformStore(urls.migrator).migrate(),
    "store.schema_version": lambda urls: PlatformStore(urls.migrator).schema_version(),
    "knowledge.connect": lambda urls: knowledge_db.connect(urls.app).close(),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_connection_of_the_store_waits_while_the_server_turns_it_away(
    pg_server: EmbeddedPostgres, platform_database: DatabaseUrls, caplog: pytest.LogCaptureFixture, entry: str
) -> None:
    """The database's own CONNECTION LIMIT, reached, is the same refusal (53300) as max_connections, for one
    database: each way the platform opens a connection to it waits until the limit is lifted."""
    assert pg_server.url is not None
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    _limit_connections(pg_server.url, platform_database.name, 0)
    lift = threading.Timer(1.0, _limit_connections, (pg_server.url, platform_database.name, -1))
    lift.start()
    try:
        started = time.monotonic()
        ENTRY_POINTS[entry](platform_database)
        waited = time.monotonic() - started
    finally:
        lift.join()
    assert waited >= 0.5
    assert _waits(caplog) and all("too many connections for database" in w for w in _waits(caplog))


@contextmanager
def _password_checked(server_url: str, role: str) -> Iterator[None]:
    """`role` logs in with a password checked (scram-sha-256) on the server's socket: one line of pg_hba.conf, for
    that role only, ahead of the embedded server's `trust`; taken out again after."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute("SHOW hba_file").fetchone()
        assert row is not None
        hba = Path(row[0])
        original = hba.read_text()
        hba.write_text(f"local all {role} scram-sha-256\n{original}")  # in place: the file keeps its owner
        try:
            conn.execute("SELECT pg_reload_conf()")
            yield
        finally:
            hba.write_text(original)
            conn.execute("SELECT pg_reload_conf()")


def _fails_at_once(url: str, caplog: pytest.LogCaptureFixture) -> str:
    caplog.clear()
    started = time.monotonic()
    with pytest.raises(psycopg.Error) as failed, PlatformStore(url).connect():
        pass
    assert time.monotonic() - started < 1.0
    assert _waits(caplog) == []
    return str(failed.value)


def test_a_wrong_password_an_unknown_role_or_database_and_a_bad_url_fail_at_once(
    pg_server: EmbeddedPostgres, platform_database: DatabaseUrls, caplog: pytest.LogCaptureFixture
) -> None:
    assert pg_server.url is not None
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    role = f"codexk8s_pw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right'").format(sql.Identifier(role)))
    try:
        with _password_checked(pg_server.url, role):
            wrong = url_for(pg_server.url, user=role).replace(f"{role}:@", f"{role}:wrong@")
            deadline = time.monotonic() + 10  # the reload reaches new connections within moments
            while True:
                try:
                    psycopg.connect(wrong).close()
                except psycopg.OperationalError as exc:
                    if "password authentication failed" in str(exc):
                        break
                assert time.monotonic() < deadline, "pg_hba.conf was not reloaded"
                time.sleep(0.05)
            assert "password authentication failed" in _fails_at_once(wrong, caplog)
            with PlatformStore(wrong.replace(":wrong@", ":right@")).connect() as conn:  # the right one logs in
                assert conn.execute("SELECT current_user AS who").fetchone() == {"who": role}
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    assert 'role "nobody_here" does not exist' in _fails_at_once(
        platform_database.app.replace("codexk8s_app:@", "nobody_here:@"), caplog
    )
    assert "does not exist" in _fails_at_once(url_for(platform_database.app, database="no_such_database"), caplog)
    assert "bogus" in _fails_at_once(platform_database.app + "&bogus=1", caplog)


def _refusing(monkeypatch: pytest.MonkeyPatch, words: str, times: int) -> list[str]:
    """psycopg's connect turns the first `times` connections away with the server's `words`; the attempts made."""
    real = psycopg.Connection.connect.__func__
    attempts: list[str] = []

    def connect(cls: type[psycopg.Connection[Any]], *args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        attempts.append(words)
        if len(attempts) <= times:
            raise psycopg.OperationalError(f"connection failed: connection to server failed: FATAL:  {words}")
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(connect))
    return attempts


@pytest.mark.parametrize("words", ["the database system is starting up", "sorry, too many clients already"])
def test_a_server_still_starting_is_waited_for_as_one_without_a_slot(
    store: PlatformStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, words: str
) -> None:
    assert words in store_database.REFUSED_FOR_NOW
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    attempts = _refusing(monkeypatch, words, 2)
    assert store.get_run(KEY) is None
    assert len(attempts) == 3 and len(_waits(caplog)) == 2 and words in _waits(caplog)[0]


def test_a_statement_that_fails_is_not_run_again(store: PlatformStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only opening is tried again: a failure once the caller holds its connection is the caller's, whatever it
    says (a statement may have done its work before the failure)."""
    attempts = _refusing(monkeypatch, "sorry, too many clients already", 0)
    ran: list[str] = []
    with pytest.raises(psycopg.OperationalError), store.connect() as conn:
        ran.append("statement")
        conn.execute("SELECT 1")
        raise psycopg.OperationalError("FATAL:  sorry, too many clients already")
    assert ran == ["statement"] and len(attempts) == 1


def test_the_wait_ends_after_its_time(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A server that stays full fails the call after `seconds`, with the server's words."""
    caplog.set_level(logging.WARNING, logger=STORE_LOG)

    def refused() -> None:
        raise psycopg.OperationalError("connection failed: FATAL:  remaining connection slots are reserved for roles")

    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="remaining connection slots are reserved"):
        store_database.connect_when_admitted(refused, seconds=1.0)
    assert 0.9 <= time.monotonic() - started < 2.0 and len(_waits(caplog)) >= 2
