"""Each MCP tool's happy path through the SDK's in-process client, against the embedded PostgreSQL and the fake
GitHub: what an agent sees, and what the platform records."""

from __future__ import annotations

from typing import Any

from mcp import Client

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.github.service_comment import MARKER, RunView, render
from codexk8s_pipelines.mcp.limits import STATEMENT_TIMEOUT_MS, with_statement_timeout
from codexk8s_pipelines.mcp.tools import STATUS_MARKER
from codexk8s_pipelines.store.database import RunRecord

from .conftest import REPO, Platform, data_of, text_of

TOOLS = {
    "docs_search",
    "docs_change_impact",
    "runs_list",
    "run_lookup",
    "budget_status",
    "issue_trace",
    "run_status_report",
    "github_labels_list",
    "github_labels_transition",
}


def test_lists_the_tools_with_their_input_schemas(platform: Platform) -> None:
    async def body(client: Client) -> Any:
        return await client.list_tools()

    listed = {t.name: t for t in platform.run(body).tools}
    assert set(listed) == TOOLS
    for tool in listed.values():
        schema = tool.input_schema
        assert schema["type"] == "object"
        assert "token" in schema["required"], tool.name
        assert "repository" not in schema["properties"], tool.name  # the token decides the repository
        assert tool.description
    search = listed["docs_search"].input_schema
    assert search["required"] == ["token", "query"]
    assert (search["properties"]["k"]["minimum"], search["properties"]["k"]["maximum"]) == (1, 50)
    assert set(listed["docs_change_impact"].input_schema["properties"]) == {"token", "diff", "files", "k"}
    assert set(listed["run_lookup"].input_schema["properties"]) == {"token", "issue", "pr"}
    assert set(listed["issue_trace"].input_schema["properties"]) == {"token", "issue"}
    assert listed["issue_trace"].annotations is not None and listed["issue_trace"].annotations.read_only_hint
    assert set(listed["budget_status"].input_schema["properties"]) == {"token"}
    assert listed["budget_status"].annotations is not None and listed["budget_status"].annotations.read_only_hint
    assert listed["run_status_report"].input_schema["required"] == ["token", "status_line"]
    assert set(listed["github_labels_transition"].input_schema["properties"]) == {"token", "add", "remove", "number"}
    assert listed["runs_list"].annotations is not None and listed["runs_list"].annotations.read_only_hint


def test_docs_search_searches_the_token_repository(platform: Platform) -> None:
    data = data_of(platform.call("docs_search", {"token": platform.token, "query": "empty cart", "k": 1}))
    assert data["repository"] == REPO
    assert data["hits"] == [
        {
            "repository": REPO,
            "path": "docs/checkout.md",
            "heading_path": ["Checkout", "Empty cart"],
            "start_line": 10,
            "end_line": 24,
            "score": 0.91,
            "text": "An empty...",
        }
    ]
    name, (url, query), kw = platform.index.calls[-1]
    # The platform database, on connections whose statements the server's timeout bounds (limits.py).
    bounded = with_statement_timeout(platform.store.url, STATEMENT_TIMEOUT_MS)
    assert (name, url, query) == ("search", bounded, "empty cart")
    assert kw["repository"] == REPO and kw["k"] == 1 and kw["path_prefix"] is None


def test_docs_search_passes_the_path_prefix(platform: Platform) -> None:
    platform.call("docs_search", {"token": platform.token, "query": "cart", "path_prefix": "/docs/"})
    assert platform.index.calls[-1][2]["path_prefix"] == "docs/"


def test_docs_change_impact_from_files_and_from_a_diff(platform: Platform) -> None:
    data = data_of(platform.call("docs_change_impact", {"token": platform.token, "files": ["shop/cart.py"]}))
    assert data["input"] == "files"
    assert data["hits"][0]["reasons"] == ["mentions cart.py"]
    assert data["hits"][0]["heading_path"] == ["Checkout"]
    name, (_, repository), kw = platform.index.calls[-1]
    assert (name, repository, kw["files"], kw["diff"], kw["k"]) == ("change_impact", REPO, ["shop/cart.py"], None, 10)

    diff = "--- a/shop/cart.py\n+++ b/shop/cart.py\n@@ -1 +1 @@\n-a\n+b\n"
    data = data_of(platform.call("docs_change_impact", {"token": platform.token, "diff": diff, "k": 3}))
    assert data["input"] == "diff"
    assert platform.index.calls[-1][2]["diff"] == diff


