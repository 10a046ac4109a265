"""The story of one issue, in order: every label decision, approval, run, PR and review the platform recorded.

Pure: built from `AuditEvent`s (`store/insight.issue_story_events`) and rendered as text for `codexk8s trace`, as
JSON for the MCP tool `issue_trace`, and as the collapsed "History" of the service comment. Times are shown in
UTC, whatever time zone the database session had.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .correlation import parse_correlation_key
from .delivery_metrics import FINISH_EVENTS, AuditEvent, RunFact, RunInfo, attempts, group_by_key, run_fact

# Bookkeeping rows that say nothing a human follows the story by (they stay in the audit trail).
QUIET_EVENTS = frozenset(
    {"comment.posted", "service_comment.upserted", "prompt.context.assembled", "budget.comment.posted"}
)


@dataclass(frozen=True)
class TraceStep:
    at: datetime
    actor: str
    actor_type: str
    label: str  # the trigger label (or the review) of the key the step belongs to
    event_type: str
    text: str
    correlation_key: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.astimezone(UTC).isoformat()
        return data


@dataclass(frozen=True)
class TraceRun:
    correlation_key: str
    label: str
    stage: str
    revise: bool
    outcome: str | None
    reason: str | None
    duration_seconds: float | None
    tokens: int | None
    cost: float | None
    currency: str | None
    run_url: str | None
    requested_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IssueTrace:
    repository: str
    number: int
    steps: list[TraceStep]
    runs: list[TraceRun]
    revise_loops: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "number": self.number,
            "revise_loops": self.revise_loops,
            "steps": [s.to_dict() for s in self.steps],
            "runs": [r.to_dict() for r in self.runs],
        }


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _label_of(key: str) -> str:
    try:
        return parse_correlation_key(key).trigger_label
    except ValueError:
        return key


def _describe(event: AuditEvent, run_url: Callable[[str], str], took_seconds: Mapping[int, float]) -> str:
    """One step in words; `took_seconds`: each finish event's attempt duration (its own start → it), by audit id."""
    p = event.payload
    kind = event.event_type
    label = _label_of(event.correlation_key)
    stage = p.get("stage")
    stage_text = f"{stage}{' (revise)' if p.get('revise') else ''}" if stage else "reviewer"
    reason = p.get("reason")
    message = str(p.get("message") or "").strip()
    if kind == "run.requested":
        return f"`{label}`: run requested → {stage_text}"
    if kind == "trigger.ignored":
        return f"`{label}`: refused ({reason}) {message}".rstrip()
    if kind == "trigger.conflict":
        return f"`{label}`: conflict ({reason}) {message}".rstrip()
    if kind == "approval.requested":
        return f"`{label}`: approval requested for {stage_text}"
    if kind == "approval.approved":
        return "approval granted"
    if kind == "approval.applied":
        return "approved run released"
    if kind == "approval.expired":
        return "approval expired"
    if kind == "approval.denied":
        return f"approval refused ({reason}) {message}".rstrip()
    if kind == "approval.late":
        return "approval came after the request had expired: nothing started"
    if kind == "approval.withdrawn":
        return f"approval request withdrawn: {message}" if message else "approval request withdrawn"
    if kind == "run.started":
        run_id = str(p.get("dagster_run_id") or "")
        return f"run started: {run_url(run_id)}" if run_id else "run started"
    if kind == "run.agent.started":
        return f"agent started on `{p.get('branch')}` ({p.get('mode')})"
    if kind == "run.agent.finished":
        return f"agent {p.get('status')} ({p.get('reason')}) in {duration_text(p.get('duration_seconds'))}"
    if kind == "run.agent.status_reported":
        return "agent status: " + " ".join(str(p.get("status") or "").split())[:200]
    if kind in FINISH_EVENTS:
        seconds = took_seconds.get(event.id)
        took = f" after {duration_text(seconds)}" if seconds is not None else ""
        if kind == "run.succeeded":
            return f"run succeeded{took}" + (f": {p.get('pr')}" if p.get("pr") else "")
        if kind == "run.canceled":
            return f"run cancelled{took}" + (f": {message}" if message else "")
        if kind == "run.blocked":  # the agent cannot go on without an answer: a failure of the run
            return f"run blocked{took} ({reason or 'agent_blocked'})" + (f": {message}" if message else "")
        why = reason or ("failed_precondition" if kind == "run.failed.precondition" else "outside_ops")
        return f"run failed{took} ({why})" + (f": {message}" if message else "")
    if kind in ("run.pr.created", "run.pr.updated"):
        verb = "opened" if kind == "run.pr.created" else "updated"
        return f"PR #{p.get('number')} {verb}: {p.get('url')}"
    if kind == "run.branch.restarted":
        how = "merged" if p.get("merged") else "closed"
        return (
            f"`{p.get('branch')}` started again from `{p.get('base')}`: PR #{p.get('pr')} was {how}; its former "
            f"head {str(p.get('replaced_head') or '')[:12]} stays at {p.get('kept_at')}"
        )
    if kind == "pr.merged":
        return f"PR #{p.get('number')} merged" + (f" by {p.get('merged_by')}" if p.get("merged_by") else "")
    if kind == "pr.hand_edited":
        return f"PR #{p.get('number')} edited by hand"
    if kind == "run.labels.changed":
        added = p.get("added") or []
        if isinstance(added, Mapping):
            added = sorted({x for values in added.values() for x in values or ()})
        parts = [f"-{x}" for x in p.get("removed") or []] + [f"+{x}" for x in added]
        return "labels " + " ".join(parts) if parts else "labels unchanged"
    if kind == "run.usage.recorded":
        if p.get("input") is None and p.get("output") is None:
            return f"usage unknown ({p.get('agent')} reported none)"
        cost = f"{p.get('cost')} {p.get('currency')}" if p.get("cost") is not None else "cost unknown"
        return f"usage: {p.get('input')} in · {p.get('output')} out ({p.get('model')}) · {cost}"
    if kind == "run.model.substituted":
        return f"model {p.get('requested')} unknown to {p.get('agent')}: {p.get('model')} instead"
    if kind == "budget.exceeded":
        return "budget exhausted, run held: " + "; ".join(str(b) for b in p.get("breaches") or [])
    if kind == "budget.overridden":
        return f"budget overridden ({p.get('label')})"
    if kind == "budget.released":
        return "budget has room again: held run released"
    if kind == "intake.item_failed":
        return f"intake failed: {p.get('error')}"
    return kind


