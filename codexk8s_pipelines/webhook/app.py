"""The webhook receiver: a small ASGI app (Starlette, which Dagster's webserver already brings) that takes
GitHub's deliveries, stores them, and answers — nothing more.

Why so little: GitHub waits at most 10 s for an answer and retries nothing by itself, so the receiver does no
GitHub work on the request path. It verifies `X-Hub-Signature-256` (HMAC-SHA256 with the shared secret,
compared in constant time), stores the delivery in the platform database under GitHub's `X-GitHub-Delivery`
(UNIQUE: a redelivery is a no-op that still answers 2xx) and answers. The intake sensors drain what it stored
with the same decision path as polling, so a label seen both ways runs once.

Answers: 202 stored; 200 a redelivery or a ping; 202 an action the intake does not take, or a GitHub App's own
event (`installation`…), kept as `ignored`; 401 an unsigned or wrongly signed body; 400 bad JSON (nested too
deeply included; a form-encoded body is told to set the webhook's content type to application/json), an event not
taken or no delivery id; 422 missing fields or an item number out of range; 413 an oversized body; 408 a body not
received within `BODY_SECONDS` (GitHub itself gives up after 10 s); 503 when the database is unreachable (GitHub
shows the delivery as failed and it can be redelivered).

Which refusals are audited, and why: a refusal of a *signed* body (400/422) can only come from the secret
holder, so it is one `webhook.rejected` row in `flow_events` and the body is kept in `webhook_deliveries` as
`rejected`: an operator can see what GitHub sent and why it was refused. A refusal *without* a valid signature
(401, and 413 and 408, which come before the signature can be checked) can come from anyone on the internet;
`flow_events` is append-only, so a row per such request would let anyone fill the disk for good. Those are
counted in memory instead and logged as one summary line per remote address at most once a minute
(`RefusalTally`). Header values are clipped to `HEADER_SHOWN` characters wherever they are logged or audited; a
delivery id, which keys the stored delivery, is taken whole up to 200 characters and refused beyond.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import settings
from ..domain.untrusted_data import UntrustedDataError, loads_json
from ..github.payloads import EVENTS, PayloadError, WebhookEvent
from ..store import PlatformStore
from ..store.intake import DeliveryRecord, store_delivery

log = logging.getLogger(__name__)

SECRET_VAR = settings.WEBHOOK_SECRET_VAR
MAX_BODY_VAR = settings.WEBHOOK_MAX_BYTES_VAR
DEFAULT_MAX_BODY = 2 * 1024 * 1024  # issue and PR payloads are tens of kilobytes; GitHub caps any at 25 MB
KEPT_REJECTED_BYTES = 64 * 1024
ACTOR = "webhook-receiver"
HEADER_SHOWN = 100  # GitHub's delivery ids are 36-character UUIDs and its event names are short
REFUSAL_LOG_SECONDS = 60.0
MAX_TALLIED_REMOTES = 1024  # beyond this many addresses in one minute, the rest share one count
OTHER_REMOTES = "other addresses"
# A body not received within this many seconds is answered 408 and its connection closed (GitHub gives up after
# 10 s): a caller that sends headers and then a trickle, or nothing, holds no connection for longer.
BODY_SECONDS = 10.0
# What the bodies being read and handled at once may hold, counted at the receiver's largest body each: without a
# cap on connections (see KEEP_ALIVE_SECONDS), 250 unsigned 2 MiB bodies at once would pass the pod's 512 MiB. Past
# it a request is answered 503 before its body is read (GitHub redelivers; /healthz is not counted).
BODY_BUDGET_BYTES = 64 * 1024 * 1024
# An idle keep-alive connection is closed after this long. uvicorn gets no `limit_concurrency`: it starts no timer on
# a connection until its first request, so 100 sockets that never send one held a limit of 100 for good and GitHub
# (and the probes, /healthz) got 503 (review 43). Idle and slow clients are bounded by the Ingress in front (README)
# and the body deadline here.
KEEP_ALIVE_SECONDS = 5
FORM_ENCODED = "application/x-www-form-urlencoded"


class WebhookConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class ReceiverSettings:
    secret: str
    max_body: int = DEFAULT_MAX_BODY

    def __repr__(self) -> str:  # the secret never reaches a log
        return f"ReceiverSettings(max_body={self.max_body})"

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> ReceiverSettings:
        secret = environ.get(SECRET_VAR, "")
        if not secret.strip():
            raise WebhookConfigError(f"{SECRET_VAR} is not set: the receiver cannot verify GitHub's signatures")
        raw = environ.get(MAX_BODY_VAR, "").strip()
        try:
            max_body = int(raw) if raw else DEFAULT_MAX_BODY
            if max_body <= 0:
                raise ValueError
        except ValueError:
            raise WebhookConfigError(f"{MAX_BODY_VAR}={raw!r} is not a positive number of bytes") from None
        return cls(secret, max_body)


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """GitHub's `X-Hub-Signature-256: sha256=<hex HMAC of the raw body>`, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def clip(value: str, limit: int = HEADER_SHOWN) -> str:
    """A header value as it may be logged or stored: at most `limit` characters (a request line's headers can be
    tens of kilobytes, and whoever sends them chooses them)."""
    return value if len(value) <= limit else value[:limit] + "…"