def _runs(platform: Platform) -> dict[str, str]:
    """Runs of the token's issue (besides the fixture's), of another issue, and of another repository."""
    store = platform.store
    keys = {
        "plan": correlation_key(REPO, platform.issue, "run:plan", 700),
        "qa": correlation_key(REPO, platform.issue, "run:qa", 950),
        "other_issue": correlation_key(REPO, 99, "run:dev", 960),
        "other_repo": correlation_key("acme/other", platform.issue, "run:dev", 970),
    }
    store.register_run(RunRecord(keys["plan"], REPO, role="em", stage="plan", issue_number=platform.issue))
    store.register_run(RunRecord(keys["qa"], REPO, role="qa", stage="qa", issue_number=platform.issue))
    store.register_run(RunRecord(keys["other_issue"], REPO, role="dev", stage="dev", issue_number=99))
    store.register_run(RunRecord(keys["other_repo"], "acme/other", role="dev", stage="dev", issue_number=1))
    store.set_run_status(keys["plan"], "succeeded", dagster_run_id="dr-plan")
    store.append_event(keys["plan"], "run.pr.created", "system", "dagster", {"number": 7})
    return keys


def test_runs_list_returns_the_issue_runs_newest_first(platform: Platform) -> None:
    keys = _runs(platform)
    data = data_of(platform.call("runs_list", {"token": platform.token}))
    assert (data["repository"], data["issue"], data["pr"]) == (REPO, platform.issue, None)
    assert [r["run"] for r in data["runs"]] == [keys["qa"], keys["plan"], platform.key]
    current = [r for r in data["runs"] if r["current"]]
    assert [r["run"] for r in current] == [platform.key]
    plan = next(r for r in data["runs"] if r["run"] == keys["plan"])
    assert (plan["stage"], plan["status"], plan["dagster_run_id"]) == ("plan", "succeeded", "dr-plan")
    assert plan["finished_at"].endswith("Z")

    limited = data_of(platform.call("runs_list", {"token": platform.token, "limit": 1}))
    assert [r["run"] for r in limited["runs"]] == [keys["qa"]]


def test_run_lookup_shows_runs_and_their_last_events(platform: Platform) -> None:
    keys = _runs(platform)
    data = data_of(platform.call("run_lookup", {"token": platform.token}))
    assert data["issue"] == platform.issue
    plan = next(r for r in data["runs"] if r["run"] == keys["plan"])
    assert [e["type"] for e in plan["last_events"]] == ["run.pr.created"]
    assert plan["last_events"][0]["payload"] == {"number": 7}
    # The MCP call log of the current run is left out: the agent asks for decisions, not its own calls.
    mine = next(r for r in data["runs"] if r["current"])
    assert all(not e["type"].startswith("mcp.") for e in mine["last_events"])

    other = data_of(platform.call("run_lookup", {"token": platform.token, "issue": 99}))
    assert [r["run"] for r in other["runs"]] == [keys["other_issue"]]
    assert data_of(platform.call("run_lookup", {"token": platform.token, "pr": 4242}))["runs"] == []


def test_status_report_is_audited_and_starts_the_service_comment(platform: Platform) -> None:
    data = data_of(
        platform.call("run_status_report", {"token": platform.token, "status_line": "running tests\n  @acme/team"})
    )
    assert data["status"] == "running tests @acme/team"
    assert data["comment"]["updated"] is True and data["comment"]["action"] == "created"
    reported = [e for e in platform.events() if e["event_type"] == "run.agent.status_reported"]
    assert [(e["actor_type"], e["payload"]) for e in reported] == [
        ("agent", {"status": "running tests @acme/team", "via": "mcp"})
    ]
    comments = platform.state.comments(REPO, platform.issue)
    assert len(comments) == 1
    body = comments[0]["body"]
    assert MARKER.format(key=platform.key) in body and "Stage: `dev` (dev)" in body
    # In inline code: the mention pings nobody, the agent's text cannot add markdown or HTML.
    assert f"{STATUS_MARKER} **Latest agent status** (" in body and "`running tests @acme/team`" in body
    upserted = [e["payload"] for e in platform.events() if e["event_type"] == "service_comment.upserted"]
    assert upserted == [{"comment_id": comments[0]["id"], "phase": "status"}]


def test_status_report_edits_the_existing_comment_in_place(platform: Platform) -> None:
    view = RunView(correlation_key=platform.key, phase="started", stage="dev", revise=False, role="dev")
    comment_id = platform.state.add_comment(REPO, platform.issue, render(view), user="codexk8s[bot]")
    platform.state.add_comment(REPO, platform.issue, "a human says hi")
    platform.call("run_status_report", {"token": platform.token, "status_line": "reading the code"})
    data = data_of(platform.call("run_status_report", {"token": platform.token, "status_line": "writing a fix"}))
    assert data["comment"] == {"updated": True, "action": "edited", "number": platform.issue, "comment_id": comment_id}
    comments = platform.state.comments(REPO, platform.issue)
    assert len(comments) == 2
    body = next(c["body"] for c in comments if c["id"] == comment_id)
    assert body.startswith(render(view))
    assert body.count(STATUS_MARKER) == 1 and "`writing a fix`" in body and "reading the code" not in body
    assert platform.event_types().count("run.agent.status_reported") == 2


