"""GitHub → decision → run intent: the intake both GitHub sensors share. Plain Python, no Dagster.

Per repository and tick: one conditional listing of what changed since the watermark (an idle repository costs a
304, which GitHub does not count against the rate limit); for each changed issue or PR its label events (and
reviews), replayed in order so each event is decided with the labels the issue had at that moment; each new
event decided by the domain; every decision audited in `flow_events`; side effects (comments, `need:input`)
made once per event. The watermark moves only past items that were fully decided.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import requests
from github.GithubException import GithubException, UnknownObjectException

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.decisions import (
    Decision,
    DecisionKind,
    IssueLabelEvent,
    PendingApproval,
    PullRequestLabelEvent,
    PullRequestReviewEvent,
    Reason,
    decide_approval,
    decide_issue_label,
    decide_pull_request_label,
    decide_review,
)
from codexk8s_pipelines.domain.labels import LabelKind, normalize
from codexk8s_pipelines.domain.rules import Actor, Rules
from codexk8s_pipelines.domain.stages import Permission
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.rate_limit import rate_limit_of
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from codexk8s_pipelines.store.findings import platform_issue_by_number

from .cursor import IntakeCursor, RepoCursor, format_time, parse_time

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "github-sensor"
MARKER = "<!-- codexk8s:decision {key} -->"
_LINKED_ISSUE = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b", re.IGNORECASE)
_BRANCH_ISSUE = re.compile(r"^codex/issue-(\d+)\b")


class IntakeKind(StrEnum):
    ISSUE_LABELS = "issue_labels"
    PULL_REQUESTS = "pull_requests"


@dataclass(frozen=True)
class RunIntent:
    """A decided run: everything the sensor needs to build a RunRequest."""

    correlation_key: str
    decision: Decision
    repository: str
    issue_number: int | None
    pr_number: int | None
    actor: str


@dataclass
class TickOutcome:
    intents: list[RunIntent] = field(default_factory=list)
    cursor: IntakeCursor = field(default_factory=IntakeCursor)
    notes: list[str] = field(default_factory=list)
    repositories_polled: int = 0


@dataclass
class TickContext:
    """What one tick shares across repositories: the rules, the store, the clock and a permission cache."""

    rules: Rules
    store: PlatformStore
    now: datetime
    _permissions: dict[tuple[str, str], Permission | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def permission(self, api: RepoApi, login: str) -> Permission | None:
        key = (api.full_name.lower(), login.lower())
        with self._lock:
            if key in self._permissions:
                return self._permissions[key]
        try:
            value: Permission | None = Permission(api.permission(login))
        except ValueError:
            value = None
        with self._lock:
            self._permissions[key] = value
        return value


# -- helpers ------------------------------------------------------------------------------------------------
def _actor(api: RepoApi, ctx: TickContext, user: dict[str, Any] | None) -> Actor:
    user = user or {}
    login = str(user.get("login") or "")
    kind = str(user.get("type") or "User")
    actor = Actor(login, kind)
    if login and actor.is_human:
        return Actor(login, kind, ctx.permission(api, login))
    return actor


def _platform_prepared(ctx: TickContext, repository: str, number: int, label: str, actor: Actor) -> Actor:
    """A bot's label counts only on an issue the platform opened for exactly that label, as that same login."""
    if actor.is_human or not actor.login:
        return actor
    for row in platform_issue_by_number(ctx.store, repository.lower(), number):
        same_label = bool(row["trigger_label"]) and normalize(row["trigger_label"]) == normalize(label)
        if same_label and str(row["opened_by"]).lower() == actor.login.lower():
            return replace(actor, platform_prepared=True)
    return actor


def _label_name(event: dict[str, Any]) -> str:
    return str((event.get("label") or {}).get("name") or "")


def _replay(events: Sequence[dict[str, Any]]) -> Iterable[tuple[dict[str, Any], tuple[str, ...]]]:
    """Each label event with the issue's labels right after it, from the issue's own event history."""
    current: dict[str, str] = {}
    for event in sorted(events, key=lambda e: (e.get("created_at") or "", int(e.get("id") or 0))):
        kind = event.get("event")
        name = _label_name(event)
        if kind == "labeled" and name:
            current[normalize(name)] = name
        elif kind == "unlabeled" and name:
            current.pop(normalize(name), None)
        else:
            continue
        yield event, tuple(current.values())


