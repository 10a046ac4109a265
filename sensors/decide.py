"""Deciding, without acting: GitHub's events of one issue or PR → the domain's decisions, with their keys.

Nothing here writes anything: it reads GitHub (events, reviews, permissions) and the decision history, and
returns `Decided` values; `intake.apply` acts on them (audit, run registration, approvals, comments; the comment
both it and `budget_gate` make is `comment_once.post_once`). The sensor,
the webhook drain and `codexk8s triggers explain` all decide through these functions, so the answer explain
gives is the one the sensor acted on, and a label seen by webhook and by polling gets one key.

Events of one moment (one API request: the same second and the same actor, e.g. `POST …/labels` with two
labels, or an issue opened with its labels) are applied together and then decided once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from codexk8s_pipelines.domain.correlation import correlation_key
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
from codexk8s_pipelines.domain.labels import LabelKind, normalize
from codexk8s_pipelines.domain.rules import Actor, Rules
from codexk8s_pipelines.domain.spend import Budgets
from codexk8s_pipelines.domain.stages import Permission
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.payloads import GitHubUser, IssueEvent, IssueItem, PayloadError, PullRequest, Review
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.usage import BudgetHold

from .history import DecisionHistory, NoHistory, StoreHistory

SYSTEM_ACTOR = "github-sensor"  # the audit's actor for what the intake does on its own
# The dev runs that count as "an earlier dev run" for a stage that needs one (qa, release): only one that finished
# well left work to check or release; a failed or canceled one left none, and one still running has not yet. A
# discussion's dev run (`mode:discussion`) that succeeded only commented, so it is not counted either.
DEV_RUN_DONE = ("succeeded",)


@dataclass
class TickContext:
    """What one tick shares across repositories: the rules, the history it decides with, the store it acts on
    (None for explain, which never acts), the clock and a permission cache."""

    rules: Rules
    store: PlatformStore | None
    now: datetime
    history: DecisionHistory = field(default_factory=NoHistory)
    budgets: Budgets = field(default_factory=Budgets)
    budgets_currency: str = "USD"
    # role -> the catalog's agent for it: the per-agent budget's key
    agents: Mapping[str, str] = field(default_factory=dict[str, str])
    _permissions: dict[tuple[str, str], Permission | None] = field(
        default_factory=dict[tuple[str, str], Permission | None]
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.store is not None and isinstance(self.history, NoHistory):
            self.history = StoreHistory(self.store)

    def agent_for(self, role: str | None) -> str:
        return self.agents.get(role or "", role or "unknown")

    @property
    def platform(self) -> PlatformStore:
        if self.store is None:
            raise RuntimeError("acting on a decision needs the platform database (CODEXK8S_DATABASE_URL)")
        return self.store

    def permission(self, api: RepoApi, login: str) -> Permission | None:
        key = (api.full_name.lower(), login.lower())
        with self._lock:
            if key in self._permissions:
                return self._permissions[key]
        try:
            value = api.permission(login).level
        except PayloadError:
            value = None
        with self._lock:
            self._permissions[key] = value
        return value


@dataclass(frozen=True)
class ApprovalStep:
    """What a `state:approved` does to the waiting run `original`: approved (run it), expired or denied (say so),
    withdrawn (its trigger label was taken off: close the request and say so), late (the request had already
    expired: say so, once), reapplied (a lost tick: the run is asked for again)."""

    original: str
    outcome: str


@dataclass(frozen=True)
class Decided:
    """One decision and what acting on it needs. No side effect has happened yet."""

    key: str
    decision: Decision
    actor: Actor
    number: int  # where a comment goes
    issue_number: int | None
    pr_number: int | None
    event_id: str
    label: str
    approval: ApprovalStep | None = None
    comment: bool = True  # False: decided and audited, but the people concerned were already told
    budget_override: BudgetHold | None = None  # an approver's override label starts this run the budgets held


@dataclass(frozen=True)
class Moment:
    """The label changes of one API request, oldest first, and the labels after all of them."""

    events: tuple[IssueEvent, ...]
    labels: tuple[str, ...]


def parse_events(raw: Sequence[object], where: str = "issue event") -> list[IssueEvent]:
    return [IssueEvent.parse(e, where) for e in raw]


def _label_changes(events: Sequence[IssueEvent]) -> list[IssueEvent]:
    return sorted((e for e in events if e.is_label_change), key=lambda e: (e.created_at, int(e.id)))


def labels_before(events: Sequence[IssueEvent], now: Sequence[str]) -> tuple[str, ...]:
    """The labels an item had before the first of `events`: its labels `now` with every label change undone,
    newest first. For a window of an item's newest events (`RepoApi.issue_events_since`), when the events before
    it were not read. `now` must be read before the events: a change made in between is then among the events,
    and undoing it leaves its label as it was before."""
    state = {normalize(name): name for name in now}
    for event in reversed(_label_changes(events)):
        if event.event == "labeled":
            state.pop(normalize(event.label), None)
        else:
            state[normalize(event.label)] = event.label
    return tuple(state.values())


def replay(events: Sequence[IssueEvent], before: Sequence[str] = ()) -> list[Moment]:
    """Label changes grouped by moment (consecutive events of one second and one actor), each with the labels
    the issue had right after its moment; `before`: the labels it had before the first of `events`."""
    current: dict[str, str] = {normalize(name): name for name in before}
    moments: list[Moment] = []
    group: list[IssueEvent] = []
    for event in _label_changes(events):
        if group and group[-1].moment != event.moment:
            moments.append(Moment(tuple(group), tuple(current.values())))
            group = []
        if event.event == "labeled":
            current[normalize(event.label)] = event.label
        else:
            current.pop(normalize(event.label), None)
        group.append(event)
    if group:
        moments.append(Moment(tuple(group), tuple(current.values())))
    return moments


def actor_of(api: RepoApi, ctx: TickContext, user: GitHubUser) -> Actor:
    actor = Actor(user.login, user.type)
    if user.login and actor.is_human:
        return Actor(user.login, user.type, ctx.permission(api, user.login))
    return actor


def label_actor(api: RepoApi, ctx: TickContext, user: GitHubUser) -> Actor:
    """The actor of a label event that may start or approve a run, marked when it is the platform's own bot account.

    The platform's agents change labels through that account (the MCP label tool, which refuses every label that
    starts or approves a run: `domain.agent_labels`). A bot starts nothing anyway; marked, its refusal is explained
    by one comment per item, not one per event, so an agent toggling a label cannot flood the thread. A person's
    token as the credential (the local set-up, DESIGN.md) is not marked: GitHub cannot tell that person's own labels
    from the platform's, and refusing them would stop the person from using the platform at all; the label tool is
    the one gate there. When GitHub will not say who the platform is (`own_login` None, asked again next time) the
    mark is left off."""
    actor = actor_of(api, ctx, user)
    if actor.is_human or not actor.login:
        return actor
    own = api.own_login()
    if own and own.strip().lower() == actor.login.strip().lower():
        return replace(actor, platform_account=True)
    return actor


def _platform_prepared(ctx: TickContext, repository: str, number: int, label: str, actor: Actor) -> Actor:
    """A bot's label counts only on an issue the platform opened for exactly that label, as that same login."""
    if actor.is_human or not actor.login:
        return actor
    for row in ctx.history.platform_issues(repository.lower(), number):
        same_label = bool(row["trigger_label"]) and normalize(row["trigger_label"]) == normalize(label)
        if same_label and str(row["opened_by"]).lower() == actor.login.lower():
            return replace(actor, platform_prepared=True)
    return actor