def test_status_report_without_github_is_audited_only(platform: Platform) -> None:
    platform.services.credentials = type(platform.services.credentials)(api_url=platform.services.credentials.api_url)
    data = data_of(platform.call("run_status_report", {"token": platform.token, "status_line": "still going"}))
    assert data["comment"]["updated"] is False
    assert "GitHub is not configured" in data["comment"]["reason"]
    assert "run.agent.status_reported" in platform.event_types()
    assert platform.state.comments(REPO, platform.issue) == []


def test_labels_list_shows_the_run_issue_labels_with_their_kinds(em_platform: Platform) -> None:
    platform = em_platform  # the role whose tools include the label tools
    data = data_of(platform.call("github_labels_list", {"token": platform.token}))
    assert data["repository"] == REPO
    assert data["items"] == [
        {
            "number": platform.issue,
            "pull_request": False,
            "labels": [{"name": "run:dev", "kind": "run"}, {"name": "bug", "kind": "other"}],
        }
    ]


def test_labels_transition_adds_and_removes_platform_labels(em_platform: Platform) -> None:
    platform = em_platform  # the role whose tools include the label tools (a dev run's are refused: test_roles.py)
    platform.state.label(REPO, platform.issue, "need:em")  # a person asks the em: the em answers by taking it off
    data = data_of(
        platform.call(
            "github_labels_transition",
            {"token": platform.token, "add": ["need:qa", "State:Blocked"], "remove": ["need:em"]},
        )
    )
    assert data["added"] == ["need:qa", "state:blocked"]
    assert (data["removed"], data["not_present"]) == (["need:em"], [])
    labels = platform.state.labels(REPO, platform.issue)
    assert set(labels) == {"run:dev", "bug", "need:qa", "state:blocked"}
    assert {lb["name"] for lb in data["labels"]} == set(labels)
    changed = [e for e in platform.events() if e["event_type"] == "run.labels.changed"]
    assert changed[-1]["actor_type"] == "agent"
    assert changed[-1]["payload"] == {
        "number": platform.issue,
        "added": {str(platform.issue): ["need:qa", "state:blocked"]},
        "put": ["need:qa", "state:blocked"],
        "removed": ["need:em"],
        "via": "mcp",
    }
    # Its own label, which a person has taken off meanwhile: the agent may remove it, and it is not there.
    platform.state.unlabel(REPO, platform.issue, "need:qa")
    data = data_of(platform.call("github_labels_transition", {"token": platform.token, "remove": ["need:qa"]}))
    assert (data["removed"], data["not_present"]) == ([], ["need:qa"])


def test_labels_transition_on_the_run_pull_request(em_platform: Platform) -> None:
    platform = em_platform  # the role whose tools include the label tools
    pr = platform.state.add_pull(REPO, "Fix checkout", head=f"codex/issue-{platform.issue}")
    token = platform.token_for(pr_number=pr)
    data = data_of(platform.call("github_labels_transition", {"token": token, "add": ["need:input"], "number": pr}))
    assert data["number"] == pr
    assert platform.state.labels(REPO, pr) == ["need:input"]
    listed = data_of(platform.call("github_labels_list", {"token": token}))
    assert [(i["number"], i["pull_request"]) for i in listed["items"]] == [(platform.issue, False), (pr, True)]
    assert "need:input" not in platform.state.labels(REPO, platform.issue)
    assert text_of(platform.results[-1])


def test_a_query_too_long_is_an_argument_error_not_a_failed_search(platform: Platform) -> None:
    """It read "docs search failed: query: at most 2000 characters", as if the platform had failed (review 41)."""
    result = platform.call("docs_search", {"token": platform.token, "query": "q" * 2_500})
    message = text_of(result)
    assert result.is_error and "argument 'query': is longer than 2000 characters (2500)" in message, message
    assert "failed" not in message and not platform.index.calls


def test_a_large_diff_is_checked_off_the_event_loop_and_passed_whole(platform: Platform) -> None:
    diff = "--- a/shop/cart.py\n+++ b/shop/cart.py\n" + "+x = 1\n" * 20_000
    data_of(platform.call("docs_change_impact", {"token": platform.token, "diff": diff}))
    assert platform.index.calls[-1][2]["diff"] == diff
    result = platform.call("docs_change_impact", {"token": platform.token, "diff": diff, "k": 0})
    assert result.is_error and "argument 'k': Input should be greater than or equal to 1" in text_of(result)