class RefusalTally:
    """Refusals without a valid signature, counted per remote address and logged at most once per `interval`.

    Why in memory and not audited: anyone can send such a request, and each audit row would be permanent. The
    first refusal from an address is logged at once (so a misconfigured secret shows up immediately); later ones
    within the interval are only counted, and the next refusal after it logs the count since the last line. The
    number of addresses held is bounded: past `max_remotes` the rest are counted together."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        interval: float = REFUSAL_LOG_SECONDS,
        max_remotes: int = MAX_TALLIED_REMOTES,
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._max_remotes = max_remotes
        self._lock = threading.Lock()
        self._remotes: dict[str, tuple[float, int]] = {}  # remote -> (when its last line was logged, count since)

    def count(self, remote: str) -> tuple[str, int] | None:
        """Count one refusal from `remote`: (the address as tallied, the count to log now), or None while its
        last line is less than `interval` old."""
        with self._lock:
            now = self._clock()
            if remote not in self._remotes and len(self._remotes) >= self._max_remotes:
                stale = [r for r, (at, n) in self._remotes.items() if n == 0 and now - at >= self._interval]
                for r in stale:
                    del self._remotes[r]
                if len(self._remotes) >= self._max_remotes:
                    remote = OTHER_REMOTES
            known = self._remotes.get(remote)
            if known is None or now - known[0] >= self._interval:
                self._remotes[remote] = (now, 0)
                return remote, (known[1] if known else 0) + 1
            self._remotes[remote] = (known[0], known[1] + 1)
            return None


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


async def _read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The whole body, at most `limit` bytes (`_TooLarge`) and within `seconds` (`_TooSlow`)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise _TooSlow from None
    return b"".join(chunks)


def _form_encoded(request: Request, body: bytes) -> bool:
    """A repository webhook left on GitHub's default content type sends `payload=<url-encoded JSON>`."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == FORM_ENCODED or body.startswith(b"payload=")