def _effect(ctx: TickContext, event: IssueEvent) -> RunEffect | None:
    """What the label of `event` can start or approve: the domain's one list, which the agents' label tool refuses."""
    return run_effect(event.label, ctx.rules.labels, ctx.budgets.override_label)


# -- issues ---------------------------------------------------------------------------------------------------
def issue_label_decision(
    api: RepoApi, ctx: TickContext, number: int, event: IssueEvent, labels: tuple[str, ...]
) -> tuple[str, Decision, Actor]:
    """The decision for one label event on an issue, given the labels after its moment."""
    parsed = ctx.rules.labels.parse(event.label)
    actor = label_actor(api, ctx, event.actor)
    if parsed.kind is LabelKind.RUN:  # the database is asked only for a trigger label of a bot or the platform
        actor = _platform_prepared(ctx, api.full_name, number, event.label, actor)
    dev_run = (
        parsed.stage is not None
        and ctx.rules.stage(parsed.stage).requires_dev_run
        and ctx.history.has_stage_run(api.full_name.lower(), number, "dev", DEV_RUN_DONE, writing_only=True)
    )
    decision = decide_issue_label(IssueLabelEvent(labels, event.label, actor, bool(dev_run)), ctx.rules)
    return correlation_key(api.full_name, number, decision.trigger_label or event.label, event.id), decision, actor


