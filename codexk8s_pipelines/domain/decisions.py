"""Trigger decisions: given what happened on GitHub and what the platform knows, run or say why not.

The same functions serve the sensors, `codexk8s triggers explain` and the tests, so the answer a user gets
from the CLI is the one the sensor acted on. Reasons are stable codes (audited, shown in comments); the
message is the sentence a human reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .labels import LabelKind, LabelScheme, ParsedLabel, normalize
from .rules import Actor, Rules
from .stages import REVIEWER_JOB_NAME, ApprovalRule, Role, RuntimeProfile, WriteScope


class DecisionKind(StrEnum):
    RUN = "run"
    IGNORED = "ignored"
    CONFLICT = "conflict"
    APPROVAL_REQUIRED = "approval_required"


class Reason(StrEnum):
    # run
    TRIGGER_LABEL = "trigger_label"
    REVIEWER_REQUESTED = "reviewer_requested"
    REVIEW_CHANGES_REQUESTED = "review_changes_requested"
    APPROVED = "approved"
    # ignored
    NOT_A_TRIGGER_LABEL = "not_a_trigger_label"
    UNKNOWN_TRIGGER_LABEL = "unknown_trigger_label"
    RUN_LABEL_ON_PULL_REQUEST = "run_label_on_pull_request"
    ACTOR_NOT_PERMITTED = "actor_not_permitted"
    REVIEW_NOT_CHANGES_REQUESTED = "review_not_changes_requested"
    STAGE_AMBIGUOUS = "stage_ambiguous"
    STAGE_NOT_RESOLVED = "stage_not_resolved"
    DEV_RUN_MISSING = "dev_run_missing"
    APPROVER_NOT_PERMITTED = "approver_not_permitted"
    APPROVAL_EXPIRED = "approval_expired"
    APPROVAL_WITHDRAWN = "approval_withdrawn"
    PULL_REQUEST_FROM_FORK = "pull_request_from_fork"
    PLATFORM_ACCOUNT = "platform_account"
    # conflict
    MULTIPLE_TRIGGER_LABELS = "multiple_trigger_labels"
    MULTIPLE_MODEL_LABELS = "multiple_model_labels"
    MULTIPLE_REASONING_LABELS = "multiple_reasoning_labels"
    UNKNOWN_MODEL_LABEL = "unknown_model_label"
    UNKNOWN_REASONING_LABEL = "unknown_reasoning_label"
    # approval
    APPROVAL_REQUIRED = "approval_required"


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    reason: Reason
    message: str
    stage: str | None = None
    revise: bool = False
    role: str | None = None
    job_name: str | None = None
    trigger_label: str | None = None
    model: str | None = None
    reasoning: str | None = None
    profile: str | None = None
    write_scope: str | None = None
    discussion: bool = False
    labels: tuple[str, ...] = ()
    add_labels: tuple[str, ...] = ()
    suggested_labels: tuple[str, ...] = ()
    approvers: str | None = None
    resolved_from: str | None = None

    @property
    def runs(self) -> bool:
        return self.kind is DecisionKind.RUN

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["reason"] = self.reason.value
        for key in ("labels", "add_labels", "suggested_labels"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """The decision `to_dict` wrote (a run held by the budgets is started later from it)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["kind"] = DecisionKind(values["kind"])
        values["reason"] = Reason(values["reason"])
        for key in ("labels", "add_labels", "suggested_labels"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


# -- labels that start runs ---------------------------------------------------------------------------------
class RunEffect(StrEnum):
    """What adding a label can do to runs: the labels the decisions below answer with a run, or an approval of one."""

    TRIGGER = "trigger"  # run:* on an issue (`decide_issue_label`); on a PR refused, with a comment
    REVIEWER = "reviewer"  # need:reviewer on a PR (`decide_pull_request_label`)
    APPROVAL = "approval"  # state:approved while a run waits for it (`decide_approval`)
    BUDGET_OVERRIDE = "budget_override"  # the budgets' override label while a run is held (`decide_budget_override`)


def is_reviewer_request(label: str, scheme: LabelScheme) -> bool:
    return normalize(label) == normalize(scheme.need_reviewer)


def is_approval(label: str, scheme: LabelScheme) -> bool:
    return normalize(label) == normalize(scheme.approved)


def run_effect(label: str, scheme: LabelScheme, override_label: str | None = None) -> RunEffect | None:
    """What adding `label` can start or approve, or None when it can do neither wherever it is put.

    The one list of such labels: the intake picks the events it decides by it (sensors/decide.py), and the agents'
    label tool refuses every label it names, to add or to remove (an agent must not start runs, nor undo a human's
    request for one). A label that starts runs tomorrow is added here, and agents cannot touch it from that day.
    `override_label` is the budgets' override label (configurable, so not part of the label scheme)."""
    if scheme.parse(label).kind is LabelKind.RUN:
        return RunEffect.TRIGGER
    if is_reviewer_request(label, scheme):
        return RunEffect.REVIEWER
    if is_approval(label, scheme):
        return RunEffect.APPROVAL
    if override_label and normalize(label) == normalize(override_label):
        return RunEffect.BUDGET_OVERRIDE
    return None


# -- events -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssueLabelEvent:
    """A label was added to an issue. `labels` are the issue's labels after the event."""

    labels: tuple[str, ...]
    added: str
    actor: Actor
    dev_run_exists: bool = False


@dataclass(frozen=True)
class PullRequestLabelEvent:
    labels: tuple[str, ...]
    added: str
    actor: Actor


@dataclass(frozen=True)
class PullRequestReviewEvent:
    """A review was submitted. Stage sources in the order they are consulted; `history_stages` newest first."""

    review_state: str
    actor: Actor
    pr_labels: tuple[str, ...] = ()
    issue_labels: tuple[str, ...] = ()
    history_stages: tuple[str, ...] = ()
    # The PR's head branch is in another repository (a fork) or in none any more: its name means nothing here.
    head_elsewhere: bool = False


@dataclass(frozen=True)
class PendingApproval:
    stage: str
    revise: bool
    requested_at: datetime
    trigger_label: str
    model: str | None = None
    reasoning: str | None = None


# -- helpers ------------------------------------------------------------------------------------------------
def _ignored(reason: Reason, message: str, **kw: Any) -> Decision:
    return Decision(DecisionKind.IGNORED, reason, message, **kw)


def _conflict(reason: Reason, message: str, labels: Iterable[str]) -> Decision:
    return Decision(DecisionKind.CONFLICT, reason, message, labels=tuple(sorted(labels, key=normalize)))


def _platform_account_refusal(actor: Actor, trigger_label: str | None) -> Decision | None:
    """The platform's own account put a label that starts or approves runs: nothing starts (but for the label on an
    issue the platform opened for it). Its agents label through that account, so the label is not a person's word;
    checked before anything that comments per event, since such labels can come as fast as an agent toggles them."""
    if not actor.platform_account or actor.platform_prepared:
        return None
    return _ignored(
        Reason.PLATFORM_ACCOUNT,
        f"{actor.login} is the account the platform itself writes to GitHub as, and its agents change labels through "
        "it: a label it puts starts and approves no run (but on an issue the platform opened for that label); add it "
        "from a person's own account, and give the platform a machine user or a GitHub App, not a person's token",
        trigger_label=trigger_label,
    )


def _with_added(labels: Sequence[str], added: str) -> list[str]:
    out = list(labels)
    if normalize(added) not in {normalize(x) for x in labels}:
        out.append(added)
    return out


def _group_choice(parsed: Sequence[ParsedLabel], rules: Rules) -> tuple[str | None, str | None, Decision | None]:
    """The model and reasoning chosen by labels, or a conflict decision when a group is contradictory."""
    scheme = rules.labels
    groups = (
        (LabelKind.MODEL, "model", Reason.MULTIPLE_MODEL_LABELS, Reason.UNKNOWN_MODEL_LABEL,
         scheme.is_known_model, [scheme.model_label(m) for m in scheme.models]),
        (LabelKind.REASONING, "reasoning", Reason.MULTIPLE_REASONING_LABELS, Reason.UNKNOWN_REASONING_LABEL,
         scheme.is_known_reasoning, [scheme.reasoning_label(r) for r in scheme.reasoning_levels]),
    )  # fmt: skip
    chosen: list[str | None] = []
    for kind, noun, several, unknown, is_known, known in groups:
        found = [p for p in parsed if p.kind is kind]
        if len(found) > 1:
            names = [p.name for p in found]
            message = f"more than one {noun} label: {', '.join(sorted(names, key=normalize))}; keep one"
            return None, None, _conflict(several, message, names)
        if found and not is_known(found[0].value or ""):
            message = f"{found[0].name} names no configured {noun}; known: {', '.join(known)}"
            return None, None, _conflict(unknown, message, [found[0].name])
        chosen.append(found[0].value if found else None)
    return chosen[0], chosen[1], None


def _run(
    rules: Rules,
    stage_name: str,
    revise: bool,
    actor: Actor,
    reason: Reason,
    message: str,
    model: str | None,
    reasoning: str | None,
    discussion: bool = False,
    resolved_from: str | None = None,
) -> Decision:
    """A run decision, or approval_required when the stage needs an approver and the actor is not one."""
    stage = rules.stage(stage_name)
    label = rules.labels.run_label(stage_name, revise)
    common: dict[str, Any] = {
        "stage": stage_name,
        "revise": revise,
        "role": stage.role.value,
        "job_name": stage.job_name,
        "trigger_label": label,
        "model": model or rules.default_model,
        "reasoning": reasoning or rules.default_reasoning,
        # A discussion only comments: no environment, no production access, nothing written.
        "profile": (RuntimeProfile.CODE_ONLY if discussion else stage.runtime_profile).value,
        "write_scope": (WriteScope.NONE if discussion else stage.write_scope).value,
        "discussion": discussion,
        "resolved_from": resolved_from,
    }
    rule = stage.approval
    if rule.required and not rule.may_approve(actor.login, actor.permission):
        return Decision(
            DecisionKind.APPROVAL_REQUIRED,
            Reason.APPROVAL_REQUIRED,
            f"{label} needs approval: {rule.describe_approvers()} adds {rules.labels.approved}",
            approvers=rule.describe_approvers(),
            **common,
        )
    return Decision(DecisionKind.RUN, reason, message, **common)


# -- decisions ----------------------------------------------------------------------------------------------
def decide_issue_label(event: IssueLabelEvent, rules: Rules) -> Decision:
    """An issue was labelled: start the stage the label names, or say why not."""
    scheme = rules.labels
    added = scheme.parse(event.added)
    if added.kind is not LabelKind.RUN:
        return _ignored(Reason.NOT_A_TRIGGER_LABEL, f"{added.name!r} is not a trigger label", labels=(added.name,))
    own = _platform_account_refusal(event.actor, added.name)
    if own is not None:
        return own
    if added.stage is None:
        known = sorted(scheme.run_label(s, r) for s, r in scheme.trigger_labels().values())
        return _ignored(
            Reason.UNKNOWN_TRIGGER_LABEL,
            f"{added.name!r} names no stage (or a stage without a revise loop)",
            labels=(added.name,),
            suggested_labels=tuple(known),
        )
    refusal = rules.policy.refusal(event.actor)
    if refusal is not None:
        return _ignored(Reason.ACTOR_NOT_PERMITTED, refusal, stage=added.stage, trigger_label=added.name)

    parsed = scheme.parse_all(_with_added(event.labels, event.added))
    runs = [p for p in parsed if p.kind is LabelKind.RUN]
    if len(runs) > 1:
        names = [p.name for p in runs]
        return _conflict(
            Reason.MULTIPLE_TRIGGER_LABELS,
            f"the issue carries {len(runs)} trigger labels ({', '.join(sorted(names))}); keep exactly one",
            names,
        )
    model, reasoning, conflict = _group_choice(parsed, rules)
    if conflict is not None:
        return conflict

    stage = rules.stage(added.stage)
    if stage.requires_dev_run and not event.dev_run_exists:
        return _ignored(
            Reason.DEV_RUN_MISSING,
            f"{added.name} needs an earlier {scheme.run_label('dev')} run of this issue; none was found",
            stage=added.stage,
            revise=added.revise,
            trigger_label=added.name,
            add_labels=(scheme.need_input,),
            suggested_labels=(scheme.run_label("dev"), scheme.run_label("dev", revise=True)),
        )
    discussion = any(p.kind is LabelKind.MODE for p in parsed)
    return _run(
        rules,
        added.stage,
        added.revise,
        event.actor,
        Reason.TRIGGER_LABEL,
        f"{added.name} added by {event.actor.login} starts {stage.job_name}",
        model,
        reasoning,
        discussion=discussion,
    )


def decide_pull_request_label(event: PullRequestLabelEvent, rules: Rules) -> Decision:
    """A PR was labelled: only `need:reviewer` starts something there, a comment-only reviewer run."""
    scheme = rules.labels
    added = scheme.parse(event.added)
    if added.kind is LabelKind.RUN or is_reviewer_request(added.name, scheme):
        own = _platform_account_refusal(event.actor, added.name)
        if own is not None:
            return own
    if added.kind is LabelKind.RUN:
        return _ignored(
            Reason.RUN_LABEL_ON_PULL_REQUEST,
            f"{added.name!r} is on a pull request; trigger labels start runs on issues, on a PR only "
            f"{scheme.need_reviewer} does",
            labels=(added.name,),
        )
    if not is_reviewer_request(added.name, scheme):
        return _ignored(Reason.NOT_A_TRIGGER_LABEL, f"{added.name!r} is not a trigger label", labels=(added.name,))
    refusal = rules.policy.refusal(event.actor)
    if refusal is not None:
        return _ignored(Reason.ACTOR_NOT_PERMITTED, refusal, trigger_label=added.name)
    parsed = scheme.parse_all(_with_added(event.labels, event.added))
    model, reasoning, conflict = _group_choice(parsed, rules)
    if conflict is not None:
        return conflict
    return Decision(
        DecisionKind.RUN,
        Reason.REVIEWER_REQUESTED,
        f"{added.name} added by {event.actor.login} starts a comment-only reviewer run",
        role=Role.REVIEWER.value,
        job_name=REVIEWER_JOB_NAME,
        trigger_label=added.name,
        model=model or rules.default_model,
        reasoning=reasoning or rules.default_reasoning,
        profile=RuntimeProfile.CODE_ONLY.value,
        write_scope=WriteScope.NONE.value,
    )


def _stages_in(labels: Sequence[str], rules: Rules) -> list[str]:
    found: list[str] = []
    for p in rules.labels.parse_all(labels):
        if p.kind is LabelKind.RUN and p.stage and rules.stage(p.stage).has_revise and p.stage not in found:
            found.append(p.stage)
    return found


def decide_review(event: PullRequestReviewEvent, rules: Rules) -> Decision:
    """A review asked for changes: revise the one stage the PR (or its issue, or its history) carries."""
    scheme = rules.labels
    state = normalize(event.review_state).replace(" ", "_")
    if state != "changes_requested":
        return _ignored(
            Reason.REVIEW_NOT_CHANGES_REQUESTED, f"a review in state {state!r} starts nothing; only changes_requested"
        )
    refusal = rules.policy.refusal(event.actor)
    if refusal is not None:
        return _ignored(Reason.ACTOR_NOT_PERMITTED, refusal)
    if event.head_elsewhere:
        # A revise pushes to the PR's head branch. A fork's branch is not this repository's: a fork branch named
        # `main` would make the revise push to this repository's main. Its body's `Fixes #N` is an outsider's too.
        return _ignored(
            Reason.PULL_REQUEST_FROM_FORK,
            "the pull request's branch is in another repository (a fork): a revise pushes only to branches of this "
            "repository; ask for the changes in the review, or open the work on an issue here",
        )

    need_input = (scheme.need_input,)
    stage_name: str | None = None
    source: str | None = None
    for source_name, labels in (("pr_labels", event.pr_labels), ("issue_labels", event.issue_labels)):
        stages = _stages_in(labels, rules)
        if len(stages) > 1:
            revise_labels = tuple(scheme.run_label(s, revise=True) for s in stages)
            where = "pull request" if source_name == "pr_labels" else "linked issue"
            return _ignored(
                Reason.STAGE_AMBIGUOUS,
                f"the {where} carries labels of {len(stages)} stages ({', '.join(stages)}); "
                f"add the one revise label to run",
                labels=revise_labels,
                add_labels=need_input,
                suggested_labels=revise_labels,
                resolved_from=source_name,
            )
        if stages:
            stage_name, source = stages[0], source_name
            break
    if stage_name is None:
        for name in event.history_stages:
            if name in rules.stages and rules.stage(name).has_revise:
                stage_name, source = name, "run_history"
                break
    if stage_name is None:
        suggested = tuple(scheme.run_label(s, revise=True) for s in rules.stages if rules.stage(s).has_revise)
        return _ignored(
            Reason.STAGE_NOT_RESOLVED,
            "no stage label on the pull request or its issue, and no earlier run: add the revise label to run",
            add_labels=need_input,
            suggested_labels=suggested,
            resolved_from="stage_not_resolved",
        )
    # Model and reasoning: the issue's labels win over the PR's (sticky profile of the reference system).
    issue_model, issue_reasoning, conflict = _group_choice(scheme.parse_all(event.issue_labels), rules)
    if conflict is not None:
        return conflict
    pr_model, pr_reasoning, conflict = _group_choice(scheme.parse_all(event.pr_labels), rules)
    if conflict is not None:
        return conflict
    return _run(
        rules,
        stage_name,
        True,
        event.actor,
        Reason.REVIEW_CHANGES_REQUESTED,
        f"changes requested by {event.actor.login}: revise of {stage_name} (stage from {source})",
        issue_model or pr_model,
        issue_reasoning or pr_reasoning,
        resolved_from=source,
    )


def approval_expired(requested_at: datetime, now: datetime, ttl_hours: float) -> bool:
    return now - requested_at > timedelta(hours=ttl_hours)


def decide_approval(
    pending: PendingApproval, approver: Actor, now: datetime, rules: Rules, labels: Sequence[str] | None = None
) -> Decision:
    """`state:approved` was added while a run waits for approval: run it, or say why the approval does not count.

    `labels`: the item's labels when the approval was added, for a run asked for by a trigger label; a request
    whose label was taken off since was withdrawn and starts nothing. None when the request was not a label (a
    review's revise: the review stays given)."""
    own = _platform_account_refusal(approver, pending.trigger_label)
    if own is not None:
        return replace(own, stage=pending.stage, revise=pending.revise)
    stage = rules.stage(pending.stage)
    rule = stage.approval
    if approval_expired(pending.requested_at, now, rule.ttl_hours):
        return _ignored(
            Reason.APPROVAL_EXPIRED,
            f"the approval request for {pending.trigger_label} is older than {rule.ttl_hours:g} h; "
            f"add {pending.trigger_label} again",
            stage=pending.stage,
            revise=pending.revise,
            trigger_label=pending.trigger_label,
        )
    if labels is not None and normalize(pending.trigger_label) not in {normalize(x) for x in labels}:
        return _ignored(
            Reason.APPROVAL_WITHDRAWN,
            f"{pending.trigger_label} was taken off before it was approved: the request is withdrawn and nothing "
            f"runs; add {pending.trigger_label} again to ask anew",
            stage=pending.stage,
            revise=pending.revise,
            trigger_label=pending.trigger_label,
        )
    if not approver.is_human or not rule.may_approve(approver.login, approver.permission):
        return _not_an_approver(approver, f"approve {pending.trigger_label}", rule, pending)
    return _run(
        rules,
        pending.stage,
        pending.revise,
        approver,
        Reason.APPROVED,
        f"{pending.trigger_label} approved by {approver.login}",
        pending.model,
        pending.reasoning,
        # The issue still asks for a discussion (`mode:discussion`): the approved run only comments, as it would
        # have without the approval.
        discussion=labels is not None and any(rules.labels.parse(x).kind is LabelKind.MODE for x in labels),
    )


def _not_an_approver(actor: Actor, act: str, rule: ApprovalRule, run: Decision | PendingApproval) -> Decision:
    """`actor` may not `act` on this run: ignored, saying who may (the stage's approvers)."""
    return _ignored(
        Reason.APPROVER_NOT_PERMITTED,
        f"{actor.login} may not {act}: needs {rule.describe_approvers()}",
        stage=run.stage,
        revise=run.revise,
        trigger_label=run.trigger_label,
        approvers=rule.describe_approvers(),
    )


def budget_override_rule(held: Decision, rules: Rules) -> ApprovalRule:
    """Who may override the budget for a held run: the approvers of its stage (a reviewer run counts as dev)."""
    return rules.stage(held.stage or "dev").approval


def decide_budget_override(held: Decision, actor: Actor, rules: Rules) -> Decision:
    """The budget override label on an issue whose run the budgets hold: an approver of the held run's stage
    starts it (the held decision stands); anyone else is told who may, as for an approval."""
    own = _platform_account_refusal(actor, held.trigger_label)
    if own is not None:
        return replace(own, stage=held.stage, revise=held.revise)
    rule = budget_override_rule(held, rules)
    if actor.is_human and rule.may_approve(actor.login, actor.permission):
        return held
    return _not_an_approver(actor, f"override the budget for {held.trigger_label}", rule, held)
