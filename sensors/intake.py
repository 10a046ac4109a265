"""GitHub → decision → run intent: the intake both GitHub sensors share. Plain Python, no Dagster.

Per repository and tick, two ways in, one path out:
- webhook deliveries (stored by `codexk8s webhook serve`) name the issues and PRs that changed: those are
  decided at once, costing no GitHub request when nothing arrived;
- polling, the reconciliation path: one conditional listing of what changed since the watermark (an idle
  repository costs a 304, which GitHub does not count), at a longer interval while webhooks are healthy.
Either way each changed item's label events (and reviews) are replayed by moment (`decide.replay`), decided by
the domain (`decide`), then acted on here: every decision audited in `flow_events`, side effects (comments,
`need:input`) made once per event. Progress is kept per item, so a fault costs a retry of one item.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
import requests
from github.GithubException import GithubException

from codexk8s_pipelines.domain.decisions import Decision, DecisionKind, Reason
from codexk8s_pipelines.github.api import ListTooLong, RepoApi
from codexk8s_pipelines.github.client import TOKEN_CREDENTIAL
from codexk8s_pipelines.github.payloads import IntakeKind, IssueEvent, IssueItem, PayloadError, PullRequest, Review
from codexk8s_pipelines.github.rate_limit import RateLimit, rate_limit_of
from codexk8s_pipelines.store.database import EventRecord, RunRecord, StoreError
from codexk8s_pipelines.store.insight import record_merge
from codexk8s_pipelines.store.intake import ignore_pending

from . import budget_gate
from .comment_once import post_once
from .cursor import IntakeCursor, RepoCursor, format_time, parse_time
from .decide import (
    SYSTEM_ACTOR,
    Decided,
    PullContext,
    TickContext,
    decide_issue_moment,
    decide_pull_moment,
    labels_before,
    parse_events,
    pull_context,
    replay,
    review_decision,
)
from .tick import TICK_BUDGET_SECONDS, TICK_GRACE_SECONDS, rotated
from .tick_gate import TickGate, TickOver

__all__ = ["IntakeKind", "RunIntent", "TickContext", "TickOutcome", "now_utc", "poll_repository", "run_tick"]

log = logging.getLogger(__name__)

MARKER = "<!-- codexk8s:decision {key} -->"
MAX_TRANSIENT_PER_TICK = 3  # item faults one repository may absorb in a tick before it stops for the next
LISTING_SHARE = 0.5  # of the time left, what a listing may take: the rest is for deciding the items it read
NAMED_REPOSITORIES = 3  # a note many repositories share names this many of them, and counts the others
MAX_NOTES = 12  # notes a tick gives (its skip reason); the others are counted


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
    intents: list[RunIntent] = field(default_factory=list[RunIntent])
    cursor: IntakeCursor = field(default_factory=IntakeCursor)
    notes: list[str] = field(default_factory=list[str])
    repositories_polled: int = 0
    # repository -> the items fully decided this tick
    decided: dict[str, set[int]] = field(default_factory=dict[str, set[int]])


@dataclass
class RepoResult:
    intents: list[RunIntent] = field(default_factory=list[RunIntent])
    notes: list[str] = field(default_factory=list[str])
    decided: set[int] = field(default_factory=set[int])
    polled: bool = False
    rate_limit: RateLimit | None = None  # GitHub refused the repository's credential: the tick's, not the repository's
    waiting_for: str | None = None  # the rate-limited credential the repository waits for


# -- acting -------------------------------------------------------------------------------------------------
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
            Reason.APPROVAL_WITHDRAWN,
        )
    )


def _record(api: RepoApi, ctx: TickContext, d: Decided) -> RunIntent | None:
    """Audit one decision and make its side effects, each at most once per GitHub event."""
    store = ctx.platform
    decision, actor, key = d.decision, d.actor, d.key
    if decision.kind is DecisionKind.RUN and not budget_gate.admit(api, ctx, d):
        return None  # held until the budget allows it or an approver overrides (audited and told there)
    event_type = _audit_type(decision)
    payload = {**decision.to_dict(), "actor": actor.login, "actor_type": actor.type, "event_id": d.event_id}
    if d.budget_override is not None:
        payload["budget_override_by"] = actor.login
    payload["permission"] = actor.permission.value if actor.permission else None
    audit = EventRecord(key, event_type, "human" if actor.is_human else "system", actor.login or SYSTEM_ACTOR, payload)
    repository = api.full_name.lower()
    if decision.kind is DecisionKind.RUN:  # the run and its `run.requested` in one transaction
        return _register_run(ctx, key, decision, repository, d.issue_number, d.pr_number, actor.login, audit)
    if not store.has_event(key, event_type):
        store.append_event(audit.correlation_key, event_type, audit.actor_type, audit.actor_id, payload)
    if decision.kind is DecisionKind.APPROVAL_REQUIRED and decision.stage:
        ttl = ctx.rules.stage(decision.stage).approval.ttl_hours
        store.request_approval(
            key, repository, d.issue_number, decision.stage, decision.revise, decision.trigger_label or d.label,
            actor.login, timedelta(hours=ttl), ctx.now, pr_number=d.pr_number,
        )  # fmt: skip
    if d.comment and decision.reason is Reason.PLATFORM_ACCOUNT:
        item = platform_account_key(repository, d.number)
        post_once(api, store, item, "comment.posted", d.number, (), _comment_text(decision, item, d.label))
    elif d.comment and _needs_comment(decision):
        body = _comment_text(decision, key, d.label)
        post_once(api, store, key, "comment.posted", d.number, decision.add_labels, body)
    return None


def platform_account_key(repository: str, number: int) -> str:
    """The audit key of the one comment an item gets when the platform's own account puts labels that would start
    or approve runs. Once per item, not per event as other refusals: an agent can toggle a label as fast as it
    likes, and each toggle is a new event; the refusal of each is still audited under the event's own key."""
    return f"{repository.lower()}#{number}:platform-account"