def _pending(row: dict[str, object], history: DecisionHistory) -> PendingApproval:
    original = str(row["correlation_key"])
    requested = [e for e in history.events(original) if e["event_type"] == "approval.requested"]
    payload: dict[str, Any] = requested[0]["payload"] if requested else {}
    requested_at = row["requested_at"]
    assert isinstance(requested_at, datetime)
    return PendingApproval(
        stage=str(row["stage"]),
        revise=bool(row["revise"]),
        requested_at=requested_at,
        trigger_label=str(row["trigger_label"]),
        model=payload.get("model"),
        reasoning=payload.get("reasoning"),
    )


def _row_number(row: Mapping[str, object], column: str) -> int | None:
    value = row.get(column)
    return int(value) if isinstance(value, int) else None


def approval_decision(
    api: RepoApi, ctx: TickContext, number: int, event: IssueEvent, labels: Sequence[str]
) -> Decided | None:
    """`state:approved` on an issue or PR: the waiting run starts under its own key, or the approver hears why not.

    The waiting run is the newest asked for on this item or for it: one a trigger label asked for on an issue, or
    one a review asked for on a PR, approvable there and on the PR's linked issue. The run starts with the request's
    issue and PR (a review's revise works on the PR's branch wherever it was approved). `labels`: the item's labels
    after the approval's moment; a label's request whose label is no longer among them was withdrawn, and the
    approval closes it instead.

    An approval that arrives after the request expired (the expiry sweep may have marked it first) is answered
    too, once per request: the approver learns that it expired and which label starts it again."""
    repository = api.full_name.lower()
    row = ctx.history.open_approval(repository, number)
    late = False
    if row is None:
        row = ctx.history.latest_approval(repository, number)
        if row is None:
            return None
        if row["status"] not in ("approved", "applied", "expired"):
            return None
        late = row["status"] == "expired"
    original = str(row["correlation_key"])
    if row["status"] in ("approved", "applied"):
        approved = [e for e in ctx.history.events(original) if e["event_type"] == "approval.approved"]
        if not any(str(e["payload"].get("event_id")) == event.id for e in approved):
            return None
    issue_number, pr_number = _row_number(row, "issue_number"), _row_number(row, "pr_number")
    # The trigger a label asked for must still be there; a review's request (it has a PR) has no label to take off.
    trigger_labels = tuple(labels) if pr_number is None else None
    pending = _pending(row, ctx.history)
    actor = label_actor(api, ctx, event.actor)
    if row["status"] in ("approved", "applied"):
        # decided then: a lost tick, whose moment had the same labels
        decision = decide_approval(pending, actor, pending.requested_at, ctx.rules, trigger_labels)
        return Decided(original, decision, actor, number, issue_number, pr_number, event.id, pending.trigger_label,
                       ApprovalStep(original, "reapplied"))  # fmt: skip
    decision = decide_approval(pending, actor, ctx.now, ctx.rules, None if late else trigger_labels)
    event_key = correlation_key(api.full_name, number, event.label, event.id)
    if late:
        if decision.kind is DecisionKind.RUN:  # the TTL was raised after the sweep expired it: it stays expired
            return None
        told = ctx.history.has_event(original, "approval.late")
        return Decided(event_key, decision, actor, number, issue_number, pr_number, event.id, event.label,
                       ApprovalStep(original, "late"), comment=not told)  # fmt: skip
    if decision.kind is DecisionKind.RUN:
        return Decided(original, decision, actor, number, issue_number, pr_number, event.id, pending.trigger_label,
                       ApprovalStep(original, "approved"))  # fmt: skip
    outcomes = {Reason.APPROVAL_EXPIRED: "expired", Reason.APPROVAL_WITHDRAWN: "withdrawn"}
    outcome = outcomes.get(decision.reason, "denied")
    return Decided(event_key, decision, actor, number, issue_number, pr_number, event.id, event.label,
                   ApprovalStep(original, outcome))  # fmt: skip


def budget_override_decision(api: RepoApi, ctx: TickContext, number: int, event: IssueEvent) -> Decided | None:
    """The override label on an issue whose run the budgets hold: an approver of that stage starts it; anyone
    else hears who may. Without a held run the label means nothing here."""
    holds = ctx.history.open_holds(api.full_name, number)
    if not holds:
        return None
    hold = holds[0]
    held = Decision.from_dict(hold.decision)
    actor = label_actor(api, ctx, event.actor)
    decision = decide_budget_override(held, actor, ctx.rules)
    if decision is held:
        return Decided(hold.correlation_key, held, actor, number, hold.issue_number, hold.pr_number, event.id,
                       held.trigger_label or event.label, budget_override=hold)  # fmt: skip
    key = correlation_key(api.full_name, number, event.label, event.id)
    return Decided(key, decision, actor, number, number, None, event.id, event.label)


