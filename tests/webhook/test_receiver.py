"""The webhook receiver through a real HTTP client (requests, and the fake GitHub's own delivery worker): it
verifies signatures, stores each delivery once, refuses bad payloads with a clear 4xx and an audit row, and the
intake sensors drain what it stored with the same keys as polling."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from codexk8s_pipelines.store.intake import delivery_status
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.github import github_pull_requests_sensor as pr_sensor
from tests.github_server import sign
from tests.sensors.conftest import REPO, Intake

from .conftest import SECRET, Receiver, wait_for

CODEXK8S = Path(sys.executable).with_name("codexk8s")


def _post(
    url: str, event: str, body: bytes, *, secret: str | None = SECRET, delivery: str | None = None
) -> requests.Response:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event}
    headers["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return requests.post(url, data=body, headers=headers, timeout=10)


def _labeled(number: int = 1, label: str = "run:dev") -> bytes:
    return json.dumps(
        {
            "action": "labeled",
            "issue": {"number": number, "node_id": "I_1", "labels": [{"name": label}]},
            "label": {"name": label, "node_id": "LA_1"},
            "repository": {"full_name": REPO, "node_id": "R_1"},
            "sender": {"login": "alice", "type": "User", "node_id": "U_1"},
        }
    ).encode()


def _rejections(intake: Intake) -> list[dict]:
    with intake.store.connect() as conn:
        rows = conn.execute("SELECT payload FROM flow_events WHERE event_type = 'webhook.rejected' ORDER BY id")
        return [r["payload"] for r in rows.fetchall()]


def _delivered(intake: Intake, count: int = 1) -> None:
    """Wait until GitHub's worker has had an answer for its last `count` deliveries."""
    wait_for(lambda: len(intake.state.deliveries) >= count and all(
        d.status is not None for d in intake.state.deliveries), what="GitHub's deliveries")  # fmt: skip