def _register_run(
    ctx: TickContext,
    key: str,
    decision: Decision,
    repository: str,
    issue_number: int | None,
    pr_number: int | None,
    actor: str,
    audit: EventRecord,
) -> RunIntent:
    """Register a decided run with its `run.requested` audit row, both in one transaction (idempotent: a tick redone
    registers and audits it once), and hand back its intent. A database that fails here leaves neither, and the
    item is decided again next tick (`is_transient`)."""
    run = RunRecord(
        correlation_key=key,
        repository=repository,
        role=decision.role or "",
        stage=decision.stage,
        revise=decision.revise,
        issue_number=issue_number,
        pr_number=pr_number,
        discussion=decision.discussion,
    )
    ctx.platform.request_run(run, audit)
    return RunIntent(key, decision, repository, issue_number, pr_number, actor)


def _transition(ctx: TickContext, original: str, status: str, approver: str | None = None) -> bool:
    """Move an approval on; one that already moved (a tick redone after a crash) is left as it is (False)."""
    try:
        ctx.platform.transition_approval(original, status, ctx.now, approver=approver)
    except StoreError as exc:
        log.info("approval %s: %s", original, exc)
        return False
    return True


def apply(api: RepoApi, ctx: TickContext, d: Decided) -> RunIntent | None:
    """Act on one decision: the approval's state and audit first, then the decision's own record."""
    if d.budget_override is not None:
        return _record(api, ctx, d) if budget_gate.record_override(ctx, d) else None
    step = d.approval
    if step is None:
        return _record(api, ctx, d)
    store = ctx.platform
    human = "human" if d.actor.is_human else "system"
    login = d.actor.login or SYSTEM_ACTOR
    if step.outcome == "approved":
        if not _transition(ctx, step.original, "approved", d.actor.login):
            # Decided while it waited, moved on since: approved on the PR and on its issue at once (the two sensors
            # tick apart), or expired. The one that moved it starts the run: one run per approval.
            return None
        store.append_event(step.original, "approval.approved", "human", d.actor.login, {"event_id": d.event_id})
        intent = _record(api, ctx, d)
        _transition(ctx, step.original, "applied")
        store.append_event(step.original, "approval.applied", "system", SYSTEM_ACTOR, {})
        return intent
    if step.outcome == "reapplied":
        return _record(api, ctx, d)
    if step.outcome == "expired":
        _transition(ctx, step.original, "expired")
        store.append_event(step.original, "approval.expired", "system", SYSTEM_ACTOR, {"seen_at_event": d.event_id})
    elif step.outcome == "late":
        if d.comment:
            store.append_event(step.original, "approval.late", human, login, {"event_id": d.event_id})
    elif step.outcome == "withdrawn":  # its trigger label was taken off: the request is closed, nothing runs
        if _transition(ctx, step.original, "withdrawn"):
            payload = {"reason": d.decision.reason.value, "message": d.decision.message, "event_id": d.event_id}
            store.append_event(step.original, "approval.withdrawn", human, login, payload)
    else:
        payload = {"reason": d.decision.reason.value, "message": d.decision.message, "event_id": d.event_id}
        store.append_event(step.original, "approval.denied", human, login, payload)
    _record(api, ctx, d)
    return None


