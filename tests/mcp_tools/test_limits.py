"""What one caller of the MCP server may use (review 38, M1): a flood from one token is held to its rate while
another token's calls go through, one token holds few database connections, a statement stuck on a lock ends at
the server's timeout, and refused calls without a valid token write a bounded audit. Through the SDK client,
against the embedded PostgreSQL; the limits are small ones made for each test (limits.py has the real ones)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest
from mcp import Client
from mcp_types import CallToolResult

from codexk8s_pipelines.mcp import refusals
from codexk8s_pipelines.mcp.limits import McpLimits
from codexk8s_pipelines.mcp.refusals import REFUSALS_EVENT, RefusalLog
from codexk8s_pipelines.mcp.server import UNVERIFIED_KEY

from .conftest import Platform, data_of, text_of


class Clock:
    """A monotonic clock the test moves, for the buckets and windows (the server's own waits use real time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _together(client: Client, calls: list[tuple[str, dict[str, Any]]]) -> list[CallToolResult]:
    """All the calls at once, as a flood would make them; results in the order given."""
    results: list[CallToolResult | None] = [None] * len(calls)

    async def one(i: int, tool: str, arguments: dict[str, Any]) -> None:
        results[i] = await client.call_tool(tool, arguments)

    async with anyio.create_task_group() as tg:
        for i, (tool, arguments) in enumerate(calls):
            tg.start_soon(one, i, tool, arguments)
    return [r for r in results if r is not None]


def test_a_flood_from_one_token_is_limited_while_another_tokens_calls_go_through(
    platform: Platform, em_platform: Platform
) -> None:
    platform.limits = McpLimits(call_burst=5, calls_per_minute=6, clock=Clock())  # 5 at once, then one every 10 s

    async def body(client: Client) -> tuple[list[CallToolResult], list[CallToolResult]]:
        flood = await _together(client, [("runs_list", {"token": platform.token})] * 50)
        other = [await client.call_tool("runs_list", {"token": em_platform.token}) for _ in range(5)]
        return flood, other

    flood, other = platform.run(body)
    limited = [text_of(r) for r in flood if r.is_error]
    assert sum(1 for r in flood if not r.is_error) == 5 and len(limited) == 45
    assert all(
        re.fullmatch(r"Error executing tool runs_list: rate limited: .* retry after 10 s", t) for t in limited
    ), limited[0]
    for result in other:  # the other run's agent, on the same server, meanwhile
        assert data_of(result)["runs"]

    # The audit: each call that ran (two rows), the first refused one whole, the other 44 counted in one row.
    assert Counter(platform.event_types()) == {
        "mcp.tool.called": 6,
        "mcp.tool.succeeded": 5,
        "mcp.tool.failed": 1,
        REFUSALS_EVENT: 1,
    }
    failed = next(e["payload"] for e in platform.events() if e["event_type"] == "mcp.tool.failed")
    assert failed["peer"] == "local" and failed["reason"].startswith("rate limited:")
    summary = next(e["payload"] for e in platform.events() if e["event_type"] == REFUSALS_EVENT)
    assert summary["refused"] == 44 and summary["peer"] == "local"
    assert (summary["tools"], summary["reasons"]) == (
        [{"name": "runs_list", "count": 44}],
        [{"name": "rate limited", "count": 44}],
    )
    assert Counter(platform.event_types(em_platform.key)) == {"mcp.tool.called": 5, "mcp.tool.succeeded": 5}


def test_a_token_may_call_again_once_its_bucket_refills(platform: Platform) -> None:
    clock = Clock()
    platform.limits = McpLimits(call_burst=2, calls_per_minute=6, clock=clock)

    async def body(client: Client) -> list[bool]:
        refused = []
        for advance in (0, 0, 0, 9, 1):  # two at once, a third too soon, still too soon at 9 s, fine at 10 s
            clock.now += advance
            refused.append((await client.call_tool("budget_status", {"token": platform.token})).is_error)
        return refused

    assert platform.run(body) == [False, False, True, True, False]


@pytest.fixture
def connections(platform: Platform) -> Iterator[list[int]]:
    """The most connections to the test's database seen at once (besides the watcher's own), sampled every 5 ms."""
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(platform.store.url, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                peak[0] = max(peak[0], int(row[0]) if row else 0)
                time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield peak
    stop.set()
    watcher.join(10)


def test_one_token_holds_at_most_its_running_calls_in_database_connections(
    platform: Platform, connections: list[int]
) -> None:
    # Every call admitted (a burst of 200): what is under test is how many run at once, not how many may start.
    platform.limits = McpLimits(call_burst=200, in_flight_per_token=3, in_flight_wait_seconds=60)

    async def body(client: Client) -> list[CallToolResult]:
        return await _together(client, [("issue_trace", {"token": platform.token})] * 60)

    results = platform.run(body)
    assert all(not r.is_error for r in results), next(text_of(r) for r in results if r.is_error)
    # Three running calls, one connection each at a time, and at most one more whose backend is still going away
    # as the next call connects; the old server held up to 40 (its thread pool).
    assert 1 <= connections[0] <= 3 + 1, connections[0]
    assert platform.event_types().count("mcp.tool.succeeded") == 60


def test_calls_beyond_a_tokens_running_calls_wait_then_are_refused_as_busy(
    platform: Platform, em_platform: Platform
) -> None:
    platform.limits = McpLimits(call_burst=100, in_flight_per_token=1, in_flight_wait_seconds=0.2)
    release = threading.Event()
    slow = platform.services.search

    def stuck(*args: Any, **kw: Any) -> Any:
        release.wait(5)
        assert slow is not None
        return slow(*args, **kw)

    platform.services.search = stuck

    async def body(client: Client) -> list[CallToolResult]:
        async def later() -> None:
            await anyio.sleep(1)
            release.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            first = [("docs_search", {"token": platform.token, "query": "cart"})] * 3
            results = await _together(client, [*first, ("runs_list", {"token": em_platform.token})])
        return results

    *mine, others = platform.run(body)
    busy = [text_of(r) for r in mine if r.is_error]
    assert len(busy) == 2 and all("calls of this token are already running" in t for t in busy), busy
    assert sum(1 for r in mine if not r.is_error) == 1
    assert not others.is_error  # another token's call is not held by this one's


def test_a_statement_stuck_on_a_lock_ends_at_the_servers_statement_timeout(
    platform: Platform, migrator_database_url: str
) -> None:
    platform.limits = McpLimits(call_burst=10, statement_timeout_ms=300)
    locked = threading.Event()

    def hold_the_runs_table() -> None:
        with psycopg.connect(migrator_database_url) as conn:
            conn.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
            locked.set()
            time.sleep(3)

    holder = threading.Thread(target=hold_the_runs_table)
    holder.start()
    assert locked.wait(10)
    started = time.monotonic()
    result = platform.call("runs_list", {"token": platform.token})
    took = time.monotonic() - started
    holder.join()
    assert result.is_error and took < 2, (took, text_of(result))
    assert "the platform database did not answer within 0.3 s" in text_of(result), text_of(result)
    assert "did not answer within 0.3 s" in platform.events()[-1]["payload"]["reason"]


def test_a_flood_without_a_valid_token_writes_a_bounded_audit_per_window(platform: Platform) -> None:
    clock = Clock()
    platform.limits = McpLimits(
        unverified_burst=5, unverified_per_minute=1, refusal_window_seconds=60, housekeeping_seconds=0.05, clock=clock
    )
    big = {f"a{i:02d}": "x" * 990 for i in range(9)}  # each call as large as the audit of its arguments allows

    def flood() -> list[tuple[str, dict[str, Any]]]:
        return [("docs_search", {"token": "nope", **big})] * 300

    def unverified_rows() -> list[dict[str, Any]]:
        return platform.events(UNVERIFIED_KEY)

    async def body(client: Client) -> tuple[list[CallToolResult], int]:
        first = await _together(client, flood())
        clock.now += 61  # the window ends; the housekeeping writes its count within a tick
        with anyio.fail_after(10):
            while REFUSALS_EVENT not in [e["event_type"] for e in unverified_rows()]:
                await anyio.sleep(0.05)
        rows_after_one_window = len(unverified_rows())
        second = await _together(client, flood())
        return first + second, rows_after_one_window

    results, rows_after_one_window = platform.run(body)
    texts = [text_of(r) for r in results]
    assert all(r.is_error for r in results)
    told_why = [t for t in texts if "token" in t and "rate limited" not in t]
    assert len(told_why) == 6, len(told_why)  # the burst of five, and the one a minute refills
    assert all("rate limited" in t and "retry after" in t for t in texts if t not in told_why)

    rows = unverified_rows()
    assert rows_after_one_window == 3  # the window's first call (two rows) and its count
    assert [e["event_type"] for e in rows] == ["mcp.tool.called", "mcp.tool.failed", REFUSALS_EVENT] * 2
    summaries = [e["payload"] for e in rows if e["event_type"] == REFUSALS_EVENT]
    assert [s["refused"] for s in summaries] == [299, 299]  # every refusal is counted
    assert [s["reasons"] for s in summaries] == [
        [{"name": "rate limited", "count": 295}, {"name": "token malformed", "count": 4}],  # the burst's other four
        [{"name": "rate limited", "count": 299}],
    ]
    for s in summaries:
        assert s["peer"] == "local" and s["tools"] == [{"name": "docs_search", "count": 299}]
    assert sum(len(str(e["payload"])) for e in rows) < 30_000  # 600 calls, a few rows of bounded size


def test_refusals_from_more_addresses_than_windows_share_one_overflow_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refusals, "MAX_WINDOWS", 3)
    log = RefusalLog(60, Clock(), UNVERIFIED_KEY)
    opened = [log.record(UNVERIFIED_KEY, f"10.0.0.{i}", "runs_list", "token malformed") for i in range(10)]
    assert opened == [True] * 3 + [True] + [False] * 6  # three windows, the overflow's first call, then counts
    closed = log.close(everything=True)
    assert [(s.key, s.payload["peer"], s.payload["refused"]) for s in closed] == [(UNVERIFIED_KEY, "(overflow)", 6)]
