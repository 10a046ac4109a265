"""`codexk8s triggers explain owner/repo#N`: the sensors' own decision for a live issue or PR, with its evidence.

It reads what the sensor reads (labels, label events with their actors, reviews) and decides the latest
trigger-relevant event with the same functions, without any side effect: no comment, no label, no audit row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from codexk8s_pipelines.domain.decisions import Decision
from codexk8s_pipelines.domain.labels import LabelKind, normalize
from codexk8s_pipelines.github.api import RepoApi

from .intake import (
    TickContext,
    _replay,
    issue_label_decision,
    pull_context,
    pull_label_decision,
    review_decision,
)

_TARGET = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<number>\d+)$")


def parse_target(value: str) -> tuple[str, int]:
    m = _TARGET.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not owner/repo#N (for example acme/shop#12)")
    return m["repo"].lower(), int(m["number"])


class NoHistory:
    """Stands in for the platform database when none is reachable: no earlier runs, no approvals."""

    def has_stage_run(self, *args: Any, **kw: Any) -> bool:
        return False

    def recent_stages(self, *args: Any, **kw: Any) -> list[str]:
        return []

    def get_run(self, key: str) -> None:
        return None


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
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        base = self.decision.to_dict() if self.decision else {"kind": None, "reason": None, "stage": None}
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


def explain_live(api: RepoApi, ctx: TickContext, number: int, shown: int = 5) -> LiveExplanation:
    item = api.issue(number)
    is_pull = "pull_request" in item
    replayed = list(_replay(api.issue_events(number)))
    scheme = ctx.rules.labels
    events = []
    for event, _ in replayed[-shown:]:
        actor = event.get("actor") or {}
        events.append(
            {
                "id": event["id"],
                "at": event.get("created_at"),
                "action": "added" if event.get("event") == "labeled" else "removed",
                "label": (event.get("label") or {}).get("name"),
                "actor": actor.get("login"),
                "actor_type": actor.get("type"),
            }
        )
    result = LiveExplanation(
        target=f"{api.full_name}#{number}",
        kind="pull_request" if is_pull else "issue",
        title=str(item.get("title") or ""),
        labels=[str(x.get("name")) for x in item.get("labels") or []],
        label_events=events,
    )

    def relevant(event: dict[str, Any]) -> bool:
        name = str((event.get("label") or {}).get("name") or "")
        return event.get("event") == "labeled" and (
            scheme.parse(name).kind is LabelKind.RUN or (is_pull and normalize(name) == normalize(scheme.need_reviewer))
        )

    label_candidates = [(e, labels) for e, labels in replayed if relevant(e)]
    latest_label = label_candidates[-1] if label_candidates else None
    review = None
    if is_pull:
        changes = [r for r in api.pull_reviews(number) if normalize(str(r.get("state") or "")) == "changes_requested"]
        review = max(changes, key=lambda r: (r.get("submitted_at") or "", r["id"])) if changes else None

    if review is not None and (latest_label is None or review["submitted_at"] >= latest_label[0]["created_at"]):
        key, decision, _ = review_decision(api, ctx, number, review, pull_context(api, ctx, number))
        result.decided_event = f"review {review['id']} (changes requested) by {(review.get('user') or {}).get('login')}"
    elif latest_label is not None:
        event, labels = latest_label
        decide = pull_label_decision if is_pull else issue_label_decision
        key, decision, actor = decide(api, ctx, number, event, labels)
        label = (event.get("label") or {}).get("name")
        result.decided_event = (
            f"label {label} added by {actor.login} at {event.get('created_at')} (event {event['id']})"
        )
    else:
        result.notes.append(
            "no trigger label was ever added here" + (" and no review asked for changes" if is_pull else "")
        )
        return result
    result.correlation_key, result.decision = key, decision
    run = ctx.store.get_run(key)
    result.run_status = run["status"] if run else None
    if isinstance(ctx.store, NoHistory):
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