# -- per item -----------------------------------------------------------------------------------------------
def _since(cursor: RepoCursor) -> datetime:
    horizon = cursor.horizon()
    if horizon is None:  # poll_repository decides items only once the cursor has started
        raise RuntimeError("an item is decided before its repository's cursor started")
    return horizon


def _events(api: RepoApi, cursor: RepoCursor, number: int) -> tuple[list[IssueEvent], tuple[str, ...], str | None]:
    """The item's events back to the cursor's horizon (read from the newest end, so a long history cannot hide a
    new trigger), and the labels the item had before the first of them.

    When older events were skipped, those labels are the item's current labels with the events undone
    (`labels_before`): the labels are read first and the events again after them, so every change made since the
    labels were read is among the events."""
    where = f"event of {api.full_name}#{number}"
    window = api.issue_events_since(number, _since(cursor))
    if window.complete:
        return parse_events(window.items, where), (), None
    labels = IssueItem.parse(api.issue(number), f"{api.full_name}#{number}").labels
    window = api.issue_events_since(number, _since(cursor))
    events = parse_events(window.items, where)
    return events, () if window.complete else labels_before(events, labels), window.skipped


def _decide_issue(api: RepoApi, ctx: TickContext, cursor: RepoCursor, number: int, intents: list[RunIntent]) -> None:
    """Decide the new label events of one issue, moment by moment, acting on each moment before the next."""
    events, before, skipped = _events(api, cursor, number)
    for moment in replay(events, before):
        new = [e for e in moment.events if cursor.is_new(e.id, e.created_at)]
        if not new:
            continue
        for decided in decide_issue_moment(api, ctx, number, moment, new):
            intent = apply(api, ctx, decided)
            if intent:
                intents.append(intent)
        for event in new:
            cursor.mark(event.id, event.created_at)
    if skipped:
        raise ListTooLong(skipped)  # after the newest were decided: the unread ones are audited, not lost silently


