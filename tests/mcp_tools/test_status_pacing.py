"""`run_status_report` under many reports (review 38, M1): every status is audited at once, the service comment is
started once and edited at most once an interval, and it always ends on the newest status — by a trailing edit
while the server runs, and by the server's last act when it stops. Against the fake GitHub, through the SDK client."""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
from mcp import Client

from codexk8s_pipelines.github.service_comment import COMMENT_EVENT
from codexk8s_pipelines.mcp.limits import McpLimits

from .conftest import REPO, Platform, data_of

INTERVAL = 0.5


def _writes(platform: Platform) -> list[tuple[str, str, int]]:
    """The requests that created or edited a comment."""
    return [r for r in platform.state.requests if r[0] in ("POST", "PATCH") and "/comments" in r[1]]


def _comment(platform: Platform) -> str:
    comments = platform.state.comments(REPO, platform.issue)
    assert len(comments) == 1, comments  # one service comment, however the reports raced
    return str(comments[0]["body"])


def _newest_status(platform: Platform) -> str:
    reported = [e for e in platform.events() if e["event_type"] == "run.agent.status_reported"]
    return str(max(reported, key=lambda e: e["id"])["payload"]["status"])


def test_concurrent_reports_make_few_edits_and_the_comment_ends_on_the_newest_status(platform: Platform) -> None:
    platform.limits = McpLimits(call_burst=1_000, status_edit_interval_seconds=INTERVAL, housekeeping_seconds=0.05)
    platform.state.clear_requests()

    async def body(client: Client) -> tuple[list[dict[str, Any]], float, float]:
        started = time.monotonic()
        results: list[dict[str, Any]] = []

        async def report(i: int) -> None:
            result = await client.call_tool("run_status_report", {"token": platform.token, "status_line": f"step {i}"})
            results.append(data_of(result)["comment"])

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(report, i)
        burst = time.monotonic() - started
        # The trailing edit, while the server runs: the comment comes to show the newest status by itself.
        with anyio.fail_after(10):
            while f"`{_newest_status(platform)}`" not in _comment(platform):
                await anyio.sleep(0.05)
        return results, burst, time.monotonic() - started

    results, burst, took = platform.run(body)
    assert platform.event_types().count("run.agent.status_reported") == 100  # every status audited
    assert f"`{_newest_status(platform)}`" in _comment(platform)
    writes = _writes(platform)
    # The first report starts the comment; after it, at most one edit an interval (the old server: one a report).
    assert 2 <= len(writes) <= math.ceil(took / INTERVAL) + 1, (len(writes), took)
    assert writes[0][0] == "POST" and {m for m, _, _ in writes[1:]} == {"PATCH"}
    assert len(platform.state.requests) <= 3 * len(writes), platform.state.requests  # a find and an edit each
    assert [e["event_type"] for e in platform.events()].count(COMMENT_EVENT) == 1  # the comment recorded once
    # Each report says what happened to the comment: shown now, held back for the interval, or already overtaken.
    shown = [r for r in results if r["updated"]]
    deferred = [r for r in results if r.get("deferred")]
    overtaken = [r for r in results if "a newer status" in r.get("reason", "")]
    assert len(shown) + len(deferred) + len(overtaken) == 100 and 1 <= len(shown) <= len(writes)
    assert all(0 < r["within_seconds"] <= math.ceil(INTERVAL) and "at most once every" in r["reason"] for r in deferred)
    assert burst < 10


def test_a_status_held_back_reaches_github_when_the_server_stops(platform: Platform) -> None:
    platform.limits = McpLimits(call_burst=1_000)  # the real interval: a minute, longer than this test

    async def body(client: Client) -> list[dict[str, Any]]:
        out = []
        for line in ("reading the code", "writing the fix"):
            out.append(
                data_of(await client.call_tool("run_status_report", {"token": platform.token, "status_line": line}))
            )
        return out

    first, second = platform.run(body)  # the client closes: the server's lifespan ends
    assert first["comment"]["updated"] is True and first["comment"]["action"] == "created"
    assert second["comment"]["updated"] is False and second["comment"]["deferred"] is True
    assert second["comment"]["within_seconds"] > 50
    body_now = _comment(platform)
    assert "`writing the fix`" in body_now and "reading the code" not in body_now
    assert [m for m, _, _ in _writes(platform)] == ["POST", "PATCH"]


def test_a_status_held_back_while_the_run_finished_leaves_the_finished_comment_alone(platform: Platform) -> None:
    """The platform's finishing edit says what became of the run; a held-back status published after it (up to an
    interval later) wrote the comment of a started run back over it (review 39)."""
    platform.limits = McpLimits(call_burst=1_000)  # the real interval: the second status is held back

    async def body(client: Client) -> None:
        for line in ("reading the code", "writing the fix"):
            await client.call_tool("run_status_report", {"token": platform.token, "status_line": line})
        platform.store.set_run_status(platform.key, "succeeded")

    platform.run(body)  # the server stops: what is still held back would be published now
    assert "`reading the code`" in _comment(platform) and "writing the fix" not in _comment(platform)
    assert [m for m, _, _ in _writes(platform)] == ["POST"]
    assert _newest_status(platform) == "writing the fix"  # audited all the same
