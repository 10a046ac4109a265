"""What a hostile caller of the MCP server cannot do (attack review 26a): stall the shared server with text the
redaction works hard on, fill the audit with huge rows, or have a secret or a NUL character slip past the audit
through a tool or argument *name*. Each call goes through the SDK client, as an agent's (or anyone's) would."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError

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


# -- finding 6: numbers beyond PostgreSQL's integer -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tool", "arguments", "argument"),
    [
        ("run_lookup", {"issue": 2_147_483_648}, "issue"),
        ("run_lookup", {"pr": 10**20}, "pr"),
        ("issue_trace", {"issue": 2_147_483_648}, "issue"),
        ("github_labels_transition", {"add": ["need:qa"], "number": 2_147_483_648}, "number"),
    ],
)
def test_a_number_beyond_an_integer_is_a_clear_argument_error(
    platform: Platform, em_platform: Platform, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    if tool.startswith("github_labels"):
        platform = em_platform  # the role whose tools include the label tools
    result = platform.call(tool, {"token": platform.token, **arguments})
    message = text_of(result)
    assert result.is_error and f"argument '{argument}'" in message and "2147483647" in message, message
    assert platform.event_types()[-1] == "mcp.tool.failed"
    assert f"argument '{argument}'" in platform.events()[-1]["payload"]["reason"]


def test_the_schemas_say_the_numbers_bounds(platform: Platform) -> None:
    async def body(client: Client) -> Any:
        return await client.list_tools()

    listed = {t.name: t.input_schema for t in platform.run(body).tools}
    for tool, argument in [("run_lookup", "issue"), ("run_lookup", "pr"), ("issue_trace", "issue"),
                           ("github_labels_transition", "number")]:  # fmt: skip
        branch = next(b for b in listed[tool]["properties"][argument]["anyOf"] if b.get("type") == "integer")
        assert (branch["minimum"], branch["maximum"]) == (1, 2_147_483_647), (tool, argument)


# -- finding 7: NUL in the tool name -----------------------------------------------------------------------------------
def test_a_nul_in_the_tool_name_is_an_unknown_tool_and_audited(platform: Platform) -> None:
    result = platform.call("runs_list\x00", {"token": platform.token})
    message = text_of(result)
    assert result.is_error and "unknown tool 'runs_list\\u0000'" in message, message
    assert "database" not in message
    called, failed = (e["payload"] for e in platform.events()[-2:])
    assert called == {"tool": "runs_list\\u0000", "arguments": {}}
    assert failed["tool"] == "runs_list\\u0000" and "unknown tool" in failed["reason"]
    # With a token that does not verify, the refusal is audited as well.
    platform.call("runs_list\x00", {"token": "junk"})
    assert [e["payload"]["tool"] for e in platform.events(UNVERIFIED_KEY)] == ["runs_list\\u0000"] * 2


# -- finding 9: strict types ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tool", "arguments", "argument", "expected"),
    [
        ("docs_search", {"query": "x", "k": "3"}, "k", "integer"),
        ("docs_search", {"query": "x", "k": 3.5}, "k", "integer"),
        ("docs_search", {"query": "x", "all_chunks": "yes"}, "all_chunks", "boolean"),
        ("docs_search", {"query": "x", "all_chunks": 1}, "all_chunks", "boolean"),
        ("docs_search", {"query": 5}, "query", "string"),
        ("runs_list", {"limit": "20"}, "limit", "integer"),
        ("run_lookup", {"issue": "12"}, "issue", "integer"),
        ("run_lookup", {"pr": True}, "pr", "integer"),
        ("github_labels_transition", {"add": ["need:qa"], "number": "1"}, "number", "integer"),
        ("run_status_report", {"status_line": 42}, "status_line", "string"),
    ],
)
def test_a_value_of_another_type_is_refused_naming_the_argument(
    platform: Platform, em_platform: Platform, tool: str, arguments: dict[str, Any], argument: str, expected: str
) -> None:
    if tool.startswith("github_labels"):
        platform = em_platform  # the role whose tools include the label tools
    result = platform.call(tool, {"token": platform.token, **arguments})
    message = text_of(result)
    assert result.is_error and f"argument '{argument}'" in message and expected in message, message
    assert platform.event_types()[-1] == "mcp.tool.failed" and not platform.index.calls


def test_whole_numbers_and_booleans_as_json_has_them_are_accepted(platform: Platform) -> None:
    data_of(platform.call("docs_search", {"token": platform.token, "query": "x", "k": 2, "all_chunks": True}))
    data_of(platform.call("docs_search", {"token": platform.token, "query": "x", "k": 2.0}))  # JSON: an integer
    assert [c[2]["k"] for c in platform.index.calls] == [2, 2]


# -- review 41: a label name is echoed and audited bounded ------------------------------------------------------------
def test_a_huge_label_name_is_refused_by_its_length_and_never_echoed_whole(em_platform: Platform) -> None:
    """A 3.9 MB label name came back in the reply and went into the append-only audit whole, as the reason of the
    refusal, once per call (review 41). GitHub's label names have at most 50 characters: refused first, shown as
    its start."""
    platform = em_platform
    for argument, label in [("add", "x" * 1_000_000), ("remove", "run:" + "x" * 1_000_000)]:
        result = platform.call("github_labels_transition", {"token": platform.token, argument: [label]})
        message = text_of(result)
        assert result.is_error and len(message) < 500, len(message)
        assert f"argument '{argument}': a label name has at most 50 characters: {label[:50]}..." in message, message
        assert "<1000000 characters>" in message or "<1000004 characters>" in message
    sizes = _payload_sizes(platform, platform.key)
    assert len(sizes) == 4 and max(sizes) < 2_000, sizes


def test_a_long_failure_reason_is_audited_cut_saying_how_much(platform: Platform) -> None:
    """Whatever a tool's message echoes, the `mcp.tool.failed` row keeps at most 1,000 characters of it."""

    def failing(*_args: Any, **_kw: Any) -> Any:
        raise ToolError("the index says: " + "y" * 200_000)

    platform.services.search = failing
    result = platform.call("docs_search", {"token": platform.token, "query": "cart"})
    assert result.is_error
    reason = platform.events()[-1]["payload"]["reason"]
    assert reason.startswith("the index says: yyy") and len(reason) < 1_100, len(reason)
    assert reason.endswith("<cut: 199016 of 200016 characters>"), reason[-80:]