def _decide_pull(api: RepoApi, ctx: TickContext, cursor: RepoCursor, number: int, intents: list[RunIntent]) -> None:
    """Decide a PR's new label moments (need:reviewer, state:approved) and new reviews (changes requested →
    revise); record its merge (the end of its issue's lead time)."""
    events, before, skipped = _events(api, cursor, number)
    for merge in (e for e in events if e.event == "merged" and cursor.is_new(e.id, e.created_at)):
        merged = PullRequest.parse(api.pull(number))
        at = parse_time(merge.created_at)
        record_merge(ctx.platform, api.full_name, merged.linked_issue, number, merge.actor.login, at, merged.head_sha)
        cursor.mark(merge.id, merge.created_at)
    for moment in replay(events, before):
        new = [e for e in moment.events if cursor.is_new(e.id, e.created_at)]
        if not new:
            continue
        for decided in decide_pull_moment(api, ctx, number, moment, new):
            intent = apply(api, ctx, decided)
            if intent:
                intents.append(intent)
        for event in new:
            cursor.mark(event.id, event.created_at)

    window = api.pull_reviews_since(number, _since(cursor))
    reviews = [Review.parse(r, f"review on {api.full_name}#{number}") for r in window.items]
    new_reviews = [r for r in reviews if r.submitted_at and cursor.is_new(r.event_id, r.submitted_at)]
    pull: PullContext | None = None
    for review in sorted(new_reviews, key=lambda r: (r.submitted_at or "", r.id)):
        if review.requests_changes:
            pull = pull or pull_context(api, ctx, number)
            key, decision, actor = review_decision(api, ctx, number, review, pull)
            label = decision.trigger_label or "review"
            decided = Decided(key, decision, actor, number, pull.issue_number, number, review.event_id, label)
            intent = apply(api, ctx, decided)
            if intent:
                intents.append(intent)
        cursor.mark(review.event_id, review.submitted_at or "")
    if skipped or window.skipped:
        raise ListTooLong("; ".join(s for s in (skipped, window.skipped) if s))  # after the newest were decided