def build_trace(
    repository: str,
    number: int,
    events: Sequence[AuditEvent],
    run_url: Callable[[str], str],
    infos: Mapping[str, RunInfo] | None = None,
    verbose: bool = False,
) -> IssueTrace:
    """The issue's steps in the order they happened (time, then audit id) and one line per run."""
    facts: dict[str, RunFact] = {}
    took_seconds: dict[int, float] = {}
    for key, rows in group_by_key(events).items():
        fact = run_fact(key, rows, (infos or {}).get(key))
        if fact is not None and (fact.started_at is not None or fact.requested_at is not None):
            facts[key] = fact
            for attempt in attempts(rows):
                if attempt.finish is not None and (seconds := attempt.duration_seconds) is not None:
                    took_seconds[attempt.finish.id] = seconds
    steps = [
        TraceStep(
            e.at,
            e.actor_id,
            e.actor_type,
            _label_of(e.correlation_key),
            e.event_type,
            _describe(e, run_url, took_seconds),
            e.correlation_key,
        )
        for e in sorted(events, key=lambda e: (e.at, e.id))
        if verbose or (e.event_type not in QUIET_EVENTS and not e.event_type.startswith("mcp."))
    ]
    runs = [
        TraceRun(
            f.correlation_key,
            f.trigger_label,
            f.stage,
            f.revise,
            f.outcome,
            f.reason,
            f.duration_seconds,
            f.tokens,
            f.cost,
            f.currency,
            run_url(f.dagster_run_id) if f.dagster_run_id else None,
            f.actor,
        )
        for f in sorted(
            facts.values(), key=lambda f: (f.first_started_at or f.requested_at or f.finished_at, f.correlation_key)
        )
    ]
    return IssueTrace(repository, number, steps, runs, sum(1 for r in runs if r.revise))


def render_trace(trace: IssueTrace) -> str:
    lines = [
        f"{trace.repository}#{trace.number}: {len(trace.steps)} steps, {len(trace.runs)} runs, "
        f"{trace.revise_loops} revise loops"
    ]
    if not trace.steps:
        lines.append("nothing recorded for this issue")
        return "\n".join(lines)
    width = max(len(s.actor) for s in trace.steps)
    for step in trace.steps:
        when = step.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"  {when}  {step.actor:<{width}}  {step.text}")
    if trace.runs:
        lines += ["", "runs:"]
        for run in trace.runs:
            lines.append("  " + run_line(run))
    return "\n".join(lines)


def run_line(run: TraceRun) -> str:
    outcome = {"canceled": "cancelled", None: "not finished"}.get(run.outcome, run.outcome or "")
    if run.reason and run.outcome == "failed":
        outcome += f" ({run.reason})"
    parts = [
        f"`{run.label}`",
        f"{run.stage}{' (revise)' if run.revise else ''}",
        outcome,
        duration_text(run.duration_seconds),
    ]
    if run.tokens is not None:
        parts.append(f"{run.tokens} tokens")
    if run.cost is not None:
        parts.append(f"${run.cost:.2f}" if run.currency in (None, "USD") else f"{run.cost:.2f} {run.currency}")
    if run.run_url:
        parts.append(run.run_url)
    return " · ".join(parts)


def render_history_markdown(trace: IssueTrace, limit: int = 40) -> str:
    """The collapsed "History" of the service comment: the latest `limit` steps, oldest first."""
    if not trace.steps:
        return ""
    shown = trace.steps[-limit:]
    lines = ["<details><summary>History</summary>", ""]
    if len(trace.steps) > len(shown):
        lines.append(
            f"_{len(trace.steps) - len(shown)} earlier steps: `codexk8s trace {trace.repository}#{trace.number}`_"
        )
        lines.append("")
    for step in shown:
        lines.append(f"- `{step.at.astimezone(UTC):%Y-%m-%d %H:%M}` {step.actor}: {step.text}")
    lines += ["", "</details>"]
    return "\n".join(lines)
