"""`codexk8s triggers explain owner/repo#N`: the sensors' own decision for a live issue or PR, with its evidence.

It reads what the sensor reads (labels, label events with their actors, reviews) and decides the latest
trigger-relevant event with the same functions, without any side effect: no comment, no label, no audit row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codexk8s_pipelines.domain.decisions import Decision
from codexk8s_pipelines.domain.labels import LabelKind
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.payloads import IssueEvent, IssueItem, Review

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
    if ctx.store is None:
        result.notes.append("platform database not reachable (CODEXK8S_DATABASE_URL): run history assumed empty")
    return result


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
    if result.decision is not None:
        lines.append(render_text(result.decision))
        lines.append(f"run key:  {result.correlation_key}  → {result.run_status or 'no run recorded'}")
    lines.extend(f"note:     {n}" for n in result.notes)
    return "\n".join(lines)