def decide_issue_moment(
    api: RepoApi, ctx: TickContext, number: int, moment: Moment, new: Sequence[IssueEvent]
) -> list[Decided]:
    """The decisions of one moment's new events: approvals, then its trigger labels decided once together."""
    added = [(e, _effect(ctx, e)) for e in new if e.event == "labeled"]
    out: list[Decided] = []
    for event, effect in added:
        decided = None
        if effect is RunEffect.APPROVAL:
            decided = approval_decision(api, ctx, number, event, moment.labels)
        elif effect is RunEffect.BUDGET_OVERRIDE:
            decided = budget_override_decision(api, ctx, number, event)
        if decided is not None:
            out.append(decided)
    runs = [e for e, effect in added if effect is RunEffect.TRIGGER]
    if runs:
        key, decision, actor = issue_label_decision(api, ctx, number, runs[0], moment.labels)
        out.append(Decided(key, decision, actor, number, number, None, runs[0].id, runs[0].label))
    return out


# -- pull requests --------------------------------------------------------------------------------------------
def pull_trigger(ctx: TickContext, events: Sequence[IssueEvent]) -> IssueEvent | None:
    """The one label of a PR moment worth deciding: `need:reviewer` if added, else a trigger label (refused)."""
    added = [(e, _effect(ctx, e)) for e in events if e.event == "labeled"]
    reviewer = [e for e, effect in added if effect is RunEffect.REVIEWER]
    runs = [e for e, effect in added if effect is RunEffect.TRIGGER]
    return (reviewer or runs or [None])[0]


def pull_label_decision(
    api: RepoApi, ctx: TickContext, number: int, event: IssueEvent, labels: tuple[str, ...]
) -> tuple[str, Decision, Actor]:
    actor = label_actor(api, ctx, event.actor)
    decision = decide_pull_request_label(PullRequestLabelEvent(labels, event.label, actor), ctx.rules)
    return correlation_key(api.full_name, number, event.label, event.id), decision, actor


def decide_pull_moment(
    api: RepoApi, ctx: TickContext, number: int, moment: Moment, new: Sequence[IssueEvent]
) -> list[Decided]:
    """The decisions of one PR moment's new events: approvals (of a revise a review asked for here), then its one
    label worth deciding (`pull_trigger`)."""
    out: list[Decided] = []
    for event in new:
        if event.event == "labeled" and _effect(ctx, event) is RunEffect.APPROVAL:
            decided = approval_decision(api, ctx, number, event, moment.labels)
            if decided is not None:
                out.append(decided)
    trigger = pull_trigger(ctx, new)
    if trigger is not None:
        key, decision, actor = pull_label_decision(api, ctx, number, trigger, moment.labels)
        out.append(Decided(key, decision, actor, number, None, number, trigger.id, trigger.label))
    return out


@dataclass(frozen=True)
class PullContext:
    """What a review decision needs to know about its PR: labels, linked issue and its labels, run history."""

    pr_labels: tuple[str, ...]
    issue_number: int | None
    issue_labels: tuple[str, ...]
    history: tuple[str, ...]
    head_elsewhere: bool = False  # a fork's PR (or one whose head repository is gone)


def pull_context(api: RepoApi, ctx: TickContext, number: int) -> PullContext:
    from github.GithubException import UnknownObjectException

    pr = PullRequest.parse(api.pull(number))
    issue_number = pr.linked_issue
    if not pr.head_is_in(api.full_name):
        # A fork's PR: a review of it revises nothing (decide_review), so its linked issue (an outsider's choice)
        # and the run history are not read.
        return PullContext(pr.labels, issue_number, (), (), head_elsewhere=True)
    issue_labels: tuple[str, ...] = ()
    if issue_number is not None:
        try:
            issue_labels = IssueItem.parse(api.issue(issue_number)).labels
        except UnknownObjectException:
            issue_number = None  # the PR names an issue that does not exist
    repository = api.full_name.lower()
    history = tuple(ctx.history.recent_stages(repository, None, number))
    if issue_number is not None:
        history += tuple(ctx.history.recent_stages(repository, issue_number, None))
    return PullContext(pr.labels, issue_number, issue_labels, history)


def review_decision(
    api: RepoApi, ctx: TickContext, number: int, review: Review, pull: PullContext
) -> tuple[str, Decision, Actor]:
    actor = actor_of(api, ctx, review.user)
    event = PullRequestReviewEvent(
        review.state, actor, pull.pr_labels, pull.issue_labels, pull.history, head_elsewhere=pull.head_elsewhere
    )
    decision = decide_review(event, ctx.rules)
    label = decision.trigger_label or "review:changes_requested"
    return correlation_key(api.full_name, number, label, review.event_id), decision, actor
