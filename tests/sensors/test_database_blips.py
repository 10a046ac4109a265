"""The platform database failing for a moment while an item is decided ("too many clients", a failover, a restart).

It was taken for a permanent fault of the item: `intake.item_failed`, the item passed, its trigger never ran, and
`run.requested` was already audited for a run the runs table did not have. Now the item stays undecided (its
webhook delivery pending, the cursor short of it) and the next tick starts its run, audited once."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
import pytest

from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.intake import DeliveryRecord, delivery_status, store_delivery
from sensors.github import github_issue_labels_sensor as issue_sensor

from .conftest import REPO, Intake

RUN_WRITERS = ("register_run", "request_run")  # the store's ways of recording a requested run, before and now


class _FailingConnection:
    """A connection whose first statement containing `sql` fails the way a dropped connection does."""

    def __init__(self, conn: psycopg.Connection[Any], sql: str, failed: list[str]) -> None:
        self._conn, self._sql, self._failed = conn, sql, failed

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._failed and self._sql in str(query):
            self._failed.append(str(query))
            raise psycopg.OperationalError("terminating connection due to administrator command")
        return self._conn.execute(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _fail_once(monkeypatch: pytest.MonkeyPatch, where: str) -> list[str]:
    """Make the database fail once while a requested run is recorded: refusing the connection ("connect") or
    dropping it at the run's INSERT ("insert")."""
    real = PlatformStore.connect
    failed: list[str] = []

    def connect(self: PlatformStore) -> AbstractContextManager[Any]:
        if where == "connect" and not failed and any(f.name in RUN_WRITERS for f in traceback.extract_stack()):
            failed.append("connect")
            raise psycopg.OperationalError("connection failed: FATAL:  sorry, too many clients already")
        if where != "insert":
            return real(self)

        @contextmanager
        def failing() -> Iterator[Any]:
            with real(self) as conn:
                yield _FailingConnection(conn, "INSERT INTO runs", failed)

        return failing()

    monkeypatch.setattr(PlatformStore, "connect", connect)
    return failed


def _item_failures(intake: Intake) -> list[str]:
    with intake.store.connect() as conn:
        rows = conn.execute("SELECT correlation_key FROM flow_events WHERE event_type = 'intake.item_failed'")
        return [r["correlation_key"] for r in rows.fetchall()]


@pytest.mark.parametrize("where", ["connect", "insert"])
def test_a_label_decided_during_a_database_blip_starts_exactly_one_run_next_tick(
    intake: Intake, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    intake.tick(issue_sensor)  # the first look
    event = intake.state.label(REPO, number, "run:dev", actor="alice")
    store_delivery(intake.store, DeliveryRecord("d-blip", "issues", "labeled", REPO, number, "issue_labels"))
    key = f"{REPO}#{number}:run:dev:{event}"
    failed = _fail_once(monkeypatch, where)
    first = intake.tick(issue_sensor)
    after_blip = (intake.events(key), intake.store.get_run(key), delivery_status(intake.store, "d-blip"))
    second = intake.tick(issue_sensor)
    assert failed
    assert [r.run_key for r in [*first.run_requests, *second.run_requests]] == [key]  # the run starts, once
    assert f"{REPO}#{number}: OperationalError; retried next tick" in (first.skip_message or "")
    # Right after the blip the audit and the runs table agreed (no run.requested for a run not recorded), and the
    # delivery was still pending.
    events, run, delivery = after_blip
    assert "run.requested" not in events and run is None
    assert delivery is not None and delivery["status"] == "pending"
    assert _item_failures(intake) == []  # not a fault of the item
    assert intake.events(key).count("run.requested") == 1
    assert intake.store.get_run(key)["status"] == "requested"  # type: ignore[index]
    assert delivery_status(intake.store, "d-blip")["status"] == "drained"  # type: ignore[index]
    assert intake.tick(issue_sensor).run_requests == []


def test_a_run_and_its_audit_row_are_written_together(intake: Intake) -> None:
    from codexk8s_pipelines.store.database import EventRecord, RunRecord

    run = RunRecord(correlation_key="acme/shop#7:run:dev:1", repository=REPO, role="dev", stage="dev", issue_number=7)
    audit = EventRecord(run.correlation_key, "run.requested", "human", "alice", {"event_id": "1"})
    assert intake.store.request_run(run, audit) is True
    assert intake.store.request_run(run, audit) is False  # a tick redone: the same run, audited once
    assert intake.events(run.correlation_key) == ["run.requested"]


@pytest.mark.parametrize("how", ["budget", "override"])
def test_a_held_run_released_during_a_database_blip_still_starts_once(
    intake: Intake, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The hold is released in one transaction and the run recorded in the next: the database failing in between
    left a released hold and no run, which no later tick requested (the hold was no longer open, the override
    "already released")."""
    from tests.sensors.test_budget_gate import _configure, _held

    number, key = _held(intake)
    if how == "budget":
        _configure(issue_cost=6)  # room now
    else:
        intake.state.label(REPO, number, "budget:override", actor="bob")  # bob maintains: an approver
    failed = _fail_once(monkeypatch, "insert")
    started: list[str] = []
    for _ in range(3):
        started += [r.run_key for r in intake.tick(issue_sensor).run_requests]  # no tick fails
    assert failed and started == [key]
    assert intake.events(key).count("run.requested") == 1
    assert intake.store.get_run(key) is not None
