"""Refusals under attack (review 26a, F1 and F5): a request without a valid signature writes nothing to the
append-only audit, only a rate-limited log line with clipped headers; a signed body the receiver cannot take
(nested too deeply, an item number out of range) is a clear 4xx, audited and kept."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from codexk8s_pipelines.store.intake import delivery_status
from codexk8s_pipelines.webhook import app as webhook_app
from codexk8s_pipelines.webhook.app import HEADER_SHOWN, REFUSAL_LOG_SECONDS, RefusalTally
from tests.github_server import sign
from tests.sensors.conftest import REPO, Intake

from .conftest import SECRET, Receiver, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _flow_events(intake: Intake) -> int:
    with intake.store.connect() as conn:
        return int(conn.execute("SELECT count(*) AS n FROM flow_events").fetchone()["n"])  # type: ignore[index]


def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "codexk8s_pipelines.webhook.app"]


def test_unsigned_and_oversized_requests_write_nothing_and_log_one_line_a_minute(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="codexk8s_pipelines.webhook.app")
    clock = Clock()
    before = _flow_events(intake)
    big = "x" * 20_000
    headers = {"X-GitHub-Delivery": "D" * 20_000, "X-GitHub-Event": big}
    with Receiver(intake.store, clock=clock) as receiver, requests.Session() as s:
        for _ in range(40):
            unsigned = s.post(receiver.url, data=b"{}", headers=headers, timeout=10)
            assert unsigned.status_code == 401
            wrong = s.post(
                receiver.url, data=b"{}", timeout=10, headers={**headers, "X-Hub-Signature-256": sign("guess", b"{}")}
            )
            assert wrong.status_code == 401
        oversized = s.post(receiver.url, data=b"{" + b" " * (128 * 1024) + b"}", headers=headers, timeout=10)
        assert oversized.status_code == 413
        assert _flow_events(intake) == before  # not one row, whatever the headers said
        lines = _refusal_lines(caplog)
        assert len(lines) == 1 and "1 request(s) from 127.0.0.1" in lines[0]  # the first one, at once
        clock.now += REFUSAL_LOG_SECONDS
        assert s.post(receiver.url, data=b"{}", headers=headers, timeout=10).status_code == 401
        lines = _refusal_lines(caplog)
        # a minute later: one more line, with the count since the last one (79 x 401, 1 x 413, this one)
        assert len(lines) == 2 and "81 request(s) from 127.0.0.1" in lines[1], lines
    assert _flow_events(intake) == before
    assert all(len(line) < 2 * HEADER_SHOWN + 300 for line in lines), [len(x) for x in lines]
    assert all(SECRET not in line for line in lines)


def test_the_tally_is_bounded_and_paced_per_address() -> None:
    clock = Clock()
    tally = RefusalTally(clock, interval=60, max_remotes=2)
    assert tally.count("a") == ("a", 1)
    assert tally.count("a") is None and tally.count("b") == ("b", 1)
    assert tally.count("c") == ("other addresses", 1)  # full: the rest share one count
    assert tally.count("d") is None
    clock.now += 60
    assert tally.count("a") == ("a", 2)
    assert tally.count("d") == ("other addresses", 2)


def test_a_signed_refusal_is_still_audited_with_its_headers_clipped(intake: Intake, receiver: Receiver) -> None:
    body = b'{"ref": "refs/heads/main"}'
    event = "push" + "e" * 5000
    answer = requests.post(
        receiver.url, data=body, timeout=10,
        headers={"X-GitHub-Event": event, "X-GitHub-Delivery": "d-signed", "X-Hub-Signature-256": sign(SECRET, body)},
    )  # fmt: skip
    assert answer.status_code == 400 and "is not taken" in answer.json()["error"]
    with intake.store.connect() as conn:
        rows = conn.execute("SELECT payload FROM flow_events WHERE event_type = 'webhook.rejected'").fetchall()
    (audit,) = [r["payload"] for r in rows]
    assert audit["delivery"] == "d-signed" and audit["status"] == 400
    assert audit["event"].startswith("pushee") and len(audit["event"]) <= HEADER_SHOWN + 1
    assert len(audit["reason"]) < 4 * HEADER_SHOWN + 200
    kept = delivery_status(intake.store, "d-signed")
    assert kept is not None and kept["status"] == "rejected" and len(kept["event"]) <= HEADER_SHOWN + 1


def _signed(receiver: Receiver, body: bytes, delivery: str) -> requests.Response:
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sign(SECRET, body)}
    return requests.post(receiver.url, data=body, headers=headers, timeout=10)


def _audit(intake: Intake, delivery: str) -> list[dict]:
    with intake.store.connect() as conn:
        rows = conn.execute(
            "SELECT payload FROM flow_events WHERE event_type = 'webhook.rejected' AND correlation_key = %s",
            (f"webhook:{delivery}",),
        )
        return [r["payload"] for r in rows.fetchall()]


def test_a_signed_body_nested_too_deeply_is_a_400_audited_and_kept(intake: Intake, receiver: Receiver) -> None:
    body = b"[" * 30_000 + b"]" * 30_000
    answer = _signed(receiver, body, "d-deep")
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]
    (audit,) = _audit(intake, "d-deep")
    assert audit["status"] == 400 and "nested too deeply" in audit["reason"]
    kept = delivery_status(intake.store, "d-deep")
    assert kept is not None and kept["status"] == "rejected"


@pytest.mark.parametrize("number", [2**40, 2**31, 0, -3])
def test_a_signed_item_number_out_of_range_is_a_422_not_a_database_outage(
    intake: Intake, receiver: Receiver, number: int
) -> None:
    payload = {"action": "labeled", "issue": {"number": number}, "label": {"name": "run:dev"},
               "repository": {"full_name": REPO}}  # fmt: skip
    answer = _signed(receiver, json.dumps(payload).encode(), "d-number")
    assert answer.status_code == 422 and "is not an issue or pull request number" in answer.json()["error"]
    (audit,) = _audit(intake, "d-number")
    assert audit["status"] == 422
    kept = delivery_status(intake.store, "d-number")
    assert kept is not None and kept["status"] == "rejected" and kept["item_number"] is None


def test_the_largest_item_number_is_still_taken(intake: Intake, receiver: Receiver) -> None:
    payload = {"action": "labeled", "issue": {"number": 2**31 - 1}, "label": {"name": "run:dev"},
               "repository": {"full_name": REPO}}  # fmt: skip
    answer = _signed(receiver, json.dumps(payload).encode(), "d-max")
    assert answer.status_code == 202
    assert delivery_status(intake.store, "d-max")["item_number"] == 2**31 - 1  # type: ignore[index]


HALF_SENT = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nX-GitHub-Event: issues\r\n\r\nab"
PATIENCE = 30.0  # how long the test waits for an answer the receiver gives after BODY_SECONDS (0.5 s here)


def _until_closed(sock: socket.socket, trickle: bool = False) -> bytes:
    """Everything the receiver sends until it closes the connection; `trickle`: meanwhile one more byte of the body
    every 0.1 s. Fails after PATIENCE seconds with the connection still open."""
    received = b""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if trickle:
            try:
                sock.sendall(b"x")
            except OSError:  # the receiver closed it: what it answered is still there to read
                trickle = False
        try:
            sock.settimeout(0.1 if trickle else max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:  # closed with the trickle's last bytes unread, after its answer
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the connection is still open after {PATIENCE:g} s; received {received[:200]!r}")


def test_a_body_that_never_ends_is_answered_408_and_its_connection_closed(
    intake: Intake, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 41, finding 6: a half-sent body held its connection for good (50 of 50 still open after 20 s)."""
    caplog.set_level(logging.WARNING, logger="codexk8s_pipelines.webhook.app")
    monkeypatch.setattr(webhook_app, "BODY_SECONDS", 0.5)
    before = _flow_events(intake)
    with Receiver(intake.store) as receiver:
        where = urlsplit(receiver.url)
        address = (str(where.hostname), int(where.port or 80))
        silent = [socket.create_connection(address, timeout=10) for _ in range(5)]
        trickling = socket.create_connection(address, timeout=10)
        try:
            for sock in [*silent, trickling]:
                sock.sendall(HALF_SENT)
            answers = [_until_closed(sock) for sock in silent] + [_until_closed(trickling, trickle=True)]
        finally:
            for sock in [*silent, trickling]:
                sock.close()
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert b"body not received within 0.5 s" in answer
        payload = {"action": "labeled", "issue": {"number": 7}, "label": {"name": "run:dev"},
                   "repository": {"full_name": REPO}}  # fmt: skip
        after = _signed(receiver, json.dumps(payload).encode(), "d-after-slow")
        assert after.status_code == 202 and after.json()["stored"] == "pending"
    assert _flow_events(intake) == before  # counted, not audited: anyone can send half a body
    lines = _refusal_lines(caplog)
    assert len(lines) == 1 and "1 request(s) from 127.0.0.1" in lines[0] and "latest 408" in lines[0], lines