def _webhooks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polling far away: what a tick decides now came by webhook."""
    monkeypatch.setenv("CODEXK8S_INTAKE_POLL_SECONDS", "3600")
    monkeypatch.setenv("CODEXK8S_INTAKE_RECONCILE_SECONDS", "3600")


def test_signatures_good_bad_and_none(intake: Intake, receiver: Receiver) -> None:
    good = _post(receiver.url, "issues", _labeled(), delivery="d-good")
    assert good.status_code == 202 and good.json()["stored"] == "pending"
    assert good.elapsed.total_seconds() < 10
    wrong = _post(receiver.url, "issues", _labeled(), secret="not-the-secret", delivery="d-wrong")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "signature does not match")
    unsigned = _post(receiver.url, "issues", _labeled(), secret=None, delivery="d-none")
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "no X-Hub-Signature-256")
    assert delivery_status(intake.store, "d-good")["status"] == "pending"  # type: ignore[index]
    assert delivery_status(intake.store, "d-wrong") is None and delivery_status(intake.store, "d-none") is None
    # Refusals without a valid signature are counted in memory, not audited (anyone can send them; see
    # test_refusals.py). This asserted one `webhook.rejected` row each before: the review's F1.
    assert _rejections(intake) == []


def test_a_redelivery_is_a_noop_that_still_answers_2xx(
    intake: Intake, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    intake.tick(issue_sensor)
    _webhooks_only(monkeypatch)
    intake.state.add_webhook(receiver.url, SECRET)
    intake.state.label(REPO, number, "run:dev", actor="alice")
    _delivered(intake)
    (delivery,) = intake.state.deliveries
    assert delivery.status == 202
    intake.state.redeliver(delivery.id)
    wait_for(lambda: delivery.status == 200, what="the redelivery")
    with intake.store.connect() as conn:
        assert conn.execute("SELECT count(*) AS n FROM webhook_deliveries").fetchone()["n"] == 1
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.job_name == "stage_dev"
    intake.state.redeliver(delivery.id)  # even after it was drained
    wait_for(lambda: delivery.status == 200, what="the second redelivery")
    assert intake.tick(issue_sensor).run_requests == []


@pytest.mark.parametrize(
    ("event", "body", "status", "reason"),
    [
        ("issues", b"{not json", 400, "body is not JSON"),
        ("push", b'{"ref": "refs/heads/main"}', 400, "event 'push' is not taken"),
        ("issues", json.dumps({"action": "labeled", "repository": {"full_name": REPO}}).encode(), 422,
         "field 'issue' is missing"),
        ("pull_request_review", json.dumps({"action": "submitted", "repository": {"full_name": REPO},
         "pull_request": {"number": 3}}).encode(), 422, "field 'review' is missing"),
    ],
)  # fmt: skip
def test_bad_payloads_get_a_clear_4xx_an_audit_row_and_are_kept(
    intake: Intake, receiver: Receiver, event: str, body: bytes, status: int, reason: str
) -> None:
    answer = _post(receiver.url, event, body, delivery="d-bad")
    assert answer.status_code == status and reason in answer.json()["error"]
    (audit,) = _rejections(intake)
    assert audit["status"] == status and reason in audit["reason"] and audit["delivery"] == "d-bad"
    kept = delivery_status(intake.store, "d-bad")
    assert kept is not None and kept["status"] == "rejected" and kept["payload"]["raw"] == body.decode()


def test_oversized_bodies_and_missing_delivery_ids_are_refused(intake: Intake, receiver: Receiver) -> None:
    big = _post(receiver.url, "issues", b"{" + b" " * (128 * 1024) + b"}", delivery="d-big")
    assert big.status_code == 413 and "larger than" in big.json()["error"]
    body = _labeled()
    nameless = requests.post(
        receiver.url, data=body, timeout=10,
        headers={"X-GitHub-Event": "issues", "X-Hub-Signature-256": sign(SECRET, body)},
    )  # fmt: skip
    assert nameless.status_code == 400 and "X-GitHub-Delivery" in nameless.json()["error"]
    assert [r["status"] for r in _rejections(intake)] == [400]  # the 413 came before any signature: not audited


def test_an_action_not_taken_is_kept_as_ignored_and_a_ping_answers(intake: Intake, receiver: Receiver) -> None:
    closed = json.dumps({"action": "closed", "issue": {"number": 1}, "repository": {"full_name": REPO}}).encode()
    answer = _post(receiver.url, "issues", closed, delivery="d-closed")
    assert answer.status_code == 202 and answer.json()["stored"] == "ignored"
    kept = delivery_status(intake.store, "d-closed")  # nothing reads it again: GitHub's body is not kept
    assert kept is not None and kept["status"] == "ignored" and kept["payload"] is None
    ping = _post(receiver.url, "ping", json.dumps({"zen": "Keep it simple.", "hook_id": 1}).encode())
    assert ping.status_code == 200 and ping.json()["pong"] is True
    assert _rejections(intake) == []


def test_no_delivery_no_github_request(intake: Intake, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    intake.state.add_issue(REPO, "Quiet")
    intake.tick(issue_sensor)
    intake.tick(pr_sensor)
    _webhooks_only(monkeypatch)
    intake.state.clear_requests()
    for _ in range(3):
        assert intake.tick(issue_sensor).run_requests == []
        assert intake.tick(pr_sensor).run_requests == []
    assert intake.state.requests == []


def test_a_label_seen_by_webhook_and_by_polling_runs_once(
    intake: Intake, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    pr = intake.state.add_pull(REPO, "Fix", labels=("run:dev",))
    intake.tick(issue_sensor)
    intake.tick(pr_sensor)
    intake.state.add_webhook(receiver.url, SECRET)
    event = intake.state.label(REPO, number, "run:dev", actor="alice")
    review = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    _delivered(intake, 2)
    _webhooks_only(monkeypatch)
    (by_webhook,) = intake.tick(issue_sensor).run_requests
    assert by_webhook.run_key == f"{REPO}#{number}:run:dev:{event}"
    (revise,) = intake.tick(pr_sensor).run_requests
    assert revise.run_key == f"{REPO}#{pr}:run:dev:revise:review-{review}"
    monkeypatch.setenv("CODEXK8S_INTAKE_RECONCILE_SECONDS", "0")  # now polling reconciles: the same events
    intake.state.clear_requests()
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.tick(pr_sensor).run_requests == []
    assert any("/issues?" in path for _, path, _ in intake.state.requests)  # it really polled
    assert intake.events(by_webhook.run_key) == ["run.requested"]
    with intake.store.connect() as conn:
        assert conn.execute("SELECT count(*) AS n FROM runs").fetchone()["n"] == 2
    # And the other way round: polled first, the late delivery starts nothing.
    intake.state.unlabel(REPO, number, "run:dev", actor="alice")
    again = intake.state.label(REPO, number, "run:dev", actor="alice")
    (polled,) = intake.tick(issue_sensor).run_requests
    assert polled.run_key == f"{REPO}#{number}:run:dev:{again}"
    _delivered(intake, 4)
    _webhooks_only(monkeypatch)
    assert intake.tick(issue_sensor).run_requests == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_receiver_killed_after_storing_loses_nothing(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    intake.tick(issue_sensor)
    port = _free_port()
    env = {**os.environ, "CODEXK8S_WEBHOOK_SECRET": SECRET, "CODEXK8S_DATABASE_URL": intake.store.url}
    proc = subprocess.Popen(
        [str(CODEXK8S), "webhook", "serve", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/webhook"

        def up() -> bool:
            try:
                return requests.get(url.replace("/webhook", "/healthz"), timeout=1).status_code == 200
            except requests.ConnectionError:
                return proc.poll() is not None  # died: fail below with its stderr

        wait_for(up, what="codexk8s webhook serve", timeout=30)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        intake.state.add_webhook(url, SECRET)
        event = intake.state.label(REPO, number, "run:dev", actor="alice")
        _delivered(intake)
        assert intake.state.deliveries[0].status == 202
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # killed before any sensor drained it
        proc.wait(timeout=10)
    _webhooks_only(monkeypatch)
    intake.state.inject("500", path_regex=r"/issues/\d+/events$", times=3)  # the first drain fails half-way
    assert intake.tick(issue_sensor).run_requests == []
    assert delivery_status(intake.store, intake.state.deliveries[0].id)["status"] == "pending"  # type: ignore[index]
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == f"{REPO}#{number}:run:dev:{event}"
    assert delivery_status(intake.store, intake.state.deliveries[0].id)["status"] == "drained"  # type: ignore[index]
    assert intake.tick(issue_sensor).run_requests == []


def test_without_the_database_the_receiver_answers_503_so_github_can_redeliver() -> None:
    from codexk8s_pipelines.store import PlatformStore

    gone = PlatformStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with Receiver(gone) as down:
        answer = _post(down.url, "issues", _labeled(), delivery="d-db-down")
    assert answer.status_code == 503 and "redeliver" in answer.json()["error"]


def test_serve_refuses_to_start_without_a_secret(intake: Intake) -> None:
    env = {**os.environ, "CODEXK8S_WEBHOOK_SECRET": "", "CODEXK8S_DATABASE_URL": intake.store.url}
    result = subprocess.run(
        [str(CODEXK8S), "webhook", "serve", "--port", str(_free_port())], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "CODEXK8S_WEBHOOK_SECRET is not set" in result.stderr


def test_a_bad_polling_interval_is_named_not_fatal(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    intake.state.add_issue(REPO, "Quiet")
    monkeypatch.setenv("CODEXK8S_INTAKE_POLL_SECONDS", "soon")
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    assert "CODEXK8S_INTAKE_POLL_SECONDS='soon' is not a number of seconds >= 0; using 30" in (data.skip_message or "")


def test_a_working_webhook_turns_polling_into_reconciliation(
    intake: Intake, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    monkeypatch.setenv("CODEXK8S_INTAKE_POLL_SECONDS", "0")
    monkeypatch.setenv("CODEXK8S_INTAKE_RECONCILE_SECONDS", "3600")
    intake.tick(issue_sensor)  # the first look
    intake.tick(issue_sensor)  # the issue at the watermark, read once
    intake.state.clear_requests()
    intake.tick(issue_sensor)
    assert [status for _, _, status in intake.state.requests] == [304]  # no webhook yet: every tick polls
    intake.state.add_webhook(receiver.url, SECRET)
    intake.state.label(REPO, number, "bug", actor="alice")
    _delivered(intake)
    intake.tick(issue_sensor)  # drains the delivery, and the repository's poll is due once more
    intake.state.clear_requests()
    for _ in range(3):
        assert intake.tick(issue_sensor).run_requests == []
    assert intake.state.requests == []  # the webhook works: polling waits for the reconciliation interval
