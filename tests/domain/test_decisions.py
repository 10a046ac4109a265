"""Trigger decisions for issue labels, PR labels, PR reviews and approvals."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from codexk8s_pipelines.config.models import PlatformConfig
from codexk8s_pipelines.domain.decisions import (
    Decision,
    DecisionKind,
    IssueLabelEvent,
    PendingApproval,
    PullRequestLabelEvent,
    PullRequestReviewEvent,
    Reason,
    approval_expired,
    decide_approval,
    decide_budget_override,
    decide_issue_label,
    decide_pull_request_label,
    decide_review,
)
from codexk8s_pipelines.domain.rules import DEFAULT_RULES, Actor, Rules, TriggerPolicy
from codexk8s_pipelines.domain.stages import STAGE_NAMES, ApprovalRule, Permission

HUMAN = Actor("alice", "User", Permission.WRITE)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# stage → role, job, runtime profile, write scope (spelled out, not read from the catalog under test)
EXPECTED = {
    "intake": ("pm", "stage_intake", "code-only", "markdown-only"),
    "vision": ("pm", "stage_vision", "code-only", "markdown-only"),
    "prd": ("pm", "stage_prd", "code-only", "markdown-only"),
    "arch": ("sa", "stage_arch", "code-only", "markdown-only"),
    "design": ("sa", "stage_design", "code-only", "markdown-only"),
    "plan": ("em", "stage_plan", "code-only", "markdown-only"),
    "dev": ("dev", "stage_dev", "full-env", "any-file"),
    "qa": ("qa", "stage_qa", "full-env", "markdown-only"),
    "release": ("em", "stage_release", "full-env", "markdown-only"),
    "postdeploy": ("sre", "stage_postdeploy", "production-readonly", "markdown-only"),
    "ops": ("sre", "stage_ops", "production-readonly", "markdown-only"),
    "doc-audit": ("km", "stage_doc_audit", "code-only", "markdown-only"),
    "self-improve": ("km", "stage_self_improve", "code-only", "prompts-and-docs"),
    "rethink": ("em", "stage_rethink", "code-only", "markdown-only"),
}
TRIGGERS = [(s, r) for s in STAGE_NAMES for r in (False, True) if not r or s != "rethink"]
REVISE_STAGES = [s for s in STAGE_NAMES if s != "rethink"]


def run_label(stage: str, revise: bool = False) -> str:
    return f"run:{stage}:revise" if revise else f"run:{stage}"


def on_issue(
    added: str,
    *labels: str,
    actor: Actor = HUMAN,
    dev: bool = False,
    rules: Rules = DEFAULT_RULES,
) -> Decision:
    return decide_issue_label(IssueLabelEvent(tuple(labels), added, actor, dev), rules)


def on_pr(added: str, *labels: str, actor: Actor = HUMAN, rules: Rules = DEFAULT_RULES) -> Decision:
    return decide_pull_request_label(PullRequestLabelEvent(tuple(labels), added, actor), rules)


def review(
    pr: tuple[str, ...] = (),
    issue: tuple[str, ...] = (),
    history: tuple[str, ...] = (),
    state: str = "changes_requested",
    actor: Actor = HUMAN,
    rules: Rules = DEFAULT_RULES,
    head_elsewhere: bool = False,
) -> Decision:
    return decide_review(PullRequestReviewEvent(state, actor, pr, issue, history, head_elsewhere), rules)


def rules_with_approval(stage: str, rule: ApprovalRule) -> Rules:
    stages = dict(DEFAULT_RULES.stages)
    stages[stage] = replace(stages[stage], approval=rule)
    return replace(DEFAULT_RULES, stages=stages)


RELEASE_APPROVAL = ApprovalRule(required=True, min_permission=Permission.MAINTAIN, approvers=frozenset({"boss"}))
RELEASE_RULES = rules_with_approval("release", RELEASE_APPROVAL)


def pending(revise: bool = False, requested_at: datetime = T0, model: str | None = "gpt-5.2", reasoning="low"):
    return PendingApproval("release", revise, requested_at, run_label("release", revise), model, reasoning)


# -- issue labels: every trigger ----------------------------------------------------------------------------
@pytest.mark.parametrize(("stage", "revise"), TRIGGERS, ids=[run_label(s, r) for s, r in TRIGGERS])
def test_every_trigger_label_runs_its_stage(stage: str, revise: bool) -> None:
    label = run_label(stage, revise)
    d = on_issue(label, label, dev=stage in ("qa", "release"))
    role, job, profile, scope = EXPECTED[stage]
    assert d.kind is DecisionKind.RUN
    assert d.runs
    assert d.reason is Reason.TRIGGER_LABEL
    assert (d.stage, d.revise, d.role, d.job_name, d.profile, d.write_scope) == (
        stage,
        revise,
        role,
        job,
        profile,
        scope,
    )
    assert d.trigger_label == label
    assert (d.model, d.reasoning) == ("gpt-5.4", "high")
    assert d.discussion is False
    assert d.approvers is None


@pytest.mark.parametrize("stage", [s for s in STAGE_NAMES if s not in ("qa", "release")])
def test_stages_other_than_qa_release_run_without_a_dev_run(stage: str) -> None:
    assert on_issue(run_label(stage), dev=False).runs


def test_added_label_need_not_be_listed_yet() -> None:
    d = on_issue("run:plan", "bug")
    assert d.runs
    assert d.stage == "plan"


def test_trigger_label_is_trimmed_and_case_insensitive() -> None:
    d = on_issue("  RUN:Dev:Revise ", "bug")
    assert d.runs
    assert (d.stage, d.revise, d.trigger_label) == ("dev", True, "run:dev:revise")


def test_same_label_twice_in_different_case_is_not_a_conflict() -> None:
    assert on_issue("run:dev", "Run:Dev", "run:dev").runs


def test_run_message_names_label_actor_and_job() -> None:
    d = on_issue("run:dev")
    assert "run:dev" in d.message
    assert "alice" in d.message
    assert "stage_dev" in d.message


# -- issue labels: not triggers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "label", ["bug", "state:approved", "state:in-review", "need:reviewer", "need:input", "[ai-model-gpt-5.4]"]
)
def test_non_trigger_label_is_ignored(label: str) -> None:
    d = on_issue(label, "run:dev", label)
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.NOT_A_TRIGGER_LABEL
    assert d.labels == (label,)
    assert not d.runs


@pytest.mark.parametrize("label", ["run:unknown", "run:rethink:revise", "Run:Deploy"])
def test_run_label_naming_no_stage_is_unknown_trigger(label: str) -> None:
    d = on_issue(label, label)
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.UNKNOWN_TRIGGER_LABEL
    assert d.labels == (label,)
    assert set(d.suggested_labels) == {run_label(s, r) for s, r in TRIGGERS}
    assert list(d.suggested_labels) == sorted(d.suggested_labels)
    assert "run:rethink:revise" not in d.suggested_labels


# -- issue labels: conflicts ------------------------------------------------------------------------------
def test_two_run_labels_conflict() -> None:
    d = on_issue("run:dev", "run:plan", "run:dev")
    assert d.kind is DecisionKind.CONFLICT
    assert d.reason is Reason.MULTIPLE_TRIGGER_LABELS
    assert d.labels == ("run:dev", "run:plan")
    assert "run:dev" in d.message and "run:plan" in d.message
    assert d.stage is None
    assert not d.runs


def test_three_run_labels_conflict_sorted_case_insensitively() -> None:
    d = on_issue("run:dev", "run:qa", "RUN:Arch")
    assert d.reason is Reason.MULTIPLE_TRIGGER_LABELS
    assert d.labels == ("RUN:Arch", "run:dev", "run:qa")


def test_run_label_with_its_revise_label_conflicts() -> None:
    d = on_issue("run:dev:revise", "run:dev")
    assert d.reason is Reason.MULTIPLE_TRIGGER_LABELS
    assert d.labels == ("run:dev", "run:dev:revise")


def test_unknown_run_label_on_issue_counts_for_conflicts() -> None:
    d = on_issue("run:dev", "run:unknown")
    assert d.reason is Reason.MULTIPLE_TRIGGER_LABELS
    assert d.labels == ("run:dev", "run:unknown")


def test_two_model_labels_conflict() -> None:
    d = on_issue("run:dev", "[ai-model-gpt-5.4]", "[ai-model-gpt-5.2]")
    assert d.kind is DecisionKind.CONFLICT
    assert d.reason is Reason.MULTIPLE_MODEL_LABELS
    assert d.labels == ("[ai-model-gpt-5.2]", "[ai-model-gpt-5.4]")


def test_two_reasoning_labels_conflict() -> None:
    d = on_issue("run:dev", "[ai-reasoning-low]", "[ai-reasoning-high]")
    assert d.kind is DecisionKind.CONFLICT
    assert d.reason is Reason.MULTIPLE_REASONING_LABELS
    assert d.labels == ("[ai-reasoning-high]", "[ai-reasoning-low]")


def test_unknown_model_label_conflicts() -> None:
    d = on_issue("run:dev", "[ai-model-gpt-9]")
    assert d.kind is DecisionKind.CONFLICT
    assert d.reason is Reason.UNKNOWN_MODEL_LABEL
    assert d.labels == ("[ai-model-gpt-9]",)
    assert "[ai-model-gpt-5.4]" in d.message  # the message lists the known models


def test_unknown_reasoning_label_conflicts() -> None:
    d = on_issue("run:dev", "[ai-reasoning-max]")
    assert d.kind is DecisionKind.CONFLICT
    assert d.reason is Reason.UNKNOWN_REASONING_LABEL
    assert d.labels == ("[ai-reasoning-max]",)
    assert "[ai-reasoning-extra-high]" in d.message


def test_model_and_reasoning_labels_are_chosen() -> None:
    d = on_issue("run:dev", "[AI-Model-GPT-5.2-Codex]", " [ai-reasoning-low] ")
    assert d.runs
    assert (d.model, d.reasoning) == ("gpt-5.2-codex", "low")


def test_only_model_label_keeps_default_reasoning() -> None:
    d = on_issue("run:dev", "[ai-model-gpt-5.1-codex-mini]")
    assert (d.model, d.reasoning) == ("gpt-5.1-codex-mini", "high")


def test_defaults_come_from_rules() -> None:
    rules = replace(DEFAULT_RULES, default_model="gpt-5.2", default_reasoning="medium")
    d = on_issue("run:plan", rules=rules)
    assert (d.model, d.reasoning) == ("gpt-5.2", "medium")


def test_defaults_and_known_models_from_platform_config() -> None:
    rules = PlatformConfig(
        models={"default": "house-model", "reasoning": "deep", "known": ["house-model"], "reasoning_levels": ["deep"]}
    ).rules()
    d = on_issue("run:plan", rules=rules)
    assert (d.model, d.reasoning) == ("house-model", "deep")
    assert on_issue("run:plan", "[ai-model-gpt-5.4]", rules=rules).reason is Reason.UNKNOWN_MODEL_LABEL
    assert on_issue("run:plan", "[ai-reasoning-high]", rules=rules).reason is Reason.UNKNOWN_REASONING_LABEL


# -- issue labels: who may trigger --------------------------------------------------------------------------
REFUSED_ACTORS = [
    pytest.param(Actor("renovate", "Bot", Permission.ADMIN), id="bot-type"),
    pytest.param(Actor("ci-helper[bot]", "User", Permission.ADMIN), id="login-ends-with-bot"),
    pytest.param(Actor("some-app", "Organization", Permission.ADMIN), id="organization-type"),
    pytest.param(Actor("bob", "User", Permission.READ), id="read"),
    pytest.param(Actor("bob", "User", Permission.TRIAGE), id="triage"),
    pytest.param(Actor("bob", "User", Permission.NONE), id="none"),
    pytest.param(Actor("bob", "User", None), id="permission-unknown"),
    pytest.param(Actor("  ", "User", Permission.ADMIN), id="no-login"),
]


@pytest.mark.parametrize("actor", REFUSED_ACTORS)
def test_actor_not_permitted_on_issue(actor: Actor) -> None:
    d = on_issue("run:dev", "run:dev", actor=actor)
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.ACTOR_NOT_PERMITTED
    assert d.stage == "dev"
    assert d.trigger_label == "run:dev"
    assert d.message


@pytest.mark.parametrize("actor", REFUSED_ACTORS)
def test_actor_not_permitted_on_pull_request(actor: Actor) -> None:
    d = on_pr("need:reviewer", actor=actor)
    assert (d.kind, d.reason) == (DecisionKind.IGNORED, Reason.ACTOR_NOT_PERMITTED)


@pytest.mark.parametrize("actor", REFUSED_ACTORS)
def test_actor_not_permitted_on_review(actor: Actor) -> None:
    d = review(pr=("run:dev",), actor=actor)
    assert (d.kind, d.reason) == (DecisionKind.IGNORED, Reason.ACTOR_NOT_PERMITTED)


@pytest.mark.parametrize("permission", [Permission.WRITE, Permission.MAINTAIN, Permission.ADMIN])
def test_write_or_better_may_trigger(permission: Permission) -> None:
    assert on_issue("run:dev", actor=Actor("bob", "User", permission)).runs


def test_refusal_messages_say_why() -> None:
    assert "only humans" in on_issue("run:dev", actor=Actor("renovate", "Bot", Permission.ADMIN)).message
    msg = on_issue("run:dev", actor=Actor("bob", "User", Permission.READ)).message
    assert "bob" in msg and "read" in msg and "write" in msg
    assert "unknown" in on_issue("run:dev", actor=Actor("bob", "User", None)).message


@pytest.mark.parametrize("login", ["carol", "Carol", " CAROL "])
@pytest.mark.parametrize("permission", [Permission.READ, None])
def test_allow_listed_login_runs_with_read_permission(login: str, permission: Permission | None) -> None:
    rules = replace(DEFAULT_RULES, policy=TriggerPolicy(allow_logins=frozenset({"carol"})))
    assert on_issue("run:dev", actor=Actor(login, "User", permission), rules=rules).runs


def test_allow_list_from_platform_config_is_case_insensitive() -> None:
    rules = PlatformConfig(triggers={"allow_logins": ["Carol"]}).rules()
    assert on_issue("run:dev", actor=Actor("carol", "User", Permission.READ), rules=rules).runs


def test_allow_list_configured_in_mixed_case_in_code() -> None:
    rules = replace(DEFAULT_RULES, policy=TriggerPolicy(allow_logins=frozenset({"Carol"})))
    assert on_issue("run:dev", actor=Actor("carol", "User", Permission.READ), rules=rules).runs


def test_allow_listed_bot_is_still_refused() -> None:
    rules = replace(DEFAULT_RULES, policy=TriggerPolicy(allow_logins=frozenset({"helper[bot]", "helper"})))
    assert on_issue("run:dev", actor=Actor("helper[bot]", "User", None), rules=rules).reason is (
        Reason.ACTOR_NOT_PERMITTED
    )
    assert on_issue("run:dev", actor=Actor("helper", "Bot", None), rules=rules).reason is Reason.ACTOR_NOT_PERMITTED


def test_min_permission_is_configurable() -> None:
    rules = PlatformConfig(triggers={"min_permission": "maintain"}).rules()
    assert on_issue("run:dev", actor=Actor("bob", "User", Permission.WRITE), rules=rules).reason is (
        Reason.ACTOR_NOT_PERMITTED
    )
    assert on_issue("run:dev", actor=Actor("bob", "User", Permission.MAINTAIN), rules=rules).runs


def test_bot_with_conflicting_labels_is_refused_before_the_conflict() -> None:
    d = on_issue("run:dev", "run:plan", actor=Actor("renovate", "Bot", Permission.ADMIN))
    assert d.reason is Reason.ACTOR_NOT_PERMITTED


# -- qa / release need a dev run ----------------------------------------------------------------------------
@pytest.mark.parametrize(("stage", "revise"), [("qa", False), ("qa", True), ("release", False), ("release", True)])
def test_late_stage_without_dev_run_is_ignored(stage: str, revise: bool) -> None:
    label = run_label(stage, revise)
    d = on_issue(label, label, dev=False)
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.DEV_RUN_MISSING
    assert (d.stage, d.revise, d.trigger_label) == (stage, revise, label)
    assert d.add_labels == ("need:input",)
    assert d.suggested_labels == ("run:dev", "run:dev:revise")
    assert "run:dev" in d.message


# -- mode:discussion ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["intake", "dev", "self-improve"])
def test_discussion_mode_run_is_read_only(stage: str) -> None:
    d = on_issue(run_label(stage), "mode:discussion")
    assert d.runs
    assert d.reason is Reason.TRIGGER_LABEL
    assert d.discussion is True
    assert d.write_scope == "none"
    assert d.stage == stage
    assert d.role == EXPECTED[stage][0]


@pytest.mark.parametrize("stage", ["dev", "postdeploy"])
def test_discussion_mode_run_uses_code_only_runtime(stage: str) -> None:
    # Reference 1c/3g: a discussion run's runtime mode is forced to code-only (no environment, no prod access).
    d = on_issue(run_label(stage), " MODE:Discussion")
    assert d.discussion is True
    assert d.profile == "code-only"


# -- custom trigger labels ----------------------------------------------------------------------------------
def test_custom_trigger_label_from_platform_config() -> None:
    rules = PlatformConfig(stages={"dev": {"label": "go:dev"}}).rules()
    d = on_issue("Go:Dev", rules=rules)
    assert d.runs
    assert (d.stage, d.revise, d.trigger_label, d.job_name) == ("dev", False, "go:dev", "stage_dev")
    old = on_issue("run:dev", rules=rules)
    assert old.reason is Reason.UNKNOWN_TRIGGER_LABEL
    assert "go:dev" in old.suggested_labels
    assert on_issue("go:dev", "run:plan", rules=rules).reason is Reason.MULTIPLE_TRIGGER_LABELS


# -- pull request labels ------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["need:reviewer", "  NEED:Reviewer "])
def test_need_reviewer_on_pr_starts_reviewer_run(label: str) -> None:
    d = on_pr(label, "state:in-review")
    assert d.kind is DecisionKind.RUN
    assert d.reason is Reason.REVIEWER_REQUESTED
    assert d.role == "reviewer"
    assert d.job_name == "stage_reviewer"
    assert d.write_scope == "none"
    assert d.profile == "code-only"
    assert d.stage is None
    assert d.trigger_label == label.strip()
    assert (d.model, d.reasoning) == ("gpt-5.4", "high")


def test_reviewer_run_uses_pr_model_labels() -> None:
    d = on_pr("need:reviewer", "[ai-model-gpt-5.3-codex]", "[ai-reasoning-extra-high]")
    assert (d.model, d.reasoning) == ("gpt-5.3-codex", "extra-high")


def test_reviewer_run_with_two_model_labels_conflicts() -> None:
    d = on_pr("need:reviewer", "[ai-model-gpt-5.3-codex]", "[ai-model-gpt-5.2]")
    assert (d.kind, d.reason) == (DecisionKind.CONFLICT, Reason.MULTIPLE_MODEL_LABELS)


@pytest.mark.parametrize("label", ["run:dev", "run:dev:revise", "RUN:QA", "run:unknown"])
def test_run_label_on_pull_request_is_ignored(label: str) -> None:
    d = on_pr(label, label)
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.RUN_LABEL_ON_PULL_REQUEST
    assert d.labels == (label,)
    assert "need:reviewer" in d.message


@pytest.mark.parametrize("label", ["bug", "need:input", "need:qa", "state:approved", "mode:discussion"])
def test_other_labels_on_pull_request_are_not_triggers(label: str) -> None:
    d = on_pr(label)
    assert (d.kind, d.reason) == (DecisionKind.IGNORED, Reason.NOT_A_TRIGGER_LABEL)
    assert d.labels == (label,)


# -- reviews ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["approved", "APPROVED", "commented", "dismissed", "pending", ""])
def test_review_other_than_changes_requested_is_ignored(state: str) -> None:
    d = review(pr=("run:dev",), state=state)
    assert (d.kind, d.reason) == (DecisionKind.IGNORED, Reason.REVIEW_NOT_CHANGES_REQUESTED)


@pytest.mark.parametrize("state", ["changes_requested", "CHANGES_REQUESTED", " Changes Requested "])
def test_changes_requested_spellings(state: str) -> None:
    assert review(pr=("run:dev",), state=state).runs


@pytest.mark.parametrize("stage", REVISE_STAGES)
@pytest.mark.parametrize("revise", [False, True])
def test_review_revises_the_stage_labelled_on_the_pr(stage: str, revise: bool) -> None:
    d = review(pr=(run_label(stage, revise), "state:in-review"))
    role, job, profile, scope = EXPECTED[stage]
    assert d.kind is DecisionKind.RUN
    assert d.reason is Reason.REVIEW_CHANGES_REQUESTED
    assert (d.stage, d.revise, d.trigger_label) == (stage, True, run_label(stage, True))
    assert (d.role, d.job_name, d.profile, d.write_scope) == (role, job, profile, scope)
    assert d.resolved_from == "pr_labels"


def test_run_and_revise_label_of_one_stage_on_pr_is_one_stage() -> None:
    d = review(pr=("run:dev", "run:dev:revise"))
    assert d.runs and d.stage == "dev"


def test_two_stages_on_pr_are_ambiguous() -> None:
    d = review(pr=("run:qa", "run:dev"), issue=("run:plan",), history=("dev",))
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.STAGE_AMBIGUOUS
    assert d.add_labels == ("need:input",)
    assert set(d.labels) == {"run:dev:revise", "run:qa:revise"}
    assert set(d.suggested_labels) == {"run:dev:revise", "run:qa:revise"}
    assert d.resolved_from == "pr_labels"


def test_two_stages_on_issue_are_ambiguous() -> None:
    d = review(pr=("bug",), issue=("run:design", "run:arch:revise"), history=("dev",))
    assert (d.kind, d.reason) == (DecisionKind.IGNORED, Reason.STAGE_AMBIGUOUS)
    assert d.add_labels == ("need:input",)
    assert set(d.suggested_labels) == {"run:design:revise", "run:arch:revise"}
    assert d.resolved_from == "issue_labels"


def test_stage_from_issue_labels_when_pr_has_none() -> None:
    d = review(pr=("state:in-review",), issue=("run:design",), history=("dev",))
    assert d.runs
    assert (d.stage, d.trigger_label, d.resolved_from) == ("design", "run:design:revise", "issue_labels")


def test_pr_stage_wins_over_issue_stage() -> None:
    d = review(pr=("run:dev",), issue=("run:plan", "run:arch"))
    assert d.runs
    assert (d.stage, d.resolved_from) == ("dev", "pr_labels")


@pytest.mark.parametrize(
    ("history", "stage"),
    [
        (("qa", "dev"), "qa"),
        (("rethink", "qa", "dev"), "qa"),
        (("rethink", "rethink", "plan"), "plan"),
        (("nonsense", "dev"), "dev"),
    ],
)
def test_stage_from_history_newest_first_skipping_rethink(history: tuple[str, ...], stage: str) -> None:
    d = review(history=history)
    assert d.runs
    assert (d.stage, d.revise, d.resolved_from) == (stage, True, "run_history")


def test_no_stage_anywhere_is_not_resolved() -> None:
    d = review(pr=("bug",), issue=("state:in-review",), history=("rethink",))
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.STAGE_NOT_RESOLVED
    assert d.add_labels == ("need:input",)
    assert set(d.suggested_labels) == {run_label(s, True) for s in REVISE_STAGES}
    assert d.resolved_from == "stage_not_resolved"


def test_rethink_label_on_pr_alone_is_not_a_revise_stage() -> None:
    assert review(pr=("run:rethink",)).reason is Reason.STAGE_NOT_RESOLVED
    d = review(pr=("run:rethink",), issue=("run:plan",))
    assert d.runs
    assert (d.stage, d.resolved_from) == ("plan", "issue_labels")
    d = review(pr=("run:rethink", "run:dev"))
    assert d.runs and d.stage == "dev"


def test_issue_model_wins_over_pr_model() -> None:
    d = review(
        pr=("run:dev", "[ai-model-gpt-5.3-codex]", "[ai-reasoning-medium]"),
        issue=("[ai-model-gpt-5.2]", "[ai-reasoning-low]"),
    )
    assert (d.model, d.reasoning) == ("gpt-5.2", "low")


def test_pr_model_used_when_issue_has_none() -> None:
    d = review(pr=("run:dev", "[ai-model-gpt-5.3-codex]"), issue=("[ai-reasoning-low]",))
    assert (d.model, d.reasoning) == ("gpt-5.3-codex", "low")


def test_review_defaults_without_model_labels() -> None:
    d = review(pr=("run:dev",))
    assert (d.model, d.reasoning) == ("gpt-5.4", "high")


def test_review_with_contradictory_model_labels_conflicts() -> None:
    d = review(pr=("run:dev",), issue=("[ai-model-gpt-5.2]", "[ai-model-gpt-5.4]"))
    assert (d.kind, d.reason) == (DecisionKind.CONFLICT, Reason.MULTIPLE_MODEL_LABELS)


def test_review_with_custom_trigger_label() -> None:
    rules = PlatformConfig(stages={"dev": {"label": "go:dev"}}).rules()
    d = review(pr=("go:dev",), rules=rules)
    assert d.runs
    assert (d.stage, d.trigger_label) == ("dev", "run:dev:revise")


# -- approval ----------------------------------------------------------------------------------------------
def test_stage_with_approval_waits_for_an_approver() -> None:
    d = on_issue("run:release", dev=True, rules=RELEASE_RULES, actor=Actor("alice", "User", Permission.WRITE))
    assert d.kind is DecisionKind.APPROVAL_REQUIRED
    assert d.reason is Reason.APPROVAL_REQUIRED
    assert not d.runs
    assert d.approvers == "a user with maintain permission or one of: boss"
    assert "state:approved" in d.message
    assert (d.stage, d.revise, d.trigger_label, d.role, d.job_name) == (
        "release",
        False,
        "run:release",
        "em",
        "stage_release",
    )


@pytest.mark.parametrize(
    "actor",
    [
        pytest.param(Actor("mia", "User", Permission.MAINTAIN), id="maintain"),
        pytest.param(Actor("root", "User", Permission.ADMIN), id="admin"),
        pytest.param(Actor("Boss", "User", Permission.WRITE), id="allow-listed"),
    ],
)
def test_actor_who_may_approve_runs_directly(actor: Actor) -> None:
    d = on_issue("run:release", dev=True, rules=RELEASE_RULES, actor=actor)
    assert d.kind is DecisionKind.RUN
    assert d.reason is Reason.TRIGGER_LABEL


def test_approval_only_applies_to_its_stage() -> None:
    assert on_issue("run:qa", dev=True, rules=RELEASE_RULES).runs


def test_dev_run_missing_is_reported_before_approval() -> None:
    assert on_issue("run:release", dev=False, rules=RELEASE_RULES).reason is Reason.DEV_RUN_MISSING


def test_review_revise_of_stage_with_approval_waits() -> None:
    d = review(pr=("run:release",), rules=RELEASE_RULES)
    assert d.kind is DecisionKind.APPROVAL_REQUIRED
    assert (d.stage, d.revise, d.trigger_label) == ("release", True, "run:release:revise")


def test_approval_rule_from_platform_config() -> None:
    rules = PlatformConfig(
        stages={"release": {"approval": {"min_permission": "maintain", "approvers": ["Boss"], "ttl_hours": 2}}}
    ).rules()
    d = on_issue("run:release", dev=True, rules=rules)
    assert d.kind is DecisionKind.APPROVAL_REQUIRED
    # an approver still needs trigger rights to start the run by labelling
    assert on_issue("run:release", dev=True, rules=rules, actor=Actor("boss", "User", Permission.WRITE)).runs
    assert decide_approval(pending(), Actor("boss", "User", Permission.READ), T0, rules).runs
    assert decide_approval(pending(), Actor("boss", "User", None), T0 + timedelta(hours=3), rules).reason is (
        Reason.APPROVAL_EXPIRED
    )


def test_approved_by_allowed_person_runs_with_pending_model() -> None:
    d = decide_approval(pending(), Actor("boss", "User", Permission.READ), T0 + timedelta(hours=1), RELEASE_RULES)
    assert d.kind is DecisionKind.RUN
    assert d.reason is Reason.APPROVED
    assert (d.stage, d.revise, d.trigger_label, d.role, d.job_name) == (
        "release",
        False,
        "run:release",
        "em",
        "stage_release",
    )
    assert (d.model, d.reasoning) == ("gpt-5.2", "low")
    assert "boss" in d.message


def test_approved_revise_keeps_revise() -> None:
    d = decide_approval(
        pending(revise=True), Actor("mia", "User", Permission.MAINTAIN), T0 + timedelta(hours=1), RELEASE_RULES
    )
    assert d.runs
    assert (d.revise, d.trigger_label) == (True, "run:release:revise")


def test_approved_without_pending_model_uses_defaults() -> None:
    d = decide_approval(pending(model=None, reasoning=None), Actor("mia", "User", Permission.ADMIN), T0, RELEASE_RULES)
    assert (d.model, d.reasoning) == ("gpt-5.4", "high")


@pytest.mark.parametrize(
    "approver",
    [
        pytest.param(Actor("alice", "User", Permission.WRITE), id="write"),
        pytest.param(Actor("alice", "User", None), id="unknown-permission"),
        pytest.param(Actor("boss", "Bot", Permission.ADMIN), id="bot-type-even-if-allow-listed"),
        pytest.param(Actor("boss[bot]", "User", Permission.ADMIN), id="bot-login"),
    ],
)
def test_approval_by_wrong_person_or_bot_is_refused(approver: Actor) -> None:
    d = decide_approval(pending(), approver, T0 + timedelta(hours=1), RELEASE_RULES)
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.APPROVER_NOT_PERMITTED
    assert d.approvers == "a user with maintain permission or one of: boss"
    assert (d.stage, d.trigger_label) == ("release", "run:release")


def test_approval_older_than_ttl_expires() -> None:
    d = decide_approval(
        pending(), Actor("boss", "User", Permission.ADMIN), T0 + timedelta(hours=24, seconds=1), RELEASE_RULES
    )
    assert d.kind is DecisionKind.IGNORED
    assert d.reason is Reason.APPROVAL_EXPIRED
    assert (d.stage, d.trigger_label) == ("release", "run:release")
    assert "run:release" in d.message


def test_custom_ttl() -> None:
    rules = rules_with_approval("release", replace(RELEASE_APPROVAL, ttl_hours=2))
    boss = Actor("boss", "User", None)
    assert decide_approval(pending(), boss, T0 + timedelta(hours=1, minutes=59), rules).runs
    assert decide_approval(pending(), boss, T0 + timedelta(hours=2, minutes=1), rules).reason is (
        Reason.APPROVAL_EXPIRED
    )


@pytest.mark.parametrize(
    ("age", "ttl", "expired"),
    [
        (timedelta(0), 24, False),
        (timedelta(hours=23, minutes=59), 24, False),
        (timedelta(hours=24), 24, False),
        (timedelta(hours=24, seconds=1), 24, True),
        (timedelta(hours=1), 0.5, True),
        (timedelta(minutes=20), 0.5, False),
    ],
)
def test_approval_expired(age: timedelta, ttl: float, expired: bool) -> None:
    assert approval_expired(T0, T0 + age, ttl) is expired


# -- serialisation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "decision",
    [
        pytest.param(lambda: on_issue("run:dev", "[ai-model-gpt-5.2]"), id="run"),
        pytest.param(lambda: on_issue("run:dev", "run:plan"), id="conflict"),
        pytest.param(lambda: on_issue("run:qa"), id="ignored"),
        pytest.param(lambda: on_issue("run:release", dev=True, rules=RELEASE_RULES), id="approval"),
    ],
)
def test_to_dict_is_json_serialisable(decision: Callable[[], Decision]) -> None:
    d = decision()
    data = json.loads(json.dumps(d.to_dict()))
    for key in ("kind", "stage", "revise", "role", "reason"):
        assert key in data
    assert data["kind"] == d.kind.value
    assert data["reason"] == d.reason.value
    assert data["stage"] == d.stage
    assert data["revise"] == d.revise
    assert data["role"] == d.role
    assert data["labels"] == list(d.labels)
    assert data["add_labels"] == list(d.add_labels)
    assert data["suggested_labels"] == list(d.suggested_labels)


def test_to_dict_of_a_run() -> None:
    data = on_issue("run:dev:revise").to_dict()
    assert data["kind"] == "run"
    assert data["reason"] == "trigger_label"
    assert (data["stage"], data["revise"], data["role"], data["job_name"]) == ("dev", True, "dev", "stage_dev")
    assert data["write_scope"] == "any-file"


# -- every reason code is reachable -------------------------------------------------------------------------
REASON_CASES: dict[Reason, Callable[[], Decision]] = {
    Reason.TRIGGER_LABEL: lambda: on_issue("run:plan"),
    Reason.REVIEWER_REQUESTED: lambda: on_pr("need:reviewer"),
    Reason.REVIEW_CHANGES_REQUESTED: lambda: review(pr=("run:dev",)),
    Reason.APPROVED: lambda: decide_approval(pending(), Actor("boss", "User", None), T0, RELEASE_RULES),
    Reason.NOT_A_TRIGGER_LABEL: lambda: on_issue("bug"),
    Reason.UNKNOWN_TRIGGER_LABEL: lambda: on_issue("run:unknown"),
    Reason.RUN_LABEL_ON_PULL_REQUEST: lambda: on_pr("run:dev"),
    Reason.ACTOR_NOT_PERMITTED: lambda: on_issue("run:dev", actor=Actor("x", "Bot", Permission.ADMIN)),
    Reason.REVIEW_NOT_CHANGES_REQUESTED: lambda: review(pr=("run:dev",), state="approved"),
    Reason.STAGE_AMBIGUOUS: lambda: review(pr=("run:dev", "run:qa")),
    Reason.STAGE_NOT_RESOLVED: lambda: review(),
    Reason.DEV_RUN_MISSING: lambda: on_issue("run:qa"),
    Reason.APPROVER_NOT_PERMITTED: lambda: decide_approval(pending(), HUMAN, T0, RELEASE_RULES),
    Reason.APPROVAL_EXPIRED: lambda: decide_approval(
        pending(), Actor("boss", "User", None), T0 + timedelta(days=2), RELEASE_RULES
    ),
    Reason.APPROVAL_WITHDRAWN: lambda: decide_approval(
        pending(), Actor("boss", "User", Permission.ADMIN), T0, RELEASE_RULES, labels=("bug",)
    ),
    Reason.MULTIPLE_TRIGGER_LABELS: lambda: on_issue("run:dev", "run:qa"),
    Reason.MULTIPLE_MODEL_LABELS: lambda: on_issue("run:dev", "[ai-model-gpt-5.4]", "[ai-model-gpt-5.2]"),
    Reason.MULTIPLE_REASONING_LABELS: lambda: on_issue("run:dev", "[ai-reasoning-low]", "[ai-reasoning-high]"),
    Reason.UNKNOWN_MODEL_LABEL: lambda: on_issue("run:dev", "[ai-model-nope]"),
    Reason.UNKNOWN_REASONING_LABEL: lambda: on_issue("run:dev", "[ai-reasoning-nope]"),
    Reason.APPROVAL_REQUIRED: lambda: on_issue("run:release", dev=True, rules=RELEASE_RULES),
    Reason.PULL_REQUEST_FROM_FORK: lambda: review(pr=("run:dev",), head_elsewhere=True),
    Reason.PLATFORM_ACCOUNT: lambda: on_pr(
        "need:reviewer", actor=Actor("maint", "User", Permission.ADMIN, platform_account=True)
    ),
}
EXPECTED_KIND = {
    Reason.TRIGGER_LABEL: DecisionKind.RUN,
    Reason.REVIEWER_REQUESTED: DecisionKind.RUN,
    Reason.REVIEW_CHANGES_REQUESTED: DecisionKind.RUN,
    Reason.APPROVED: DecisionKind.RUN,
    Reason.MULTIPLE_TRIGGER_LABELS: DecisionKind.CONFLICT,
    Reason.MULTIPLE_MODEL_LABELS: DecisionKind.CONFLICT,
    Reason.MULTIPLE_REASONING_LABELS: DecisionKind.CONFLICT,
    Reason.UNKNOWN_MODEL_LABEL: DecisionKind.CONFLICT,
    Reason.UNKNOWN_REASONING_LABEL: DecisionKind.CONFLICT,
    Reason.APPROVAL_REQUIRED: DecisionKind.APPROVAL_REQUIRED,
}


@pytest.mark.parametrize("reason", list(REASON_CASES), ids=[r.value for r in REASON_CASES])
def test_reason_is_produced(reason: Reason) -> None:
    d = REASON_CASES[reason]()
    assert d.reason is reason
    assert d.kind is EXPECTED_KIND.get(reason, DecisionKind.IGNORED)
    assert d.message


def test_every_reason_code_is_covered() -> None:
    assert set(REASON_CASES) == set(Reason)
    assert len(Reason) == 23


def test_a_budget_override_starts_the_held_run_only_for_an_approver_of_its_stage() -> None:
    held = on_issue("run:release", rules=RELEASE_RULES)
    boss = Actor("boss", "User", Permission.MAINTAIN)
    assert decide_budget_override(held, boss, RELEASE_RULES) is held
    refused = decide_budget_override(held, HUMAN, RELEASE_RULES)
    assert (refused.kind, refused.reason) == (DecisionKind.IGNORED, Reason.APPROVER_NOT_PERMITTED)
    assert refused.message.startswith("alice may not override the budget for run:release: needs ")
    assert (refused.stage, refused.trigger_label) == ("release", "run:release")
    bot = Actor("boss[bot]", "Bot", Permission.ADMIN)
    assert decide_budget_override(held, bot, RELEASE_RULES).reason is Reason.APPROVER_NOT_PERMITTED


def test_a_review_on_a_forks_pull_request_is_refused_after_the_reviewers_permission() -> None:
    """A revise pushes to the PR's head branch by name; a fork's branch is not this repository's."""
    refused = review(pr=("run:dev",), head_elsewhere=True)
    assert (refused.kind, refused.reason, refused.stage) == (DecisionKind.IGNORED, Reason.PULL_REQUEST_FROM_FORK, None)
    assert "another repository (a fork)" in refused.message
    outsider = Actor("mallory", "User", None)
    assert review(pr=("run:dev",), head_elsewhere=True, actor=outsider).reason is Reason.ACTOR_NOT_PERMITTED
    assert review(pr=("run:dev",)).reason is Reason.REVIEW_CHANGES_REQUESTED