def _audit_type(decision: Decision) -> str:
    return {
        DecisionKind.RUN: "run.requested",
        DecisionKind.IGNORED: "trigger.ignored",
        DecisionKind.CONFLICT: "trigger.conflict",
        DecisionKind.APPROVAL_REQUIRED: "approval.requested",
    }[decision.kind]


def _comment_text(decision: Decision, key: str, label: str) -> str:
    title = {
        DecisionKind.CONFLICT: "Conflicting labels: no run started",
        DecisionKind.IGNORED: "No run started",
        DecisionKind.APPROVAL_REQUIRED: "Waiting for approval",
    }.get(decision.kind, "Run")
    lines = [MARKER.format(key=key), f"**{title}** for `{label}` — {decision.message}."]
    if decision.labels:
        lines.append("Labels involved: " + ", ".join(f"`{x}`" for x in decision.labels))
    if decision.add_labels:
        lines.append("Set: " + ", ".join(f"`{x}`" for x in decision.add_labels))
    if decision.suggested_labels:
        lines.append("To go on, add one of: " + ", ".join(f"`{x}`" for x in decision.suggested_labels))
    lines.append(f"Reason code: `{decision.reason.value}`")
    return "\n\n".join(lines)


def _needs_comment(decision: Decision) -> bool:
    if decision.kind in (DecisionKind.CONFLICT, DecisionKind.APPROVAL_REQUIRED):
        return True
    return decision.kind is DecisionKind.IGNORED and (
        bool(decision.add_labels)
        or decision.reason
        in (
            Reason.ACTOR_NOT_PERMITTED,
            Reason.RUN_LABEL_ON_PULL_REQUEST,
            Reason.UNKNOWN_TRIGGER_LABEL,
            Reason.APPROVER_NOT_PERMITTED,
            Reason.APPROVAL_EXPIRED,
        )
    )


def _record(
    api: RepoApi,
    ctx: TickContext,
    key: str,
    decision: Decision,
    *,
    number: int,
    issue_number: int | None,
    pr_number: int | None,
    actor: Actor,
    event_id: str,
    label: str,
) -> RunIntent | None:
    """Audit one decision and make its side effects, each at most once per GitHub event."""
    event_type = _audit_type(decision)
    first_time = not ctx.store.has_event(key, event_type)
    if first_time:
        payload = {**decision.to_dict(), "actor": actor.login, "actor_type": actor.type, "event_id": event_id}
        payload["permission"] = actor.permission.value if actor.permission else None
        actor_type = "human" if actor.is_human else "system"
        ctx.store.append_event(key, event_type, actor_type, actor.login or SYSTEM_ACTOR, payload)
    if decision.kind is DecisionKind.RUN:
        ctx.store.register_run(
            RunRecord(
                correlation_key=key,
                repository=api.full_name.lower(),
                role=decision.role or "",
                stage=decision.stage,
                revise=decision.revise,
                issue_number=issue_number,
                pr_number=pr_number,
            )
        )
        return RunIntent(key, decision, api.full_name.lower(), issue_number, pr_number, actor.login)
    if decision.kind is DecisionKind.APPROVAL_REQUIRED and decision.stage:
        ttl = ctx.rules.stage(decision.stage).approval.ttl_hours
        ctx.store.request_approval(
            key,
            api.full_name.lower(),
            issue_number,
            decision.stage,
            decision.revise,
            decision.trigger_label or label,
            actor.login,
            timedelta(hours=ttl),
            ctx.now,
        )
    if _needs_comment(decision) and not ctx.store.has_event(key, "comment.posted"):
        if decision.add_labels:
            api.add_labels(number, list(decision.add_labels))
        comment = api.create_comment(number, _comment_text(decision, key, label))
        ctx.store.append_event(key, "comment.posted", "system", SYSTEM_ACTOR, {"comment_id": comment.get("id")})
    return None


