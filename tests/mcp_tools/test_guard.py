"""What the MCP server refuses, and the audit trail of every call: tokens, scope, arguments, label policy, and
no secret in any result or audit row."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codexk8s_pipelines.mcp.server import UNVERIFIED_KEY

from .conftest import GITHUB_TOKEN, NOW, REPO, SECRET, Platform, data_of, text_of


def _refused(platform: Platform, tool: str, arguments: dict[str, Any], *needles: str) -> str:
    result = platform.call(tool, arguments)
    message = text_of(result)
    assert result.is_error, message
    for needle in needles:
        assert needle in message, message
    return message


def _last_failure(platform: Platform, key: str | None = None) -> dict[str, Any]:
    events = platform.events(key)
    assert [e["event_type"] for e in events[-2:]] == ["mcp.tool.called", "mcp.tool.failed"]
    return events[-1]["payload"]


# -- tokens -------------------------------------------------------------------------------------------------------
def test_expired_token_is_refused_and_audited_under_its_run(platform: Platform) -> None:
    expired = platform.token_for(expires_at=int(NOW) - 1)
    _refused(platform, "runs_list", {"token": expired}, "token expired at", platform.key)
    assert _last_failure(platform)["tool"] == "runs_list"
    assert "expired" in _last_failure(platform)["reason"]


def test_bad_signature_is_refused_and_audited_as_unverified(platform: Platform) -> None:
    forged = platform.token_for(secret="another-secret-of-enough-length")
    _refused(platform, "github_labels_list", {"token": forged}, "bad signature")
    failure = _last_failure(platform, UNVERIFIED_KEY)
    assert failure["tool"] == "github_labels_list" and "bad signature" in failure["reason"]
    assert "mcp.tool.called" not in platform.event_types()  # nothing was written under the claimed run

    head, payload, signature = platform.token.split(".")
    tampered = f"{head}.{payload[:-2]}AA.{signature}"
    _refused(platform, "runs_list", {"token": tampered}, "bad signature")


@pytest.mark.parametrize("token", ["", "not-a-token", "ck8s1.abc", "ck8s1.e30.!!!", "ck8s2.e30.AAAA"])
def test_malformed_token_is_refused(platform: Platform, token: str) -> None:
    _refused(platform, "runs_list", {"token": token}, "token")
    assert _last_failure(platform, UNVERIFIED_KEY)["tool"] == "runs_list"


def test_missing_token_names_the_argument(platform: Platform) -> None:
    _refused(platform, "runs_list", {}, "argument 'token'", "required")
    _refused(platform, "runs_list", {"token": 42}, "argument 'token'")


# -- scope --------------------------------------------------------------------------------------------------------
def test_another_repository_is_refused_naming_the_argument(platform: Platform) -> None:
    _refused(platform, "runs_list", {"token": platform.token, "repository": "acme/other"}, "'repository'", "acme/other")
    assert "outside this token's scope" in _last_failure(platform)["reason"]
    _refused(platform, "run_lookup", {"token": platform.token, "repo": "evil/repo", "issue": 1}, "'repo'")
    # Repeating the token's own scope is harmless.
    data_of(platform.call("runs_list", {"token": platform.token, "repository": "ACME/shop", "issue": platform.issue}))


def test_another_issue_is_refused_naming_the_argument(em_platform: Platform) -> None:
    platform = em_platform  # the role whose tools include the label tools
    _refused(
        platform, "github_labels_transition", {"token": platform.token, "add": ["need:qa"], "issue": 99}, "'issue'"
    )
    _refused(platform, "github_labels_transition", {"token": platform.token, "add": ["need:qa"], "number": 99},
             "argument 'number'", "#99")  # fmt: skip
    _refused(platform, "run_status_report", {"token": platform.token, "status_line": "x", "pr": 5}, "'pr'")
    _refused(platform, "runs_list", {"token": platform.token, "run": "acme/shop#1:run:qa:1"}, "'run'")
    assert platform.state.labels(REPO, platform.issue) == ["run:dev", "bug"]
    assert "run.labels.changed" not in platform.event_types()


def test_token_for_another_repository_never_reaches_this_one(platform: Platform) -> None:
    other = platform.token_for(run_key="acme/other#1:run:dev:5", repository="acme/other", issue_number=1)
    data = data_of(platform.call("runs_list", {"token": other}))
    assert data["repository"] == "acme/other" and data["runs"] == []
    search = data_of(platform.call("docs_search", {"token": other, "query": "cart"}))
    assert {h["repository"] for h in search["hits"]} == {"acme/other"}


# -- arguments ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tool", "arguments", "argument"),
    [
        ("docs_search", {"query": "x", "k": 0}, "k"),
        ("docs_search", {"query": "x", "k": 51}, "k"),
        ("docs_search", {"query": "x", "k": "many"}, "k"),
        ("docs_search", {}, "query"),
        ("docs_search", {"query": ""}, "query"),
        ("docs_search", {"query": "   "}, "query"),
        ("docs_search", {"query": "x", "path_prefix": "../secrets"}, "path_prefix"),
        ("docs_search", {"query": "x", "limit": 3}, "limit"),
        ("docs_change_impact", {"diff": "--- a\n+++ b\n", "files": ["a.py"]}, "diff"),
        ("docs_change_impact", {}, "diff"),
        ("docs_change_impact", {"files": []}, "files"),
        ("docs_change_impact", {"files": "a.py"}, "files"),
        ("docs_change_impact", {"files": ["a.py"], "k": 99}, "k"),
        ("runs_list", {"limit": 0}, "limit"),
        ("run_lookup", {"issue": 1, "pr": 2}, "issue"),
        ("run_lookup", {"issue": "twelve"}, "issue"),
        ("run_status_report", {}, "status_line"),
        ("run_status_report", {"status_line": " "}, "status_line"),
        ("run_status_report", {"status_line": "x" * 501}, "status_line"),
        ("github_labels_transition", {}, "add"),
        ("github_labels_transition", {"add": ["need:qa"], "remove": ["need:qa"]}, "remove"),
        ("github_labels_transition", {"add": "need:qa"}, "add"),
    ],
)
def test_wrong_arguments_name_the_argument(
    platform: Platform, em_platform: Platform, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    if tool.startswith("github_labels"):
        platform = em_platform  # the role whose tools include the label tools
    message = _refused(platform, tool, {"token": platform.token, **arguments}, f"'{argument}")
    assert argument in _last_failure(platform)["reason"], message
    assert platform.index.calls == []  # nothing ran


def test_unknown_tool_is_refused_and_audited(platform: Platform) -> None:
    _refused(platform, "shell_exec", {"token": platform.token}, "unknown tool")
    assert _last_failure(platform)["tool"] == "shell_exec"


# -- label policy -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "needles"),
    [
        ({"add": ["run:qa"]}, ("argument 'add'", "run:qa", "cannot start")),
        ({"remove": ["run:dev"]}, ("argument 'remove'", "run:dev")),
        ({"add": ["bug"]}, ("argument 'add'", "'bug'", "outside the platform's label groups")),
        ({"add": ["[ai-model-gpt-5.4]"]}, ("argument 'add'", "outside")),
        ({"add": ["mode:discussion"]}, ("argument 'add'", "outside")),
        ({"add": ["state:whatever"]}, ("argument 'add'", "outside")),
        ({"add": ["state:approved"]}, ("argument 'add'", "approval")),
        ({"add": ["need:qa", "run:dev:revise"]}, ("argument 'add'", "run:dev:revise")),
    ],
)
def test_labels_transition_refuses_labels_outside_the_policy(
    em_platform: Platform, arguments: dict[str, Any], needles: tuple[str, ...]
) -> None:
    platform = em_platform  # the role whose tools include the label tools
    _refused(platform, "github_labels_transition", {"token": platform.token, **arguments}, *needles)
    assert sorted(platform.state.labels(REPO, platform.issue)) == ["bug", "run:dev"]
    assert "run.labels.changed" not in platform.event_types()


def test_labels_need_github(em_platform: Platform) -> None:
    platform = em_platform  # the role whose tools include the label tools
    platform.services.credentials = type(platform.services.credentials)()
    _refused(platform, "github_labels_list", {"token": platform.token}, "GitHub is not configured")
    assert "GitHub is not configured" in _last_failure(platform)["reason"]


# -- audit --------------------------------------------------------------------------------------------------------
def test_every_call_is_audited_called_then_outcome(em_platform: Platform) -> None:
    platform = em_platform  # the role whose tools include every tool called here
    calls = [
        ("runs_list", {"token": platform.token}),
        ("docs_search", {"token": platform.token, "query": "cart", "k": 2}),
        ("docs_search", {"token": platform.token, "query": "cart", "k": 0}),
        ("github_labels_list", {"token": platform.token}),
        ("github_labels_transition", {"token": platform.token, "add": ["run:qa"]}),
        ("run_status_report", {"token": platform.token, "status_line": "half way"}),
    ]
    for tool, arguments in calls:
        platform.call(tool, arguments)
    audit = [e for e in platform.events() if e["event_type"].startswith("mcp.tool.")]
    assert len(audit) == 2 * len(calls)
    for (tool, arguments), called, outcome in zip(calls, audit[::2], audit[1::2], strict=True):
        assert called["event_type"] == "mcp.tool.called"
        assert called["payload"]["tool"] == tool and outcome["payload"]["tool"] == tool
        assert called["actor_type"] == "agent"
        assert "token" not in called["payload"]["arguments"]
        assert called["payload"]["arguments"] == {k: v for k, v in arguments.items() if k != "token"}
    outcomes = [e["event_type"].rsplit(".", 1)[1] for e in audit[1::2]]
    assert outcomes == ["succeeded", "succeeded", "failed", "succeeded", "failed", "succeeded"]
    assert audit[3]["payload"]["hits_count"] == 2
    assert "'k'" in audit[5]["payload"]["reason"]


def test_long_arguments_are_audited_by_length(platform: Platform) -> None:
    diff = "+x\n" * 2000
    data_of(platform.call("docs_change_impact", {"token": platform.token, "diff": diff}))
    called = next(e for e in platform.events() if e["event_type"] == "mcp.tool.called")
    assert called["payload"]["arguments"] == {"diff": f"<{len(diff)} characters>"}


def test_no_secret_in_results_or_audit(platform: Platform) -> None:
    leak = f"pushed with {GITHUB_TOKEN} oops"
    platform.call("run_status_report", {"token": platform.token, "status_line": leak})
    em = platform.with_run("run:plan", "em", "plan", 902)  # the label tools are the em role's
    platform.call("github_labels_transition", {"token": em.token, "add": ["need:qa"]})
    platform.call("github_labels_transition", {"token": em.token, "add": [GITHUB_TOKEN]})
    platform.call("docs_search", {"token": platform.token, "query": GITHUB_TOKEN})
    platform.call("runs_list", {"token": platform.token, "secret": SECRET})
    platform.call("runs_list", {"token": platform.token.replace(".", ".x", 1)})
    platform.call("runs_list", {"token": platform.token_for(expires_at=1)})
    platform.call("run_lookup", {"token": platform.token})
    platform.call("run_status_report", {"token": platform.token, "status_line": f"my token is {platform.token}"})
    platform.call("docs_search", {"token": platform.token, "query": platform.token})

    with platform.store.connect() as conn:
        audit = json.dumps([r["payload"] for r in conn.execute("SELECT payload FROM flow_events").fetchall()])
    shown = json.dumps([r.model_dump(mode="json") for r in platform.results])
    comments = json.dumps(platform.state.comments(REPO, platform.issue))
    for text in (audit, shown, comments):
        assert SECRET not in text
        assert GITHUB_TOKEN not in text
    # The run token is a credential too: never in the audit trail, a result, or the thread.
    for text in (audit, shown, comments):
        assert platform.token not in text
    assert "[redacted]" in comments and "[redacted]" in audit