def is_database_blip(exc: BaseException) -> bool:
    """The platform database could not answer for a moment: a connection refused ("too many clients"), one lost in
    a failover or a restart, a statement cancelled, a deadlock. Nothing about the item."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def is_transient(exc: BaseException) -> bool:
    """Errors worth asking again next tick: rate limits, GitHub's 5xx, timeouts, lost connections, the platform
    database failing for a moment. Anything else is a permanent fault of the item (audited, then passed)."""
    if rate_limit_of(exc) is not None or is_database_blip(exc):
        return True
    if isinstance(exc, GithubException):
        return exc.status >= 500 or exc.status in (408, 409)
    return isinstance(exc, requests.RequestException | ConnectionError | TimeoutError)


def _audit_item_failure(api: RepoApi, ctx: TickContext, number: int | str, at: str, exc: BaseException) -> None:
    """A permanent failure on one issue (a 404, a malformed payload) is audited and skipped, not retried forever."""
    key = f"{api.full_name.lower()}#{number}:intake:{at}"
    message = f"{type(exc).__name__}: {str(exc)[:500]}"
    log.warning("skipping %s#%s after a permanent error: %s", api.full_name, number, message)
    ctx.platform.append_event(key, "intake.item_failed", "system", SYSTEM_ACTOR, {"error": message})


# -- per repository -----------------------------------------------------------------------------------------
def poll_repository(
    kind: IntakeKind,
    api: RepoApi,
    cursor: RepoCursor,
    ctx: TickContext,
    *,
    listing_due: bool = True,
    hinted: Iterable[int] = (),
    deadline: float | None = None,
) -> RepoResult:
    """Decide what is new in one repository: the items webhooks named (`hinted`), the items still settling and,
    when `listing_due`, everything the conditional listing shows changed.

    No item is started after `deadline` (time.monotonic()): a bulk edit of a few hundred issues takes a request or
    two each, and at GitHub's usual 0.2-0.5 s a request that alone outlasts a tick. A tick that overruns is
    discarded with its cursor, so the next one would repeat the same work and never get through. The items left
    are decided next tick: the listing is asked again without its ETag from the oldest item left (`since` stays),
    and webhook deliveries of undecided items stay pending. A listing longer than one read takes is read on from
    where it stopped next tick, and said so in the tick's notes.

    The listing itself stops asking further pages once `LISTING_SHARE` of the time left is spent, and what it read
    is decided, oldest change first, so the cursor moves on even when GitHub takes seconds a request: read whole,
    a long listing on a slow GitHub took the whole tick, every tick, and nothing in it was ever decided.

    A rate limit stops the repository where it is (`RepoResult.rate_limit`: the caller holds the credential). A
    repository that cannot be read at all (its first look, its listing) is asked again next tick once, then
    backed off, growing (`RepoCursor.repository_failed`); one that answers 404 or 403 (gone, or the platform lost
    access) has its pending webhook deliveries set aside as ignored, audited: polling reads its changes once it
    is readable again."""
    result = RepoResult()
    if cursor.backing_off(ctx.now):
        result.notes.append(f"{api.full_name}: {cursor.backoff_reason or 'backing off'}")
        return result
    hinted = list(hinted)
    try:
        if cursor.since is None:
            cursor.since = cursor.floor = api.latest_update() or format_time(ctx.now)
            cursor.polled_at = format_time(ctx.now)
            cursor.repository_read()
            result.decided.update(hinted)  # before the first look everything is history
            return result  # a new cursor starts from now: labels added before the sensor ran are history
        work: dict[int, str | None] = {}  # number -> the updated_at the listing showed (None: not listed)
        served_at: str | None = None
        watermark: str | None = None
        listing = None
        if listing_due:
            start = cursor.listing_start() or cursor.since
            listing = api.updated_since(start, cursor.etag, deadline=_listing_deadline(deadline))
            result.polled = True
            cursor.polled_at = format_time(ctx.now)
            served_at = listing.served_at
            for raw in listing.items:
                try:
                    item = IssueItem.parse(raw, f"{api.full_name} issue")
                except PayloadError as exc:
                    _audit_item_failure(api, ctx, str(raw.get("number", "?")), str(raw.get("updated_at", "?")), exc)
                    continue
                watermark = item.updated_at if watermark is None else max(watermark, item.updated_at, key=parse_time)
                if item.is_pull == (kind is IntakeKind.PULL_REQUESTS) and not cursor.item_done(
                    item.number, item.updated_at
                ):
                    work[item.number] = item.updated_at
        for number in [*(cursor.unsettled if listing_due else ()), *hinted]:
            work.setdefault(number, None)
        decide = _decide_issue if kind is IntakeKind.ISSUE_LABELS else _decide_pull
        failures = github_failures = left = 0
        ordered = sorted(work.items(), key=lambda kv: (kv[1] or "~", kv[0]))  # oldest change first
        notes = result.notes
        for done, (number, updated_at) in enumerate(ordered):
            if deadline is not None and time.monotonic() > deadline:
                left = len(ordered) - done
                notes.append(f"{api.full_name}: {left} of {len(ordered)} changed items left for the next tick")
                break
            try:
                decide(api, ctx, cursor, number, result.intents)
            except TickOver:
                raise
            except Exception as exc:
                result.rate_limit = rate_limit_of(exc, ctx.now)
                if result.rate_limit is not None:  # this item and the rest wait for the credential's limit
                    left = len(ordered) - done
                    break
                if is_transient(exc):
                    failures += 1
                    github_failures += 0 if is_database_blip(exc) else 1
                    notes.append(f"{api.full_name}#{number}: {type(exc).__name__}; retried next tick")
                    if failures >= MAX_TRANSIENT_PER_TICK:
                        break
                    continue
                _audit_item_failure(api, ctx, number, updated_at or "?", exc)
            result.decided.add(number)
            known = updated_at or cursor.items.get(str(number))
            if known is not None and (updated_at is not None or served_at is not None):
                cursor.finish_item(number, known, served_at)
        if listing is not None and failures == 0 and left == 0:
            if listing.rest_from is not None:  # more than one read takes: the next tick reads on from there
                cursor.decided_before(listing.rest_from)
                cursor.polled_at = None
                notes.append(
                    f"{api.full_name}: the listing of changes was cut after {listing.pages} pages; read and decided"
                    f" up to {listing.rest_from}, the rest next tick"
                )
            elif listing.pages == 1 and cursor.resume is None:
                if not listing.not_modified:
                    cursor.etag = listing.etag  # paired with `since`, which has not moved
                if watermark is not None:
                    cursor.maybe_advance(watermark)
            else:  # several pages, or the end of a listing read over several ticks: all of it decided
                cursor.listing_decided(watermark)
        elif failures or left:
            cursor.etag = None  # the listing was not fully decided: ask again without the ETag
            if listing is not None:
                if listing.pages > 1 or listing.rest_from is not None or cursor.resume is not None:
                    # a long listing: on from the oldest item left
                    oldest_left = [at for number, at in ordered if at is not None and number not in result.decided]
                    if listing.rest_from is not None:
                        oldest_left.append(listing.rest_from)
                    if oldest_left:  # (those before it were decided)
                        cursor.decided_before(min(oldest_left, key=parse_time))
                if left:
                    cursor.polled_at = None  # and next tick, not a reconciliation interval later
        if listing is None and github_failures and not result.decided:  # GitHub failed every item it was asked
            if cursor.repository_failed(ctx.now, f"{github_failures} items failed on GitHub") is not None:
                notes.append(f"{api.full_name}: {cursor.backoff_reason}")
        elif listing is not None or result.decided:
            cursor.repository_read()
        cursor.prune()
        return result
    except TickOver:
        raise
    except Exception as exc:  # one repository's failure must not fail the tick for the others
        result.rate_limit = rate_limit_of(exc, ctx.now)
        if result.rate_limit is not None:
            cursor.etag = None
        else:
            result.notes.append(_repository_failed(kind, api.full_name, cursor, ctx, exc))
        return result


def _listing_deadline(deadline: float | None) -> float | None:
    """When a listing stops asking for further pages: `LISTING_SHARE` of the time left, the rest for deciding."""
    if deadline is None:
        return None
    now = time.monotonic()
    return now + max(0.0, deadline - now) * LISTING_SHARE


def _unreadable(exc: BaseException) -> bool:
    """GitHub says the repository is not there for the platform: gone, or access lost (not a rate limit)."""
    return isinstance(exc, GithubException) and exc.status in (403, 404) and rate_limit_of(exc) is None


def _repository_failed(
    kind: IntakeKind, name: str, cursor: RepoCursor, ctx: TickContext, exc: BaseException, doing: str = ""
) -> str:
    """A repository that could not be read this tick, not for a rate limit (the caller holds the credential for
    that: `TickGate`): the platform database failing is asked again next tick; anything else counts towards the
    repository's backoff, and a 404 or 403 sets its pending webhook deliveries aside (audited): they would wait
    for it for good, and polling reads what they named once the repository is readable again. Returns the tick's
    note."""
    cursor.etag = None
    what = f"{doing}{type(exc).__name__}: {str(exc)[:200]}"
    log.warning("reading %s failed: %s", name, what)
    if is_database_blip(exc):
        return f"{name}: {what}; retried next tick"
    wait = cursor.repository_failed(ctx.now, what)
    note = f"{name}: {cursor.backoff_reason if wait is not None else what + '; retried next tick'}"
    if _unreadable(exc) and ctx.store is not None:
        reason = f"{name} cannot be read ({what}); polling reads its changes once it can"
        try:
            ignored = ignore_pending(ctx.store, kind.value, name, reason, ctx.now, SYSTEM_ACTOR)
        except Exception as store_exc:  # set aside next time; the tick goes on
            log.warning("setting aside the deliveries of %s failed: %s", name, store_exc)
            ignored = 0
        if ignored:
            note += f"; {ignored} of its webhook deliveries set aside as ignored"
    return note


def run_tick(
    kind: IntakeKind,
    repositories: Sequence[str],
    api_for: Callable[[str], RepoApi],
    cursor: IntakeCursor,
    ctx: TickContext,
    budget_seconds: float = TICK_BUDGET_SECONDS,
    max_workers: int = 8,
    *,
    hints: Mapping[str, Sequence[int]] | None = None,
    poll_interval: Callable[[str], timedelta] | None = None,
    credential_of: Callable[[str], str] | None = None,
    grace_seconds: float = TICK_GRACE_SECONDS,
) -> TickOutcome:
    """Decide every repository with webhook hints or a listing due (in parallel, round robin from where the last
    tick stopped) within the budget. Without `poll_interval` every repository is polled every tick. A repository
    backing off is not asked at all, not even connected to.

    The tick waits for the repositories it started until `grace_seconds` past the budget, no longer: one slow
    repository held every other repository's run requests past Dagster's 60 s, and the daemon threw the tick away
    with them. A repository still being read then is left as it was for the next tick (its worker works on a copy
    of its cursor and is refused its next request); what it already recorded in the database is recorded under
    run keys and event keys, so deciding it again next tick starts and says nothing twice.

    `credential_of` names the credential a repository is read with (one token for all of them by default): a rate
    limit GitHub gives holds that credential, every repository read with it waiting until the time GitHub gave,
    in this tick and the next ones (`IntakeCursor.rate_limits`)."""
    outcome = TickOutcome(cursor=cursor)
    if kind is IntakeKind.ISSUE_LABELS:
        for key in ctx.platform.expire_approvals(ctx.now):
            ctx.platform.append_event(
                key, "approval.expired", "system", SYSTEM_ACTOR, {"expired_at": format_time(ctx.now)}
            )
        outcome.intents.extend(_released_runs(ctx))
    if not repositories:
        return outcome
    hints = {k.lower(): v for k, v in (hints or {}).items()}
    order = rotated(repositories, cursor.next_index)
    credential: Callable[[str], str] = credential_of or (lambda _name: TOKEN_CREDENTIAL)

    def due(name: str) -> bool:
        return poll_interval is None or cursor.repo(name).poll_due(ctx.now, poll_interval(name))

    todo = {name: due(name) for name in order}
    # Each worker changes a copy: the cursor itself takes only the copies of repositories the tick waited for.
    repo_cursors = {name: cursor.repo(name).copy() for name in order}
    gate = TickGate(ctx.now, cursor.limits_at(ctx.now))
    deadline = time.monotonic() + budget_seconds

    def work(name: str) -> RepoResult | None:
        listing_due, hinted = todo[name], hints.get(name.lower(), ())
        if not listing_due and not hinted:
            return RepoResult()
        if time.monotonic() > deadline:
            return None
        repo_cursor = repo_cursors[name]
        if repo_cursor.backing_off(ctx.now):
            return RepoResult(notes=[f"{name}: {repo_cursor.backoff_reason or 'backing off'}"])
        held_by = credential(name)
        if gate.limit(held_by) is not None:
            return RepoResult(waiting_for=held_by)
        try:
            api = api_for(name)
        except Exception as exc:
            limit = rate_limit_of(exc, ctx.now)
            if limit is None:
                return RepoResult(notes=[_repository_failed(kind, name, repo_cursor, ctx, exc, "cannot connect: ")])
            result = RepoResult(rate_limit=limit)
        else:
            api.before_request = lambda: gate.check(held_by)
            result = poll_repository(
                kind, api, repo_cursor, ctx, listing_due=listing_due, hinted=hinted, deadline=deadline
            )
        if result.rate_limit is not None:
            gate.limited(held_by, result.rate_limit)
            result.waiting_for = held_by
        return result

    pool = ThreadPoolExecutor(max_workers=max_workers)
    futures: dict[str, Future[RepoResult | None]] = {name: pool.submit(work, name) for name in order}
    done, _ = wait(futures.values(), timeout=max(0.0, deadline + grace_seconds - time.monotonic()))
    gate.stop()  # the workers still reading are refused their next request
    pool.shutdown(wait=False, cancel_futures=True)
    results: dict[str, RepoResult] = {}
    for name, future in futures.items():
        result = future.result() if future in done else None
        if result is not None:
            results[name] = result
            cursor.repos[name.lower()] = repo_cursors[name]
    _collect(outcome, order, results)
    waiting = {name: r.waiting_for for name, r in results.items() if r.waiting_for is not None}
    outcome.notes.extend(_rate_limit_notes(gate.limits(), waiting, ctx))
    cursor.keep_limits(gate.limits())
    unfinished = [n for n in order if n not in results and futures[n] not in done and futures[n].running()]
    outcome.notes.extend(f"{name}: still being read when the tick ended; decided next tick" for name in unfinished)
    skipped = [n for n in order if n not in results]
    if skipped:
        outcome.notes.append(f"{len(skipped)} repositories left for the next tick (tick budget {budget_seconds:g} s)")
        cursor.next_index = list(repositories).index(skipped[0])
    outcome.notes = collapsed(outcome.notes)
    return outcome


def _collect(outcome: TickOutcome, order: Sequence[str], results: Mapping[str, RepoResult]) -> None:
    """The finished repositories' intents, decided items and notes into the tick's outcome, in the tick's order."""
    outcome.repositories_polled = sum(1 for r in results.values() if r.polled)
    for name in order:
        if name in results:
            result = results[name]
            outcome.intents.extend(result.intents)
            outcome.decided[name.lower()] = result.decided
            outcome.notes.extend(result.notes)


