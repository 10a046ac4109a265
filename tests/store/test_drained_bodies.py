"""A drained webhook delivery keeps no GitHub body. Nothing reads a drained delivery's body again (the inbox selects
its columns, the sensors read the item itself from GitHub), and a year's bodies were ~286 MB of a table that only
grew. A pending delivery keeps its body until it is drained, a rejected one for good (an operator reads it)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from codexk8s_pipelines.store import DatabaseUrls, PlatformStore
from codexk8s_pipelines.store.intake import DeliveryRecord, delivery_status, mark_drained, read_inbox, store_delivery
from tests.helpers import undo_migration_21

REPO = "acme/shop"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _body(number: int) -> dict[str, object]:
    return {"action": "labeled", "issue": {"number": number, "body": "x" * 5000}, "label": {"name": "run:dev"}}


def test_a_drained_delivery_keeps_no_body_and_a_pending_one_keeps_its(store: PlatformStore) -> None:
    for n in (1, 2):
        assert store_delivery(
            store, DeliveryRecord(f"d-{n}", "issues", "labeled", REPO, n, "issue_labels", payload=_body(n))
        )
    kept = {"raw": "not json"}
    rejected = DeliveryRecord("d-bad", "issues", None, None, None, None, "rejected", "body is not JSON", kept)
    assert store_delivery(store, rejected)
    pending = read_inbox(store, "issue_labels", NOW).pending
    assert [d.delivery_id for d in pending] == ["d-1", "d-2"]
    bad = delivery_status(store, "d-bad")
    assert bad is not None
    # the tick decided item 1; a rejected delivery is never pending, so it is not marked whatever the ids say
    assert mark_drained(store, [pending[0].id, bad["id"]], NOW) == 1

    drained, waiting, bad = (delivery_status(store, d) for d in ("d-1", "d-2", "d-bad"))
    assert drained is not None and drained["status"] == "drained" and drained["payload"] is None
    assert waiting is not None and waiting["status"] == "pending" and waiting["payload"] == _body(2)
    assert bad is not None and bad["status"] == "rejected" and bad["payload"] == kept
    assert [d.delivery_id for d in read_inbox(store, "issue_labels", NOW).pending] == ["d-2"]


def test_deliveries_drained_before_the_upgrade_drop_their_bodies(bare_database: DatabaseUrls) -> None:
    """An upgrade: the bodies a former release kept for drained deliveries are dropped by migration 0021."""
    store = PlatformStore(bare_database.migrator)
    store.migrate()
    with psycopg.connect(bare_database.migrator) as conn:
        undo_migration_21(conn)
        for n, status in ((1, "drained"), (2, "pending"), (3, "ignored")):
            conn.execute(
                "INSERT INTO webhook_deliveries (delivery_id, event, action, repository, item_number, intake, status,"
                " payload) VALUES (%s, 'issues', 'labeled', %s, %s, 'issue_labels', %s, %s)",
                (f"d-{n}", REPO, n, status, Jsonb(_body(n))),
            )
    assert store.migrate() == [21]
    bodies = {d: (delivery_status(store, d) or {}).get("payload") for d in ("d-1", "d-2", "d-3")}
    assert bodies == {"d-1": None, "d-2": _body(2), "d-3": _body(3)}