def _approval_event(
    api: RepoApi, ctx: TickContext, number: int, event: dict[str, Any], actor: Actor
) -> RunIntent | None:
    """`state:approved` on an issue with a waiting run: that run starts under its own correlation key."""
    pending_row = ctx.store.open_approval_for_issue(api.full_name.lower(), number)
    if pending_row is None:
        return None
    original = str(pending_row["correlation_key"])
    requested = [e for e in ctx.store.events(original) if e["event_type"] == "approval.requested"]
    payload = requested[0]["payload"] if requested else {}
    pending = PendingApproval(
        stage=pending_row["stage"],
        revise=bool(pending_row["revise"]),
        requested_at=pending_row["requested_at"],
        trigger_label=pending_row["trigger_label"],
        model=payload.get("model"),
        reasoning=payload.get("reasoning"),
    )
    decision = decide_approval(pending, actor, ctx.now, ctx.rules)
    event_key = correlation_key(api.full_name, number, _label_name(event), event["id"])
    if decision.kind is DecisionKind.RUN:
        ctx.store.transition_approval(original, "approved", ctx.now, approver=actor.login)
        ctx.store.append_event(original, "approval.approved", "human", actor.login, {"event_id": str(event["id"])})
        intent = _record(
            api, ctx, original, decision, number=number, issue_number=number, pr_number=None,
            actor=actor, event_id=str(event["id"]), label=pending.trigger_label,
        )  # fmt: skip
        ctx.store.transition_approval(original, "applied", ctx.now)
        ctx.store.append_event(original, "approval.applied", "system", SYSTEM_ACTOR, {})
        return intent
    if decision.reason is Reason.APPROVAL_EXPIRED:
        ctx.store.transition_approval(original, "expired", ctx.now)
        ctx.store.append_event(original, "approval.expired", "system", SYSTEM_ACTOR, {"seen_at_event": event["id"]})
    else:
        ctx.store.append_event(
            original, "approval.denied", "human" if actor.is_human else "system", actor.login or SYSTEM_ACTOR,
            {"reason": decision.reason.value, "message": decision.message, "event_id": str(event["id"])},
        )  # fmt: skip
    _record(
        api, ctx, event_key, decision, number=number, issue_number=number, pr_number=None,
        actor=actor, event_id=str(event["id"]), label=_label_name(event),
    )  # fmt: skip
    return None


# -- per item -----------------------------------------------------------------------------------------------
def _decide_issue(
    api: RepoApi, ctx: TickContext, cursor: RepoCursor, item: dict[str, Any], intents: list[RunIntent]
) -> None:
    """Decide the new label events of one issue, appending runs to `intents` as soon as each is decided."""
    number = int(item["number"])
    scheme = ctx.rules.labels
    for event, labels in _replay(api.issue_events(number)):
        if event.get("event") != "labeled" or not cursor.is_new(event["id"], event["created_at"]):
            continue
        label = _label_name(event)
        parsed = scheme.parse(label)
        if parsed.kind is LabelKind.STATE and parsed.value == "approved":
            intent = _approval_event(api, ctx, number, event, _actor(api, ctx, event.get("actor")))
            if intent:
                intents.append(intent)
        elif parsed.kind is LabelKind.RUN:
            key, decision, actor = issue_label_decision(api, ctx, number, event, labels)
            intent = _record(
                api, ctx, key, decision, number=number, issue_number=number, pr_number=None,
                actor=actor, event_id=str(event["id"]), label=label,
            )  # fmt: skip
            if intent:
                intents.append(intent)
        cursor.mark(event["id"], event["created_at"])


def issue_label_decision(
    api: RepoApi, ctx: TickContext, number: int, event: dict[str, Any], labels: tuple[str, ...]
) -> tuple[str, Decision, Actor]:
    """The decision for one label event on an issue, without side effects (the sensor and explain share it)."""
    label = _label_name(event)
    parsed = ctx.rules.labels.parse(label)
    actor = _actor(api, ctx, event.get("actor"))
    if parsed.kind is LabelKind.RUN:  # the database is asked only for a bot's trigger label, not its state labels
        actor = _platform_prepared(ctx, api.full_name, number, label, actor)
    dev_run = (
        parsed.stage is not None
        and ctx.rules.stage(parsed.stage).requires_dev_run
        and ctx.store.has_stage_run(api.full_name.lower(), number, "dev")
    )
    decision = decide_issue_label(IssueLabelEvent(labels, label, actor, bool(dev_run)), ctx.rules)
    return correlation_key(api.full_name, number, decision.trigger_label or label, event["id"]), decision, actor


def pull_label_decision(
    api: RepoApi, ctx: TickContext, number: int, event: dict[str, Any], labels: tuple[str, ...]
) -> tuple[str, Decision, Actor]:
    label = _label_name(event)
    actor = _actor(api, ctx, event.get("actor"))
    decision = decide_pull_request_label(PullRequestLabelEvent(labels, label, actor), ctx.rules)
    return correlation_key(api.full_name, number, label, event["id"]), decision, actor


