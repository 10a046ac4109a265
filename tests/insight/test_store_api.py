"""The audit trail's bulk writer: what an imported history (or the synthetic one of these tests) goes through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import EventRecord, StoreError

KEY = "acme/shop#1:run:dev:1"
AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_events_keep_their_time_and_are_redacted(store: PlatformStore) -> None:
    secret = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0" * 2
    store.append_event(KEY, "run.requested", "human", "alice", {"note": f"token {secret}"}, at=AT)
    written = store.append_events([EventRecord(KEY, "run.started", "system", "dagster", {"api_key": "x"}, AT)])
    assert written == 1
    rows = store.events(KEY)
    assert [r["created_at"] for r in rows] == [AT, AT]
    assert secret not in str(rows) and rows[1]["payload"] == {"api_key": "[redacted]"}


def test_a_bad_row_names_itself_and_nothing_is_written(store: PlatformStore) -> None:
    rows = [
        EventRecord(KEY, "run.requested", "human", "alice", {}, AT),
        EventRecord(KEY, "run.started", "robot", "dagster", {}, AT),
    ]
    with pytest.raises(StoreError, match=r"event 1 \(run.started of acme/shop#1:run:dev:1\): unknown actor type"):
        store.append_events(rows)
    assert store.events(KEY) == []