@contextlib.contextmanager
def _served(intake: Intake, body_seconds: float | None = None) -> Iterator[int]:
    """The receiver served by uvicorn as `serve()` serves it, on a free port (yielded) until the block ends."""
    import threading

    import uvicorn

    from codexk8s_pipelines.webhook import ReceiverSettings, create_app

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    app = create_app(intake.store, ReceiverSettings(SECRET, 65536), body_seconds=body_seconds)
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=webhook_app.KEEP_ALIVE_SECONDS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "the receiver to start")
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def _deliver(port: int, delivery: str) -> requests.Response:
    body = json.dumps({"action": "labeled", "issue": {"number": 7}, "label": {"name": "run:dev"},
                       "repository": {"full_name": REPO}}).encode()  # fmt: skip
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
               "X-Hub-Signature-256": sign(SECRET, body)}  # fmt: skip
    return requests.post(f"http://127.0.0.1:{port}/webhook", data=body, headers=headers, timeout=10)


def test_sockets_that_never_send_a_request_do_not_lock_github_out(intake: Intake) -> None:
    """Served as `serve()` serves it: 120 connections that never send a request (each held a place of uvicorn's
    `limit_concurrency` of 100 for good) and GitHub's delivery and the probes' /healthz are still answered."""
    with _served(intake) as port:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(120)]
        try:
            delivered = _deliver(port, "d-idle")
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert (delivered.status_code, health.status_code) == (202, 200), delivered.text
        finally:
            for sock in idle:
                sock.close()


def test_serve_closes_idle_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    webhook_app.serve("127.0.0.1", 8090, {"CODEXK8S_WEBHOOK_SECRET": SECRET})
    assert seen["timeout_keep_alive"] == webhook_app.KEEP_ALIVE_SECONDS > 0


def test_bodies_read_at_once_are_bounded_and_the_rest_answered_503(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a cap on connections, 250 unsigned 2 MiB bodies at once would pass the pod's memory: the bodies read
    at once are bounded (two here), a request beyond is answered 503 before its body is read, /healthz stays up,
    and deliveries are taken again once those bodies are done with."""
    monkeypatch.setattr(webhook_app, "BODY_BUDGET_BYTES", 2 * 65536)
    with _served(intake, body_seconds=2) as port:
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            for sock in slow:  # half a body each: being read
                sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n" + b"x" * 100)
            time.sleep(0.5)
            busy = _deliver(port, "d-busy")
            assert busy.status_code == 503 and "busy" in busy.json()["error"]
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
            time.sleep(2.5)  # the half bodies time out (408)
            assert _deliver(port, "d-later").status_code == 202
        finally:
            for sock in slow:
                sock.close()