@dataclass(frozen=True)
class PullContext:
    """What a review decision needs to know about its PR: labels, linked issue and its labels, run history."""

    pr_labels: tuple[str, ...]
    issue_number: int | None
    issue_labels: tuple[str, ...]
    history: tuple[str, ...]


def pull_context(api: RepoApi, ctx: TickContext, number: int) -> PullContext:
    pr = api.pull(number)
    issue_number = linked_issue(pr)
    issue_labels: tuple[str, ...] = ()
    if issue_number is not None:
        try:
            linked = api.issue(issue_number)
        except UnknownObjectException:
            linked, issue_number = {}, None  # the PR names an issue that does not exist
        issue_labels = tuple(str(x.get("name")) for x in linked.get("labels") or [])
    history = tuple(ctx.store.recent_stages(api.full_name.lower(), pr_number=number))
    if issue_number is not None:
        history += tuple(ctx.store.recent_stages(api.full_name.lower(), issue_number=issue_number))
    pr_labels = tuple(str(x.get("name")) for x in pr.get("labels") or [])
    return PullContext(pr_labels, issue_number, issue_labels, history)


def review_decision(
    api: RepoApi, ctx: TickContext, number: int, review: dict[str, Any], pull: PullContext
) -> tuple[str, Decision, Actor]:
    actor = _actor(api, ctx, review.get("user"))
    event = PullRequestReviewEvent(
        str(review.get("state") or ""), actor, pull.pr_labels, pull.issue_labels, pull.history
    )
    decision = decide_review(event, ctx.rules)
    label = decision.trigger_label or "review:changes_requested"
    return correlation_key(api.full_name, number, label, f"review-{review['id']}"), decision, actor


def linked_issue(pr: dict[str, Any]) -> int | None:
    """The issue a PR works on: `Closes #N` in its body, else a `codex/issue-N` branch."""
    m = _LINKED_ISSUE.search(str(pr.get("body") or ""))
    if m:
        return int(m.group(1))
    m = _BRANCH_ISSUE.match(str((pr.get("head") or {}).get("ref") or ""))
    return int(m.group(1)) if m else None


def _decide_pull(
    api: RepoApi, ctx: TickContext, cursor: RepoCursor, item: dict[str, Any], intents: list[RunIntent]
) -> None:
    """Decide a PR's new label events (need:reviewer) and new reviews (changes requested → revise)."""
    number = int(item["number"])
    for event, labels in _replay(api.issue_events(number)):
        if event.get("event") != "labeled" or not cursor.is_new(event["id"], event["created_at"]):
            continue
        label = _label_name(event)
        parsed = ctx.rules.labels.parse(label)
        if parsed.kind is LabelKind.RUN or normalize(label) == normalize(ctx.rules.labels.need_reviewer):
            key, decision, actor = pull_label_decision(api, ctx, number, event, labels)
            intent = _record(
                api, ctx, key, decision, number=number, issue_number=None, pr_number=number,
                actor=actor, event_id=str(event["id"]), label=label,
            )  # fmt: skip
            if intent:
                intents.append(intent)
        cursor.mark(event["id"], event["created_at"])

    new_reviews = [
        r
        for r in api.pull_reviews(number)
        if r.get("submitted_at") and cursor.is_new(f"review-{r['id']}", r["submitted_at"])
    ]
    if new_reviews:
        pull = pull_context(api, ctx, number)
        for review in sorted(new_reviews, key=lambda r: (r["submitted_at"], r["id"])):
            if normalize(str(review.get("state") or "")) == "changes_requested":
                key, decision, actor = review_decision(api, ctx, number, review, pull)
                intent = _record(
                    api, ctx, key, decision, number=number, issue_number=pull.issue_number, pr_number=number,
                    actor=actor, event_id=f"review-{review['id']}", label=decision.trigger_label or "review",
                )  # fmt: skip
                if intent:
                    intents.append(intent)
            cursor.mark(f"review-{review['id']}", review["submitted_at"])


def is_transient(exc: BaseException) -> bool:
    """Errors worth asking again next tick: rate limits, GitHub's 5xx, timeouts, lost connections."""
    if rate_limit_of(exc) is not None:
        return True
    if isinstance(exc, GithubException):
        return exc.status >= 500 or exc.status in (408, 409)
    return isinstance(exc, requests.RequestException | ConnectionError | TimeoutError)


