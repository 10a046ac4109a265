"""The label tool and the labels that start or approve runs, and the labels a person set.

The tool writes with the platform's own GitHub credential: every label that starts or approves a run (the domain's
`run_effect`, the same list the intake decides by) is refused to an agent both ways, naming the label; and an agent
takes off only `need:<its role>` and what its own run put, never a person's `state:blocked`, `need:input`, …"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from mcp import Client

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.domain.decisions import run_effect
from codexk8s_pipelines.domain.labels import DEFAULT_SCHEME
from codexk8s_pipelines.mcp.tools import McpServices

from .conftest import REPO, Platform, data_of, text_of

OVERRIDE = "budget:override"
RUN_LABELS = [n for n in [*DEFAULT_SCHEME.all_labels(), OVERRIDE] if run_effect(n, DEFAULT_SCHEME, OVERRIDE)]


def _transition(platform: Platform, **arguments: Any) -> Any:
    return platform.call("github_labels_transition", {"token": platform.token, **arguments})


def test_every_label_that_starts_or_approves_runs_is_refused_both_ways_by_name(em_platform: Platform) -> None:
    platform = em_platform  # the role whose tools include the label tools
    pr = platform.state.add_pull(REPO, "Fix checkout", head=f"codex/issue-{platform.issue}", labels=["need:reviewer"])
    platform.token = platform.token_for(pr_number=pr)
    assert {"need:reviewer", "state:approved", OVERRIDE, "run:dev", "run:dev:revise"} <= set(RUN_LABELS)

    async def both_ways(client: Client, label: str) -> list[tuple[str, str, Any]]:
        out = []
        for change in ("add", "remove"):
            args = {"token": platform.token, change: [label], "number": pr}
            out.append((label, change, await client.call_tool("github_labels_transition", args)))
        return out

    # A server per label: the calls stay far within the server's per-token rate limit.
    results = [r for label in RUN_LABELS for r in platform.run(lambda client, label=label: both_ways(client, label))]
    for label, change, result in results:
        assert result.is_error, (label, change)
        assert f"argument '{change}'" in text_of(result) and f"'{label}'" in text_of(result), text_of(result)
    assert platform.state.labels(REPO, pr) == ["need:reviewer"]  # a person's request, still there
    assert [e for e in platform.state.events(REPO, pr) if e["event"] in ("labeled", "unlabeled")] == []
    assert "run.labels.changed" not in platform.event_types()


def test_a_configured_override_label_is_refused_though_it_looks_like_a_need(em_platform: Platform) -> None:
    """The override label is configurable; one in the need group still starts a held run, so it is refused too."""
    path = Path(os.environ["CODEXK8S_CONFIG"])
    path.write_text(path.read_text() + "budgets:\n  override_label: need:sre\n")
    load_config_from_environment.cache_clear()
    em_platform.services = dataclasses.replace(em_platform.services, **_fresh(McpServices.from_environment()))
    result = _transition(em_platform, add=["need:sre"])
    assert result.is_error and "'need:sre' is the budgets' override label" in text_of(result), text_of(result)
    assert "need:sre" not in em_platform.state.labels(REPO, em_platform.issue)


def _fresh(services: McpServices) -> dict[str, Any]:
    """What the server reads from the configuration: its label names and the budgets' override label."""
    return {"labels": services.labels, "budget_override_label": services.budget_override_label}


def test_an_agent_takes_off_only_its_roles_need_and_its_own_labels(em_platform: Platform) -> None:
    platform = em_platform  # an em (plan) run's agent
    human = ["state:blocked", "state:abandoned", "state:superseded", "need:input", "need:pm", "need:em"]
    for label in human:
        platform.state.label(REPO, platform.issue, label, actor="alice")
    for label in human[:-1]:
        result = _transition(platform, remove=[label])
        assert result.is_error and "argument 'remove'" in text_of(result), text_of(result)
        assert f"'{label}' was not put here by this run" in text_of(result) and "need:em" in text_of(result)
    # Adding a label a person had already set does not make it the agent's.
    data_of(_transition(platform, add=["state:blocked", "need:qa"]))
    result = _transition(platform, remove=["state:blocked"])
    assert result.is_error and "'state:blocked' was not put here by this run" in text_of(result)
    # A refused removal changes nothing, not even the labels added in the same call.
    result = _transition(platform, add=["need:sre"], remove=["need:input", "need:qa"])
    assert result.is_error and "'need:input'" in text_of(result)
    assert "need:sre" not in platform.state.labels(REPO, platform.issue)
    # Its role's need (a person's request to the em) and the label its run put: taken off.
    data = data_of(_transition(platform, remove=["need:em", "need:qa"]))
    assert data["removed"] == ["need:em", "need:qa"]
    assert set(platform.state.labels(REPO, platform.issue)) == {"run:dev", "bug", *human[:-1]}
    # Another run of the same issue does not own what this one put.
    other = platform.with_run("run:release", "em", "release", 903)
    data_of(_transition(platform, add=["need:km"]))
    result = _transition(other, remove=["need:km"])
    assert result.is_error and "'need:km' was not put here by this run" in text_of(result)
    # A label the run put, that a person then took off and put back, is the person's again (review 39).
    data_of(_transition(platform, add=["need:sa"]))
    platform.state.unlabel(REPO, platform.issue, "need:sa", actor="alice")
    platform.state.label(REPO, platform.issue, "need:sa", actor="alice")
    result = _transition(platform, remove=["need:sa"])
    assert result.is_error and "'need:sa' was not put here by this run" in text_of(result)
    assert "need:sa" in platform.state.labels(REPO, platform.issue)


def test_a_change_github_fails_half_way_is_audited_as_made_and_the_agent_can_undo_it(em_platform: Platform) -> None:
    """The label was added, then removing another failed (a 502): the call raised before its `run.labels.changed`
    row, so the audit had no change and the run did not own the label it put — the agent could not take it off
    again (review 41). Now the row says what was made and what failed, and so does the reply."""
    platform = em_platform
    platform.state.label(REPO, platform.issue, "need:em", actor="alice")
    platform.state.inject("502", method="DELETE", path_regex="/labels/", times=None)
    result = _transition(platform, add=["state:blocked"], remove=["need:em"])
    message = text_of(result)
    assert result.is_error and "GitHub answered 502" in message, message
    assert "before that, added state:blocked" in message, message
    assert "state:blocked" in platform.state.labels(REPO, platform.issue)
    (changed,) = [e["payload"] for e in platform.events() if e["event_type"] == "run.labels.changed"]
    assert changed["added"] == {str(platform.issue): ["state:blocked"]} and changed["put"] == ["state:blocked"]
    assert changed["removed"] == [] and "502" in changed["error"]

    platform.state.clear_faults()
    data = data_of(_transition(platform, remove=["state:blocked", "need:em"]))  # its own label, and its role's need
    assert data["removed"] == ["state:blocked", "need:em"]
    assert "state:blocked" not in platform.state.labels(REPO, platform.issue)


def test_a_change_github_refuses_at_once_is_audited_as_nothing_made(em_platform: Platform) -> None:
    platform = em_platform
    platform.state.inject("502", method="POST", path_regex="/labels", times=None)
    result = _transition(platform, add=["state:blocked"])
    assert result.is_error and "no label was changed" in text_of(result), text_of(result)
    assert "run.labels.changed" not in platform.event_types()
