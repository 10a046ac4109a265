"""`codexk8s triggers explain owner/repo#N`: the sensors' own decision for a live issue or PR, with its evidence.

It reads what the sensor reads (labels, label events with their actors, reviews) and decides the latest
trigger-relevant event with the same functions, without any side effect: no comment, no label, no audit row.

Deciding again answers "what would happen now", which is not always what happened: the run history has moved on
(a dev run that succeeded after the sensor refused `run:qa`), or the budgets held a run that deciding alone calls
a run. So when the sensor already decided the event, what it recorded comes first, and the decision made now is
shown as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from codexk8s_pipelines.domain.decisions import Decision
from codexk8s_pipelines.domain.labels import LabelKind
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.payloads import IssueEvent, IssueItem, Review

from .cursor import format_time
from .decide import (
    TickContext,
    issue_label_decision,
    labels_before,
    parse_events,
    pull_context,
    pull_label_decision,
    pull_trigger,
    replay,
    review_decision,
)

__all__ = ["LiveExplanation", "explain_live", "render_live_text"]

# What the intake records under an event's key when it decides it, and what may follow: the approval's course and
# the budgets' hold. Read back in this order of the audit.
DECIDED_EVENTS = ("run.requested", "trigger.ignored", "trigger.conflict", "approval.requested")  # the decision
RECORDED_EVENTS = (
    *DECIDED_EVENTS,
    "approval.approved",
    "approval.denied",
    "approval.expired",
    "approval.withdrawn",
    "approval.late",
    "budget.exceeded",
    "budget.overridden",
    "budget.released",
)


@dataclass
class LiveExplanation:
    target: str
    kind: str  # issue | pull_request
    title: str
    labels: list[str]
    label_events: list[dict[str, Any]]
    decided_event: str | None = None
    correlation_key: str | None = None
    decision: Decision | None = None
    run_status: str | None = None
    # What the sensor recorded for this key (its audit, oldest first): event type, time and reason or detail.
    recorded: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    notes: list[str] = field(default_factory=list[str])

    def to_dict(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"kind": None, "reason": None, "stage": None}
        base = self.decision.to_dict() if self.decision else empty
        base.update(
            target=self.target,
            item_kind=self.kind,
            title=self.title,
            labels=self.labels,
            label_events=self.label_events,
            decided_event=self.decided_event,
            correlation_key=self.correlation_key,
            run_status=self.run_status,
            recorded=self.recorded,
            notes=self.notes,
        )
        return base


def _shown(e: IssueEvent) -> dict[str, Any]:
    action = "added" if e.event == "labeled" else "removed"
    return {"id": e.id, "at": e.created_at, "action": action, "label": e.label, "actor": e.actor.login,
            "actor_type": e.actor.type}  # fmt: skip


def explain_live(api: RepoApi, ctx: TickContext, number: int, shown: int = 5) -> LiveExplanation:
    item = IssueItem.parse(api.issue(number))  # its labels before its events, as the sensor reads them
    window = api.issue_events(number)
    events = parse_events(window.items)
    # A long history is read from its newest end; the labels from before it are rebuilt as the sensor does.
    moments = replay(events, () if window.complete else labels_before(events, item.labels))
    scheme = ctx.rules.labels
    flat = [e for m in moments for e in m.events]
    result = LiveExplanation(
        target=f"{api.full_name}#{number}",
        kind="pull_request" if item.is_pull else "issue",
        title=item.title,
        labels=list(item.labels),
        label_events=[_shown(e) for e in flat[-shown:]],
    )

    def trigger(events: tuple[IssueEvent, ...]) -> IssueEvent | None:
        if item.is_pull:
            return pull_trigger(ctx, events)
        runs = [e for e in events if e.event == "labeled" and scheme.parse(e.label).kind is LabelKind.RUN]
        return runs[0] if runs else None

    candidates = [(t, m.labels) for m in moments if (t := trigger(m.events)) is not None]
    latest_label = candidates[-1] if candidates else None
    review: Review | None = None
    if item.is_pull:
        changes = [r for r in (Review.parse(x) for x in api.pull_reviews(number)) if r.requests_changes]
        review = max(changes, key=lambda r: (r.submitted_at or "", r.id)) if changes else None

    if review is not None and (latest_label is None or (review.submitted_at or "") >= latest_label[0].created_at):
        key, decision, _ = review_decision(api, ctx, number, review, pull_context(api, ctx, number))
        result.decided_event = f"review {review.id} (changes requested) by {review.user.login}"
    elif latest_label is not None:
        event, labels = latest_label
        decide = pull_label_decision if item.is_pull else issue_label_decision
        key, decision, actor = decide(api, ctx, number, event, labels)
        result.decided_event = f"label {event.label} added by {actor.login} at {event.created_at} (event {event.id})"
    else:
        result.notes.append(
            "no trigger label was ever added here" + (" and no review asked for changes" if item.is_pull else "")
        )
        return result
    result.correlation_key, result.decision = key, decision
    run = ctx.history.get_run(key)
    result.run_status = run["status"] if run else None
    result.recorded = [_recorded(e) for e in ctx.history.events(key) if e["event_type"] in RECORDED_EVENTS]
    held = [h for h in ctx.history.open_holds(api.full_name.lower(), number) if h.correlation_key == key]
    if held:
        result.notes.append(
            f"the budgets hold this run since {_at(held[0].held_at)}: it starts when a budget has room, or when an"
            " approver adds the budget override label"
        )
    if ctx.store is None:
        result.notes.append("platform database not reachable (CODEXK8S_DATABASE_URL): run history assumed empty")
    return result


def _at(value: Any) -> str:
    """An audit time as UTC, whatever the database session's zone."""
    return format_time(value) if isinstance(value, datetime) else str(value)


def _recorded(event: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = event.get("payload") or {}
    detail = payload.get("reason") or "; ".join(str(b) for b in payload.get("breaches") or ()) or None
    return {"event_type": event["event_type"], "at": _at(event["created_at"]), "detail": detail}


def _differs(result: LiveExplanation) -> bool:
    """Whether deciding now gives another answer than the sensor's own decision of the event."""
    decision = result.decision
    if decision is None or not result.recorded:
        return False
    decided = next((r for r in result.recorded if r["event_type"] in DECIDED_EVENTS), None)
    # A run the budgets held has no decision recorded until it is released (then `run.requested` follows).
    return decided is None or decided["detail"] != decision.reason.value


def render_live_text(result: LiveExplanation) -> str:
    from codexk8s_pipelines.explain import render_text

    lines = [f"{result.target} ({result.kind.replace('_', ' ')}) {result.title!r}"]
    lines.append("labels:   " + (", ".join(result.labels) or "(none)"))
    if result.label_events:
        lines.append("recent label events:")
        for e in result.label_events:
            sign = "+" if e["action"] == "added" else "-"
            lines.append(f"  {e['at']}  {sign} {e['label']}  by {e['actor']} ({e['actor_type']})")
    if result.decided_event:
        lines.append(f"decided:  {result.decided_event}")
    if result.recorded:
        lines.append("the sensor recorded:")
        for r in result.recorded:
            lines.append(f"  {r['at']}  {r['event_type']}" + (f"  ({r['detail']})" if r["detail"] else ""))
    if result.decision is not None:
        if _differs(result):
            lines.append("if decided now (the run history or the budgets changed since the sensor decided):")
        lines.append(render_text(result.decision))
        lines.append(f"run key:  {result.correlation_key}  → {result.run_status or 'no run recorded'}")
    lines.extend(f"note:     {n}" for n in result.notes)
    return "\n".join(lines)
