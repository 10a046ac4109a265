"""The labels that start or approve runs, what an agent may do to labels, and the platform's own account.

An agent changes labels through the platform's own GitHub credential: a label that starts a run, put by it, was a
run an agent started (`need:reviewer` toggled on a PR started one reviewer run per toggle). These tests pin that
the one list of such labels (`run_effect`) is the decisions' own, that agents can touch none of them, that an agent
takes off only its own labels, and that the decisions refuse such a label from the platform's own account."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from codexk8s_pipelines.domain.agent_labels import (
    LabelRefused,
    agent_label,
    agent_usable,
    labels_put_by_run,
    removal_refusal,
)
from codexk8s_pipelines.domain.decisions import (
    Decision,
    DecisionKind,
    IssueLabelEvent,
    PendingApproval,
    PullRequestLabelEvent,
    PullRequestReviewEvent,
    Reason,
    RunEffect,
    decide_approval,
    decide_budget_override,
    decide_issue_label,
    decide_pull_request_label,
    decide_review,
    run_effect,
)
from codexk8s_pipelines.domain.labels import DEFAULT_SCHEME, LabelScheme
from codexk8s_pipelines.domain.rules import Actor, Rules
from codexk8s_pipelines.domain.stages import Permission

ADMIN = Actor("alice", "User", Permission.ADMIN)
# The platform's credential is a person's token (its owner an admin): every label it puts reads as theirs.
PLATFORM_PAT = Actor("maint", "User", Permission.ADMIN, platform_account=True)
PLATFORM_APP = Actor("codexk8s[bot]", "Bot", platform_account=True)
OVERRIDE = "budget:override"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _candidates(scheme: LabelScheme) -> list[str]:
    """Every label the platform knows, the override label, and a few it does not."""
    return [*scheme.all_labels(), OVERRIDE, "run:nope", "run:rethink:revise", "bug", "state:whatever", "need:dev"]


def _reacts(label: str, rules: Rules) -> bool:
    """Whether the label decisions answer `label`, added by an admin, with anything but "not a trigger label"."""
    issue = decide_issue_label(IssueLabelEvent((), label, ADMIN), rules)
    pull = decide_pull_request_label(PullRequestLabelEvent((), label, ADMIN), rules)
    return any(d.reason is not Reason.NOT_A_TRIGGER_LABEL for d in (issue, pull))


# -- the one list ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "scheme",
    [DEFAULT_SCHEME, LabelScheme(stage_overrides={"dev": "ship-it", "qa:revise": "qa-again"}, need_prefix="needs/")],
    ids=["default", "custom-names"],
)
def test_every_label_the_decisions_answer_has_a_run_effect_and_is_refused_to_agents(scheme: LabelScheme) -> None:
    rules = Rules(labels=scheme)
    reacting = [label for label in _candidates(scheme) if _reacts(label, rules)]
    assert scheme.need_reviewer in reacting and scheme.run_label("dev") in reacting  # the list is not empty
    for label in reacting:
        assert run_effect(label, scheme, OVERRIDE) in (RunEffect.TRIGGER, RunEffect.REVIEWER), label
        with pytest.raises(LabelRefused, match=label):
            agent_label(label, scheme, OVERRIDE)
    for label in agent_usable(scheme, OVERRIDE):  # what an agent may use, the decisions never answer
        assert not _reacts(label, rules), label
        assert run_effect(label, scheme, OVERRIDE) is None
        assert agent_label(label.upper(), scheme, OVERRIDE) == label


def test_approvals_and_the_override_label_are_run_effects_too() -> None:
    assert run_effect("State:Approved", DEFAULT_SCHEME, OVERRIDE) is RunEffect.APPROVAL
    assert run_effect(" budget:override ", DEFAULT_SCHEME, OVERRIDE) is RunEffect.BUDGET_OVERRIDE
    assert run_effect("need:reviewer", DEFAULT_SCHEME, OVERRIDE) is RunEffect.REVIEWER
    assert run_effect("run:dev:revise", DEFAULT_SCHEME, OVERRIDE) is RunEffect.TRIGGER
    assert run_effect("state:blocked", DEFAULT_SCHEME, OVERRIDE) is None
    assert set(agent_usable(DEFAULT_SCHEME, OVERRIDE)) == {
        "state:in-review", "state:blocked", "state:superseded", "state:abandoned",
        "need:input", "need:pm", "need:sa", "need:qa", "need:sre", "need:em", "need:km",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("run:qa", "agents cannot start or stop runs"),
        ("Need:Reviewer", "agents cannot start runs"),
        ("state:approved", "only a human can give or take it back"),
        ("budget:override", "only an approver"),
        ("bug", "outside the platform's label groups"),
        ("[ai-model-gpt-5.4]", "outside"),
        ("mode:discussion", "outside"),
    ],
)
def test_agent_label_refusals_name_the_label_and_say_why(label: str, why: str) -> None:
    with pytest.raises(LabelRefused) as refused:
        agent_label(label, DEFAULT_SCHEME, OVERRIDE)
    assert f"'{label}'" in str(refused.value) and why in str(refused.value)


def test_a_configured_override_label_inside_the_need_group_is_refused() -> None:
    """The override label is configurable: one that happens to be a platform label still starts a held run."""
    with pytest.raises(LabelRefused, match="'need:sre' is the budgets' override label"):
        agent_label("need:sre", DEFAULT_SCHEME, "need:sre")
    assert "need:sre" not in agent_usable(DEFAULT_SCHEME, "need:sre")


# -- what an agent takes off ----------------------------------------------------------------------------------
def test_an_agent_removes_only_its_roles_need_and_what_its_run_put() -> None:
    assert removal_refusal("need:em", DEFAULT_SCHEME, "em", set()) is None
    assert removal_refusal("state:blocked", DEFAULT_SCHEME, "em", {"state:blocked"}) is None
    for label in ("state:blocked", "state:abandoned", "state:superseded", "need:input", "need:pm", "state:in-review"):
        problem = removal_refusal(label, DEFAULT_SCHEME, "em", {"need:qa"})
        assert problem is not None and f"'{label}'" in problem and "need:em" in problem
    problem = removal_refusal("need:em", DEFAULT_SCHEME, None, set())  # a run whose role nobody knows
    assert problem is not None and "labels its own run added" in problem


def test_labels_put_by_run_follows_the_runs_own_changes_on_that_item() -> None:
    changes = [
        {"number": 7, "put": ["state:blocked", "need:qa"], "removed": [], "via": "mcp"},
        {"number": 8, "put": ["need:sre"], "removed": [], "via": "mcp"},  # another item of the run
        {"number": 7, "put": [], "removed": ["need:qa"], "via": "mcp"},  # taken off again: no longer its own
        {"number": 7, "added": {"7": ["need:input"]}, "removed": [], "via": "mcp"},  # added, but already there
        {"number": 7, "put": ["need:km"], "removed": []},  # not the label tool's row
    ]
    assert labels_put_by_run(changes, 7) == {"state:blocked"}
    assert labels_put_by_run(changes, 8) == {"need:sre"}


# -- the platform's own account -------------------------------------------------------------------------------
@pytest.mark.parametrize("actor", [PLATFORM_PAT, PLATFORM_APP], ids=["person-token", "app"])
@pytest.mark.parametrize("label", ["need:reviewer", "run:dev"])
def test_the_platforms_own_label_on_a_pull_request_starts_nothing(actor: Actor, label: str) -> None:
    decision = decide_pull_request_label(PullRequestLabelEvent((), label, actor), Rules())
    assert (decision.kind, decision.reason) == (DecisionKind.IGNORED, Reason.PLATFORM_ACCOUNT)
    assert decision.trigger_label == label and f"{actor.login} is the account the platform" in decision.message


@pytest.mark.parametrize("actor", [PLATFORM_PAT, PLATFORM_APP], ids=["person-token", "app"])
@pytest.mark.parametrize("label", ["run:dev", "run:nope"])
def test_the_platforms_own_trigger_label_on_an_issue_starts_nothing(actor: Actor, label: str) -> None:
    decision = decide_issue_label(IssueLabelEvent((), label, actor), Rules())
    assert (decision.kind, decision.reason) == (DecisionKind.IGNORED, Reason.PLATFORM_ACCOUNT)


@pytest.mark.parametrize("actor", [PLATFORM_PAT, PLATFORM_APP], ids=["person-token", "app"])
def test_but_its_label_on_an_issue_it_prepared_still_starts_the_run(actor: Actor) -> None:
    prepared = Actor(actor.login, actor.type, actor.permission, platform_prepared=True, platform_account=True)
    decision = decide_issue_label(IssueLabelEvent((), "run:self-improve", prepared), Rules())
    assert decision.runs and decision.job_name == "stage_self_improve"


def test_the_platforms_own_account_neither_approves_nor_overrides_a_budget() -> None:
    pending = PendingApproval("release", False, T0, "run:release")
    approval = decide_approval(pending, PLATFORM_PAT, T0, Rules())
    assert (approval.reason, approval.trigger_label, approval.stage) == (
        Reason.PLATFORM_ACCOUNT, "run:release", "release",
    )  # fmt: skip
    assert decide_approval(pending, ADMIN, T0, Rules()).runs
    held = decide_issue_label(IssueLabelEvent((), "run:dev", ADMIN), Rules())
    override = decide_budget_override(held, PLATFORM_PAT, Rules())
    assert isinstance(override, Decision) and override is not held
    assert (override.reason, override.trigger_label) == (Reason.PLATFORM_ACCOUNT, "run:dev")
    assert decide_budget_override(held, ADMIN, Rules()) is held


def test_a_person_is_unchanged_and_reviews_are_not_labels() -> None:
    """A person's need:reviewer still starts the reviewer run; a review by the platform's account (a person's token:
    that person reviewing) is not a label an agent could put, and is decided as before."""
    assert decide_pull_request_label(PullRequestLabelEvent((), "need:reviewer", ADMIN), Rules()).runs
    review = PullRequestReviewEvent("changes_requested", PLATFORM_PAT, pr_labels=("run:dev",))
    assert decide_review(review, Rules()).runs
