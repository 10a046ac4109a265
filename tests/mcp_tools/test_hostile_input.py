"""What a hostile caller of the MCP server cannot do (attack review 26a): stall the shared server with text the
redaction works hard on, fill the audit with huge rows, or have a secret or a NUL character slip past the audit
through a tool or argument *name*. Each call goes through the SDK client, as an agent's (or anyone's) would."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from mcp import Client

from codexk8s_pipelines.mcp.server import UNVERIFIED_KEY

from .conftest import GITHUB_TOKEN, Platform, data_of, text_of

# Many BEGIN lines and no END: the lazy private-key pattern rescanned the rest of the text from each one.
EVIL = ("-----BEGIN " + "PRIVATE KEY-----") * (100_000 // 27)


def _payload_sizes(platform: Platform, key: str) -> list[int]:
    with platform.store.connect() as conn:
        rows = conn.execute(
            "SELECT length(payload::text) AS n FROM flow_events WHERE correlation_key = %s ORDER BY id", (key,)
        ).fetchall()
    return [int(r["n"]) for r in rows]


def _victim_latency_during(platform: Platform, tool: str, arguments: dict[str, Any]) -> tuple[float, float]:
    """How long the hostile call takes, and how long another agent's `runs_list` takes while it runs (both on the
    server's one event loop, as on the shared HTTP server)."""
    times: dict[str, float] = {}

    async def body(client: Client) -> None:
        async def attacker() -> None:
            started = time.perf_counter()
            await client.call_tool(tool, arguments)
            times["attacker"] = time.perf_counter() - started

        async def victim() -> None:  # from when it wants to call: a stalled loop delays its start as well
            started = time.perf_counter()
            await anyio.sleep(0.05)
            result = await client.call_tool("runs_list", {"token": platform.token})
            times["victim"] = time.perf_counter() - started - 0.05
            data_of(result)

        async with anyio.create_task_group() as tg:
            tg.start_soon(attacker)
            tg.start_soon(victim)

    platform.run(body)
    return times["attacker"], times["victim"]


# -- finding 1: no request stalls the server --------------------------------------------------------------------------
def test_an_unauthenticated_call_full_of_key_headers_does_not_stall_the_server(platform: Platform) -> None:
    for tool, arguments in [
        ("runs_list", {"token": "junk", "files": [EVIL]}),  # a list item
        ("runs_list", {"token": "junk", EVIL: 1}),  # an argument name
        (EVIL, {"token": "junk"}),  # the tool name
    ]:
        attacker, victim = _victim_latency_during(platform, tool, arguments)
        assert attacker < 1.5 and victim < 1.5, (tool[:20], attacker, victim)
    assert platform.event_types(UNVERIFIED_KEY).count("mcp.tool.failed") == 3


def test_a_huge_status_line_is_refused_before_it_is_processed(platform: Platform) -> None:
    started = time.perf_counter()
    result = platform.call("run_status_report", {"token": platform.token, "status_line": EVIL})
    assert time.perf_counter() - started < 1.5
    assert result.is_error and "argument 'status_line'" in text_of(result) and "longer than" in text_of(result)


# -- finding 2: bounded audit rows ------------------------------------------------------------------------------------
def test_unauthenticated_calls_write_bounded_audit_rows(platform: Platform) -> None:
    big = "x" * 500_000
    calls: list[tuple[str, dict[str, Any]]] = [
        ("runs_list", {"token": "junk", "files": [big[:78_000]] * 50}),
        ("runs_list", {"token": "junk", big: 1}),
        (big, {"token": "junk"}),
        ("runs_list", {"token": "junk", "nested": {"deep": [big]}}),
        ("runs_list", {"token": "junk", **{f"arg{i}_{'y' * 90}": "z" * 900 for i in range(200)}}),
    ]
    for tool, arguments in calls:
        result = platform.call(tool, arguments)
        assert result.is_error and len(text_of(result)) < 2_000
    sizes = _payload_sizes(platform, UNVERIFIED_KEY)
    assert len(sizes) == 2 * len(calls)
    assert max(sizes) < 10_000, sizes  # the arguments' 8000 characters, the tool name, the marker
    called = [e["payload"] for e in platform.events(UNVERIFIED_KEY) if e["event_type"] == "mcp.tool.called"]
    assert called[2]["tool"].startswith("x" * 100) and "500000 characters" in called[2]["tool"]
    assert called[3]["arguments"] == {"nested": "<object with 1 keys>"}
    assert called[0]["arguments"]["files"][0] == "<78000 characters>"
    assert "truncated" not in called[1] and "500000 characters" in next(iter(called[1]["arguments"]))
    # Too many arguments for one row: the row says it was cut and how much was left out.
    assert "arguments left out" in called[4]["truncated"]
    assert 0 < len(called[4]["arguments"]) < 200


def test_arguments_within_the_bounds_are_audited_whole(platform: Platform) -> None:
    files = ["shop/cart.py", "docs/checkout.md"]
    data_of(platform.call("docs_change_impact", {"token": platform.token, "files": files}))
    called = next(e["payload"] for e in platform.events() if e["event_type"] == "mcp.tool.called")
    assert called == {"tool": "docs_change_impact", "arguments": {"files": files}}


# -- finding 8: a secret as an argument name -----------------------------------------------------------------------
def test_a_secret_used_as_an_argument_name_is_masked_in_the_audit(platform: Platform) -> None:
    for name in (GITHUB_TOKEN, platform.token, f"x{GITHUB_TOKEN}"):
        result = platform.call("runs_list", {"token": platform.token, name: 1})
        assert result.is_error and "unknown argument" in text_of(result)
    with platform.store.connect() as conn:
        audit = json.dumps([r["payload"] for r in conn.execute("SELECT payload FROM flow_events").fetchall()])
    shown = json.dumps([r.model_dump(mode="json") for r in platform.results])
    for text in (audit, shown):
        assert GITHUB_TOKEN not in text and platform.token not in text
    assert "[redacted]" in audit
