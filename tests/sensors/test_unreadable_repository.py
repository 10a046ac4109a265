"""One watched repository that cannot be read (access lost: 404; a long outage: 5xx) must not hold up the others.

Its webhook deliveries stayed pending for good and the inbox read the oldest 500 pending: once 500 had piled up no
other repository's delivery was read again, so every label waited for the polling interval. And it was asked on
every tick (3 s) by both sensors, however long it had failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.config import loader
from codexk8s_pipelines.store.intake import DeliveryRecord, delivery_status, read_inbox, store_delivery
from sensors.github import POLL_SECONDS_VAR, RECONCILE_SECONDS_VAR
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.intake import now_utc

from .conftest import REPO, Intake

LOST = "acme/lost"
CONFIG = """
repositories:
  - github: acme/shop
  - github: acme/lost
triggers:
  min_permission: write
"""


@pytest.fixture
def two(intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Intake:
    """acme/shop and acme/lost watched; polling far away, so what starts comes by webhook."""
    path = tmp_path / "two.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("CODEXK8S_CONFIG", str(path))
    monkeypatch.setenv(POLL_SECONDS_VAR, "3600")
    monkeypatch.setenv(RECONCILE_SECONDS_VAR, "3600")
    loader.load_config_from_environment.cache_clear()
    return intake


def _pile_up(intake: Intake, count: int) -> None:
    """`count` pending deliveries of acme/lost, as the receiver stores them (`lost-0` the oldest)."""
    with intake.store.connect() as conn:
        conn.execute(
            "INSERT INTO webhook_deliveries (delivery_id, event, action, repository, item_number, intake)"
            " SELECT 'lost-' || i, 'issues', 'labeled', %s, i + 1, 'issue_labels' FROM generate_series(0, %s) AS i",
            (LOST, count - 1),
        )


def _lost_requests(intake: Intake) -> list[str]:
    return [path for _, path, _ in intake.state.requests if f"/repos/{LOST}/" in path or path.endswith(LOST)]


def _shop_label(intake: Intake, number: int, delivery: str) -> str:
    event = intake.state.label(REPO, number, "run:dev", actor="alice")
    store_delivery(intake.store, DeliveryRecord(delivery, "issues", "labeled", REPO, number, "issue_labels"))
    return f"{REPO}#{number}:run:dev:{event}"


def test_a_repository_in_an_outage_neither_starves_the_others_webhooks_nor_is_asked_every_tick(two: Intake) -> None:
    state = two.state
    state.add_repo(LOST, collaborators={"alice": "write"})
    number, other = state.add_issue(REPO, "Checkout fails"), state.add_issue(REPO, "Search is slow")
    two.tick(issue_sensor)  # both repositories take their first look
    state.inject("502", method=None, path_regex=f"^/repos/{LOST}/", times=None)  # acme/lost's API is down
    _pile_up(two, 600)
    key = _shop_label(two, number, "shop-1")
    (request,) = two.tick(issue_sensor).run_requests  # the very next tick
    assert request.run_key == key
    assert delivery_status(two.store, "shop-1")["status"] == "drained"  # type: ignore[index]
    data = two.tick(issue_sensor)  # failed twice in a row: backing off
    assert "backing off for 30 s" in (data.skip_message or "")
    state.clear_requests()
    key = _shop_label(two, other, "shop-2")
    keys: list[str] = []
    for _ in range(10):  # 30 s of a sensor's ticks
        data = two.tick(issue_sensor)
        keys += [r.run_key for r in data.run_requests]
        assert f"{LOST}: " in (data.skip_message or "") or data.run_requests
    assert keys == [key]
    assert _lost_requests(two) == []
    assert delivery_status(two.store, "lost-599")["status"] == "pending"  # type: ignore[index]  # kept for later


def test_a_repository_the_platform_cannot_read_has_its_deliveries_set_aside_once_and_audited(two: Intake) -> None:
    """acme/lost answers 404 (the token lost access to it): its 600 deliveries are set aside as ignored, with the
    reason, in one audit row; acme/shop's label starts its run in the same tick; acme/lost is not asked again for
    a while."""
    number = two.state.add_issue(REPO, "Checkout fails")
    _pile_up(two, 600)
    data = two.tick(issue_sensor)  # acme/shop takes its first look; acme/lost answers 404
    assert "600 of its webhook deliveries set aside as ignored" in (data.skip_message or "")
    key = _shop_label(two, number, "shop-1")
    assert [r.run_key for r in two.tick(issue_sensor).run_requests] == [key]
    ignored = delivery_status(two.store, "lost-0")
    assert ignored is not None and ignored["status"] == "ignored" and "404" in ignored["reason"]
    assert ignored["payload"] is None  # set aside for good: GitHub's body is not kept
    two.state.clear_requests()
    for _ in range(10):
        two.tick(issue_sensor)
    assert _lost_requests(two) == []  # backing off
    with two.store.connect() as conn:
        rows = conn.execute(
            "SELECT correlation_key, payload FROM flow_events WHERE event_type = 'webhook.deliveries_ignored'"
        ).fetchall()
    assert [(r["correlation_key"], r["payload"]["count"]) for r in rows] == [(f"{LOST}:intake:issue_labels", 600)]
    assert "404" in rows[0]["payload"]["reason"]


def test_the_inbox_reads_every_repositorys_deliveries(intake: Intake) -> None:
    _pile_up(intake, 600)
    store_delivery(intake.store, DeliveryRecord("shop-1", "issues", "labeled", REPO, 1, "issue_labels"))
    inbox = read_inbox(intake.store, "issue_labels", now_utc())
    assert [d.delivery_id for d in inbox.pending if d.repository == REPO] == ["shop-1"]
    lost = [d.delivery_id for d in inbox.pending if d.repository == LOST]
    assert 0 < len(lost) <= 100 and lost[0] == "lost-0"  # oldest first, a bounded share


DOWN = [f"acme/down{i}" for i in range(5)]


@pytest.fixture
def six(intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Intake:
    """acme/shop and five more watched; polling far away, so what starts comes by webhook."""
    path = tmp_path / "six.yaml"
    path.write_text("repositories:\n" + "".join(f"  - github: {r}\n" for r in [REPO, *DOWN]))
    monkeypatch.setenv("CODEXK8S_CONFIG", str(path))
    monkeypatch.setenv(POLL_SECONDS_VAR, "3600")
    monkeypatch.setenv(RECONCILE_SECONDS_VAR, "3600")
    loader.load_config_from_environment.cache_clear()
    for name in DOWN:
        intake.state.add_repo(name, collaborators={"alice": "write"})
    return intake


def _backlog(intake: Intake, repository: str, count: int) -> None:
    """`count` pending deliveries of `repository` over its issues 1-5, as the receiver stores them."""
    with intake.store.connect() as conn:
        conn.execute(
            "INSERT INTO webhook_deliveries (delivery_id, event, action, repository, item_number, intake)"
            " SELECT %s || '-' || i, 'issues', 'labeled', %s, 1 + i %% 5, 'issue_labels' FROM generate_series(0, %s) i",
            (repository, repository, count - 1),
        )


def test_five_repositories_in_an_outage_with_a_backlog_each_do_not_hold_up_a_sixths_label(six: Intake) -> None:
    """Five repositories down (5xx) with 150 pending deliveries each filled the inbox's 500 every tick: alice's
    run:dev on acme/shop waited for polling (300 s with healthy webhooks) instead of the next tick (3 s)."""
    state = six.state
    number, other = state.add_issue(REPO, "Checkout fails"), state.add_issue(REPO, "Search is slow")
    six.tick(issue_sensor)  # every repository takes its first look
    state.inject("502", method=None, path_regex=r"^/repos/acme/down\d/", times=None)
    for name in DOWN:
        _backlog(six, name, 150)
    key = _shop_label(six, number, "shop-1")
    assert [r.run_key for r in six.tick(issue_sensor).run_requests] == [key]  # the very next tick
    assert delivery_status(six.store, "shop-1")["status"] == "drained"  # type: ignore[index]
    six.tick(issue_sensor)  # the five failed twice in a row: backing off
    state.clear_requests()
    key = _shop_label(six, other, "shop-2")
    assert [r.run_key for r in six.tick(issue_sensor).run_requests] == [key]
    assert [p for _, p, _ in state.requests if "/repos/acme/down" in p] == []  # backing off: not asked
    assert delivery_status(six.store, "acme/down4-149")["status"] == "pending"  # type: ignore[index]  # kept


def test_the_inbox_reads_every_repositorys_oldest_delivery_first_and_none_of_a_repository_backing_off(
    intake: Intake,
) -> None:
    for name in DOWN:
        _backlog(intake, name, 150)
    store_delivery(intake.store, DeliveryRecord("shop-1", "issues", "labeled", REPO, 1, "issue_labels"))
    inbox = read_inbox(intake.store, "issue_labels", now_utc())
    assert len(inbox.pending) == 500 and "shop-1" in [d.delivery_id for d in inbox.pending]
    assert [d.delivery_id for d in inbox.pending[:6]] == [f"{r}-0" for r in DOWN] + ["shop-1"]  # each one's oldest
    inbox = read_inbox(intake.store, "issue_labels", now_utc(), backing_off={"ACME/down0", "acme/down1"})
    assert {d.repository for d in inbox.pending} == {REPO, "acme/down2", "acme/down3", "acme/down4"}