def _audit_item_failure(api: RepoApi, ctx: TickContext, item: dict[str, Any], exc: BaseException) -> None:
    """A permanent failure on one issue (a 404, a malformed payload) is audited and skipped, not retried forever."""
    number = item.get("number", "?")
    key = f"{api.full_name.lower()}#{number}:intake:{item.get('updated_at', '?')}"
    message = f"{type(exc).__name__}: {str(exc)[:500]}"
    log.warning("skipping %s#%s after a permanent error: %s", api.full_name, number, message)
    ctx.store.append_event(key, "intake.item_failed", "system", SYSTEM_ACTOR, {"error": message})


# -- per repository -----------------------------------------------------------------------------------------
def poll_repository(
    kind: IntakeKind, api: RepoApi, cursor: RepoCursor, ctx: TickContext
) -> tuple[list[RunIntent], str | None]:
    """Decide everything new in one repository; returns the intents and a note when it could not finish."""
    if cursor.backing_off(ctx.now):
        return [], f"{api.full_name}: {cursor.backoff_reason or 'backing off'}"
    intents: list[RunIntent] = []
    try:
        if cursor.since is None:
            cursor.since = cursor.floor = api.latest_update() or format_time(ctx.now)
            return [], None  # a new cursor starts from now: labels added before the sensor ran are history
        listing = api.updated_since(cursor.since, cursor.etag)
        if listing.not_modified:
            return [], None
        decide: Callable[..., None] = _decide_issue if kind is IntakeKind.ISSUE_LABELS else _decide_pull
        watermark = cursor.since
        for item in sorted(listing.items, key=lambda i: (str(i.get("updated_at")), i.get("number", 0))):
            is_pull = "pull_request" in item
            if is_pull == (kind is IntakeKind.PULL_REQUESTS):
                try:
                    decide(api, ctx, cursor, item, intents)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    _audit_item_failure(api, ctx, item, exc)
            watermark = max(watermark, item["updated_at"], key=parse_time)
            cursor.since = watermark
        cursor.etag = listing.etag
        cursor.backoff_until = cursor.backoff_reason = None
        cursor.prune()
        return intents, None
    except Exception as exc:  # one repository's failure must not fail the tick for the others
        cursor.etag = None  # the listing was not fully decided: ask again without the ETag
        limit = rate_limit_of(exc, ctx.now)
        if limit is not None:
            cursor.backoff_until = format_time(limit.resume_at)
            cursor.backoff_reason = limit.describe(ctx.now)
            return intents, f"{api.full_name}: {cursor.backoff_reason}"
        log.warning("polling %s failed: %s", api.full_name, exc)
        return intents, f"{api.full_name}: {type(exc).__name__}: {str(exc)[:200]}; retried next tick"


def run_tick(
    kind: IntakeKind,
    repositories: Sequence[str],
    api_for: Callable[[str], RepoApi],
    cursor: IntakeCursor,
    ctx: TickContext,
    budget_seconds: float = 40.0,
    max_workers: int = 8,
) -> TickOutcome:
    """Poll every repository (in parallel, round robin from where the last tick stopped) within the budget."""
    outcome = TickOutcome(cursor=cursor)
    expired = ctx.store.expire_approvals(ctx.now) if kind is IntakeKind.ISSUE_LABELS else []
    for key in expired:
        ctx.store.append_event(key, "approval.expired", "system", SYSTEM_ACTOR, {"expired_at": format_time(ctx.now)})
    if not repositories:
        return outcome
    start = cursor.next_index % len(repositories)
    order = list(repositories[start:]) + list(repositories[:start])
    deadline = time.monotonic() + budget_seconds
    results: dict[str, tuple[list[RunIntent], str | None]] = {}

    def work(name: str) -> None:
        if time.monotonic() > deadline:
            return
        try:
            api = api_for(name)
        except Exception as exc:
            results[name] = ([], f"{name}: cannot connect: {exc}")
            return
        results[name] = poll_repository(kind, api, cursor.repo(name), ctx)

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        list(pool.map(work, order))
    polled = [n for n in order if n in results]
    outcome.repositories_polled = len(polled)
    for name in order:
        if name in results:
            intents, note = results[name]
            outcome.intents.extend(intents)
            if note:
                outcome.notes.append(note)
    skipped = len(order) - len(polled)
    if skipped:
        outcome.notes.append(f"{skipped} repositories left for the next tick (tick budget {budget_seconds:g} s)")
        first_skipped = next(n for n in order if n not in results)
        cursor.next_index = list(repositories).index(first_skipped)
    return outcome


def now_utc() -> datetime:
    return datetime.now(UTC)