def create_app(
    store: PlatformStore,
    config: ReceiverSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    body_seconds: float | None = None,
) -> Starlette:
    """The receiver's app; `clock` (monotonic seconds) paces the summary lines of unsigned refusals, and a body
    must arrive within `body_seconds` (`BODY_SECONDS` when None)."""
    tally = RefusalTally(clock)
    deadline = BODY_SECONDS if body_seconds is None else body_seconds
    bodies_at_once = max(1, BODY_BUDGET_BYTES // config.max_body)
    reading = 0  # requests whose body is being read or handled (on the event loop: no lock)

    def audit(delivery: str, status: int, reason: str, event: str, remote: str | None) -> None:
        payload = {"status": status, "reason": reason, "event": event, "delivery": delivery, "remote": remote}
        store.append_event(f"webhook:{delivery or 'none'}", "webhook.rejected", "system", ACTOR, payload)

    def headers_of(request: Request) -> tuple[str, str, str]:
        delivery = clip(request.headers.get("x-github-delivery", "").strip())
        event = clip(request.headers.get("x-github-event", "").strip())
        return delivery, event, request.client.host if request.client else "unknown"

    def refuse_unsigned(request: Request, status: int, reason: str, *, close: bool = False) -> JSONResponse:
        """A refusal anyone could have caused: counted and summarised in the log, never written to the database.
        `close`: the connection is closed after the answer (a body that did not arrive in time is not waited for)."""
        delivery, event, remote = headers_of(request)
        counted = tally.count(remote)
        if counted is not None:
            where, count = counted
            log.warning(
                "webhook: %d request(s) from %s refused without a valid signature since the last such line (at most"
                " one every %g s); latest %s: %s (delivery %s, event %s)", count, where, REFUSAL_LOG_SECONDS, status,
                reason, delivery or "-", event or "-",
            )  # fmt: skip
        headers = {"Connection": "close"} if close else None
        return JSONResponse({"error": reason}, status_code=status, headers=headers)

    async def refuse(request: Request, status: int, reason: str, *, keep: DeliveryRecord | None = None) -> JSONResponse:
        """A refusal of a signed body (only the secret holder can send one): audited, and kept when `keep`."""
        delivery, event, remote = headers_of(request)
        log.warning("webhook delivery %s (%s) refused with %s: %s", delivery or "-", event or "-", status, reason)
        try:
            if keep is not None:
                await run_in_threadpool(store_delivery, store, keep)
            await run_in_threadpool(audit, delivery, status, reason, event, remote)
        except Exception as exc:  # the refusal stands even when the audit cannot be written
            log.error("cannot audit the refused delivery %s: %s", delivery or "-", exc)
        return JSONResponse({"error": reason}, status_code=status)

    async def receive(request: Request) -> JSONResponse:
        nonlocal reading
        if reading >= bodies_at_once:
            busy = f"busy: {bodies_at_once} deliveries are being read; retry (GitHub redelivers)"
            return refuse_unsigned(request, 503, busy, close=True)
        reading += 1
        try:
            return await _receive(request)
        finally:
            reading -= 1

    async def _receive(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, config.max_body, deadline)
        except _TooLarge:
            return refuse_unsigned(request, 413, f"body larger than {config.max_body} bytes")
        except _TooSlow:
            return refuse_unsigned(request, 408, f"body not received within {deadline:g} s", close=True)
        if not signature_ok(config.secret, body, request.headers.get("x-hub-signature-256")):
            missing = "x-hub-signature-256" not in request.headers
            return refuse_unsigned(request, 401, "no X-Hub-Signature-256" if missing else "signature does not match")
        delivery = request.headers.get("x-github-delivery", "").strip()
        event = clip(request.headers.get("x-github-event", "").strip())  # a clipped name is no event taken either
        if not delivery or len(delivery) > 200:
            return await refuse(request, 400, "no usable X-GitHub-Delivery header")

        def rejected(reason: str) -> DeliveryRecord:
            kept = {"raw": body[:KEPT_REJECTED_BYTES].decode("utf-8", "replace")}
            return DeliveryRecord(delivery, event or "?", None, None, None, None, "rejected", reason, kept)

        try:
            data: Any = loads_json(body, "body")
        except UntrustedDataError as exc:  # no GitHub payload is nested too deeply for json's parser
            if exc.too_deep:
                reason = f"body is not JSON the receiver can read: {exc.reason}"
            elif _form_encoded(request, body):
                reason = f"body is form-encoded ({FORM_ENCODED}): set the webhook's content type to application/json"
            else:
                reason = f"body is not JSON: {exc.detail}"
            return await refuse(request, 400, reason, keep=rejected(reason))
        try:
            parsed = WebhookEvent.parse(event, data)
        except PayloadError as exc:
            status = 400 if event not in EVENTS else 422
            return await refuse(request, status, str(exc), keep=rejected(str(exc)))
        status_word = "pending" if parsed.intake else "ignored"
        reason = None if parsed.intake else f"{event}.{parsed.action or '-'} is not taken"
        if not parsed.intake:  # nothing reads an ignored delivery's body again: kept, a year of them was gigabytes
            data = None
        if parsed.about_the_app:
            reason = f"{reason} (a GitHub App's own event)"
        record = DeliveryRecord(
            delivery, event, parsed.action, parsed.repository, parsed.number, parsed.intake, status_word, reason, data,
        )  # fmt: skip
        try:
            new = await run_in_threadpool(store_delivery, store, record)
        except Exception as exc:
            log.error("cannot store webhook delivery %s: %s", delivery, exc)
            return JSONResponse({"error": "the platform database is unavailable; redeliver later"}, status_code=503)
        if not new:
            return JSONResponse({"delivery": delivery, "duplicate": True}, status_code=200)
        if event == "ping":
            return JSONResponse({"delivery": delivery, "pong": True}, status_code=200)
        return JSONResponse({"delivery": delivery, "stored": status_word}, status_code=202)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/webhook", receive, methods=["POST"]),
            Route("/", receive, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


def serve(host: str, port: int, environ: dict[str, str]) -> None:
    """Run the receiver with uvicorn until interrupted (`codexk8s webhook serve`)."""
    import uvicorn

    receiver = ReceiverSettings.from_environment(environ)
    url = settings.database_url()
    if not url:
        raise WebhookConfigError(f"{settings.DATABASE_URL_VAR} is not set: deliveries need the database")
    store = PlatformStore(url)  # the schema is migrated by the code location (or `codexk8s db migrate`)
    uvicorn.run(
        create_app(store, receiver), host=host, port=port, log_level="info", access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )  # fmt: skip