def _rate_limit_notes(limits: Mapping[str, RateLimit], waiting: Mapping[str, str], ctx: TickContext) -> list[str]:
    """One line per rate-limited credential with repositories waiting for it (not one per repository)."""
    counts: dict[str, int] = defaultdict(int)
    for held_by in waiting.values():
        counts[held_by] += 1
    notes: list[str] = []
    for held_by, limit in limits.items():
        if counts[held_by]:
            whose = "" if held_by == TOKEN_CREDENTIAL else f" ({held_by})"
            n = counts[held_by]
            notes.append(f"{limit.describe(ctx.now)}{whose}; {n} {'repository' if n == 1 else 'repositories'} waiting")
    return notes


def collapsed(notes: Sequence[str]) -> list[str]:
    """A tick's notes, each said once: a note many repositories share ("owner/name: <the same words>") names
    `NAMED_REPOSITORIES` of them and counts the rest, and beyond `MAX_NOTES` notes the others are counted. Dagster
    keeps a tick's skip reason whole: one sentence per repository made tens of kilobytes on every tick."""
    groups: dict[str, list[str]] = {}
    for note in notes:
        name, sep, rest = note.partition(": ")
        repo_note = sep and "/" in name and " " not in name and "#" not in name
        groups.setdefault(rest if repo_note else note, []).append(name if repo_note else "")
    said: list[str] = []
    for words, names in groups.items():
        named = [n for n in names if n]
        if len(named) <= NAMED_REPOSITORIES:
            said.extend(f"{n}: {words}" if n else words for n in dict.fromkeys(names))
        else:
            first = ", ".join(named[:NAMED_REPOSITORIES])
            said.append(f"{len(named)} repositories ({first} and {len(named) - NAMED_REPOSITORIES} more): {words}")
    if len(said) > MAX_NOTES:
        said = [*said[:MAX_NOTES], f"and {len(said) - MAX_NOTES} more notes"]
    return said


def _released_runs(ctx: TickContext) -> list[RunIntent]:
    """Runs the budgets held that now have room: requested under their own key, as if decided now."""
    intents: list[RunIntent] = []
    for hold, decision in budget_gate.released_by_budget(ctx):
        payload = {**decision.to_dict(), "actor": hold.actor, "released_from_budget_hold": True}
        audit = EventRecord(hold.correlation_key, "run.requested", "system", SYSTEM_ACTOR, payload)
        key, repository = hold.correlation_key, hold.repository
        try:
            intents.append(
                _register_run(ctx, key, decision, repository, hold.issue_number, hold.pr_number, hold.actor, audit)
            )
        except Exception as exc:  # released, not recorded: requested again next tick (`released_not_started`)
            log.warning("budget hold %s released, its run not recorded yet: %s", key, exc)
    return intents


def now_utc() -> datetime:
    return datetime.now(UTC)
