"""What an agent and the MCP Inspector see of the tools (issue 19): clear, audited errors for a NUL character
and for a boolean where a number goes, descriptions without source indentation, input schemas that close the
argument list, typed output schemas for the docs tools, and a server version."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from .conftest import Platform, data_of, text_of


def _listed(platform: Platform) -> dict[str, Any]:
    async def body(client: Client) -> Any:
        return await client.list_tools()

    return {t.name: t for t in platform.run(body).tools}


@pytest.mark.parametrize(
    ("tool", "arguments", "argument"),
    [
        ("docs_search", {"query": "refund\x00policy"}, "query"),
        ("docs_change_impact", {"files": ["src/a.py", "b\x00.py"]}, "files"),
        ("run_status_report", {"status_line": "working\x00"}, "status_line"),
    ],
)
def test_a_nul_character_is_a_clear_argument_error_and_audited(
    platform: Platform, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    result = platform.call(tool, {"token": platform.token, **arguments})
    message = text_of(result)
    assert result.is_error and f"argument '{argument}'" in message and "NUL" in message, message
    assert "database" not in message
    events = platform.events()
    assert [e["event_type"] for e in events[-2:]] == ["mcp.tool.called", "mcp.tool.failed"]
    called, failed = events[-2]["payload"], events[-1]["payload"]
    assert "\\u0000" in str(called["arguments"][argument])  # the audit keeps what was sent, made visible
    assert failed["tool"] == tool and "NUL" in failed["reason"]
    assert not platform.index.calls, "the index was never asked"


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_taken_for_a_number(platform: Platform, value: bool) -> None:
    result = platform.call("docs_search", {"token": platform.token, "query": "refund", "k": value})
    assert result.is_error and "argument 'k': must be an integer, not a boolean" in text_of(result)
    assert platform.event_types()[-1] == "mcp.tool.failed" and not platform.index.calls
    limit = platform.call("runs_list", {"token": platform.token, "limit": True})
    assert limit.is_error and "argument 'limit'" in text_of(limit)
    assert not data_of(platform.call("docs_search", {"token": platform.token, "query": "refund", "k": 1}))["hits"][1:]


def test_descriptions_schemas_and_version_are_what_clients_show(platform: Platform) -> None:
    listed = _listed(platform)
    for tool in listed.values():
        assert tool.description and "\n    " not in tool.description, (tool.name, tool.description)
        assert tool.input_schema["additionalProperties"] is False, tool.name
    search = listed["docs_search"]
    assert search.description.startswith("Search the docs of this run's repository")
    assert search.input_schema["properties"]["all_chunks"]["type"] == "boolean"
    output = search.output_schema
    assert output is not None and set(output["required"]) >= {"repository", "query", "hits"}
    hit = output["properties"]["hits"]["items"]
    hit = output.get("$defs", {}).get(hit.get("$ref", "").rsplit("/", 1)[-1], hit)
    assert {"path", "heading_path", "start_line", "end_line", "score", "text"} <= set(hit["properties"])
    impact = listed["docs_change_impact"].output_schema
    assert impact is not None and "hits" in impact["properties"]

    async def body(client: Client) -> Any:
        return client.server_info

    info = platform.run(body)
    assert info is not None and info.name == "codexk8s" and info.version not in ("", None)


def test_docs_search_keeps_all_chunks_only_when_asked(platform: Platform) -> None:
    data_of(platform.call("docs_search", {"token": platform.token, "query": "refund"}))
    data_of(platform.call("docs_search", {"token": platform.token, "query": "refund", "all_chunks": True}))
    assert [kw["per_file"] for _, _, kw in platform.index.calls] == [2, None]
