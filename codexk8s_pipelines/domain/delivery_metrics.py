"""Delivery insight from the audit trail: stage runs, approval latency, lead time and policy bypasses.

Pure functions over `AuditEvent`s (rows of `flow_events`, read by `store/insight.py`): the daily metric assets,
the self-improve evidence, `codexk8s trace` and the MCP tool `issue_trace` all read the same facts computed here,
so a dashboard and an evidence issue can never disagree on what a number means.

Definitions (the runbook and the asset descriptions repeat them):
- a run is identified by its correlation key. Each `run.started` opens an *attempt*, closed by the first finish
  event after it (succeeded, failed, failed.precondition, failed.outside_ops, blocked, canceled; `run.blocked`, the
  agent's own "I cannot", is a failure); a run re-executed from the Dagster UI has several. The run's outcome,
  reason, duration (start → finish) and Dagster run are its last attempt's, and it *finished* when that attempt
  did (started again and not finished yet, it is running);
- a *revise* run is one of a `:revise` label; the revise rate of a stage is revise runs per first run;
- approval latency is `approval.approved` − `approval.requested` on the same key, counted on the day it was granted;
- lead time runs from the first trigger-label decision on an issue to the merge of its PR (`pr.merged`): one per
  merge, a later one (a reopened issue) from the first decision after the previous merge. Each moment of it counts
  once, on the issue's timeline: *working* while any attempt of a run is under way (started → finished), else
  *waiting* for an approval (requested → approved, expired, denied or withdrawn), else waiting in the queue
  (requested → first start), else *other* (humans reviewing, the issue idle): lead = working + waiting + other;
- a first `run:dev` / `run:self-improve` run *needed a manual intervention* when, since the previous attempt of
  the same stage on the issue, `need:input` was set on it (by its agent, or by a decision on its trigger label),
  the run was launched or re-executed by hand (no label decision, or a second start: an override), it reruns
  an attempt that ended `failed_precondition`, or the PR was edited by hand after it (`pr.hand_edited`, seen at
  the merge: it counts for the last attempt before it, once the partition is materialised after the merge).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .correlation import parse_correlation_key
from .spend import TokenCounts
from .stages import MAIN_PATH

# Finish events of a run and the outcome each stands for.
FINISH_EVENTS: Mapping[str, str] = {
    "run.succeeded": "succeeded",
    "run.failed": "failed",
    "run.failed.precondition": "failed",
    "run.failed.outside_ops": "failed",
    "run.canceled": "canceled",
    "run.blocked": "failed",  # the agent reported it cannot go on without a human (runs.status failed)
}
# The failure reason of a finish event whose payload names none.
_DEFAULT_REASONS: Mapping[str, str] = {"run.failed.outside_ops": "outside_ops", "run.blocked": "agent_blocked"}
DECISION_EVENTS = ("run.requested", "approval.requested", "trigger.ignored", "trigger.conflict")
# What ends an approval request: granted, expired, refused, or withdrawn (its trigger label taken off).
APPROVAL_DECIDED = ("approval.approved", "approval.expired", "approval.denied", "approval.withdrawn")
MERGED_EVENT = "pr.merged"
HAND_EDITED_EVENT = "pr.hand_edited"
BYPASS_STAGES = ("dev", "self-improve")
INTERVENTIONS = ("need_input", "override", "rerun_after_failed_precondition", "hand_edited_pr")
REVIEWER = "reviewer"  # the stage column of a comment-only reviewer run (no stage of its own)


@dataclass(frozen=True)
class AuditEvent:
    """One row of `flow_events`."""

    id: int
    correlation_key: str
    event_type: str
    actor_type: str
    actor_id: str
    payload: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True)
class RunInfo:
    """What the platform's run table knows of a run (authoritative for a manual launch, which no label decision
    describes), and its usage as recorded (`run_usage`: the agent's own report, priced)."""

    stage: str | None
    revise: bool | None
    issue_number: int | None = None
    pr_number: int | None = None
    tokens: int | None = None
    cost: float | None = None
    currency: str | None = None


@dataclass(frozen=True)
class RunFact:
    correlation_key: str
    repository: str
    number: int
    stage: str
    revise: bool
    trigger_label: str
    requested_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None  # succeeded | failed | canceled; None while running
    reason: str | None
    precondition_failed: bool
    manual_launch: bool
    relaunched: bool  # started again after its first start: re-executed by hand from the Dagster UI
    dagster_run_id: str | None  # the last attempt's
    actor: str | None
    tokens: int | None = None
    cost: float | None = None
    currency: str | None = None
    # (start, finish) of every attempt, oldest first; started_at/finished_at are the last one's.
    attempts: tuple[tuple[datetime | None, datetime | None], ...] = ()

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def first_started_at(self) -> datetime | None:
        return next((start for start, _ in self.attempts if start is not None), None)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (PostgreSQL's
    percentile_cont, numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def group_by_key(events: Iterable[AuditEvent]) -> dict[str, list[AuditEvent]]:
    grouped: dict[str, list[AuditEvent]] = defaultdict(list)
    for event in events:
        grouped[event.correlation_key].append(event)
    for rows in grouped.values():
        rows.sort(key=lambda e: e.id)
    return dict(grouped)


def _first(events: Sequence[AuditEvent], *types: str) -> AuditEvent | None:
    return next((e for e in events if e.event_type in types), None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _usage(payload: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """Tokens and cost of an agent step, where the runner reported them (`usage` of `run.agent.finished`:
    `agents.usage.Usage.to_dict()`, tokens as `input`/`output`); a figure that is missing or not a number (the
    audit's redaction, an agent that said nothing) is unknown."""
    usage = payload.get("usage") or {}
    if not isinstance(usage, Mapping):
        return None, None
    input_tokens, output_tokens = (_number(usage.get(k)) for k in ("input", "output"))
    tokens = TokenCounts(
        input=int(input_tokens) if input_tokens is not None else None,
        output=int(output_tokens) if output_tokens is not None else None,
    ).total
    return tokens, _number(usage.get("cost_usd"))


@dataclass(frozen=True)
class Attempt:
    """One execution of a run: a `run.started` and the first finish event after it, before the next start (a run
    re-executed from the Dagster UI starts again). A finish with no start before it is an attempt of its own,
    untimed; a second finish of the same attempt is ignored."""

    started: AuditEvent | None
    finish: AuditEvent | None

    @property
    def duration_seconds(self) -> float | None:
        if self.started is None or self.finish is None:
            return None
        return (self.finish.at - self.started.at).total_seconds()


def attempts(events: Sequence[AuditEvent]) -> list[Attempt]:
    """The attempts of one run from its own audit rows (in id order), oldest first."""
    found: list[Attempt] = []
    for event in events:
        if event.event_type == "run.started":
            found.append(Attempt(event, None))
        elif event.event_type in FINISH_EVENTS:
            if not found:
                found.append(Attempt(None, event))
            elif found[-1].finish is None:
                found[-1] = Attempt(found[-1].started, event)
    return found


def run_fact(key: str, events: Sequence[AuditEvent], info: RunInfo | None = None) -> RunFact | None:
    """The facts of one run from its own audit rows; None when the key is not a run's (no start, no decision).
    Outcome, duration and Dagster run are the last attempt's (see the module's definitions)."""
    try:
        parsed = parse_correlation_key(key)
    except ValueError:
        return None
    requested = [e for e in events if e.event_type == "run.requested"]
    tries = attempts(events)
    if not requested and not tries:
        return None
    last = tries[-1] if tries else Attempt(None, None)
    started, finish = last.started, last.finish
    first_start = next((a.started for a in tries if a.started is not None), None)
    decision = requested[0].payload if requested else {}
    stage = (info.stage if info else None) or decision.get("stage") or REVIEWER
    revise = info.revise if info is not None and info.revise is not None else bool(decision.get("revise"))
    agent = _first(events, "run.agent.finished")
    tokens, cost = _usage(agent.payload) if agent else (None, None)
    currency = "USD" if cost is not None else None
    if info is not None and info.tokens is not None:
        tokens = info.tokens
    if info is not None and info.cost is not None:
        cost, currency = info.cost, info.currency
    reason: str | None = None
    if finish is not None and FINISH_EVENTS[finish.event_type] == "failed":
        reason = str(finish.payload.get("reason") or "") or _DEFAULT_REASONS.get(finish.event_type, "unknown")
    elif finish is not None and finish.event_type == "run.canceled":
        reason = "cancelled"
    # The latest request before the first start: after an approval the run is requested again when it is granted.
    before_start = [e for e in requested if first_start is None or e.id < first_start.id]
    approvals = any(e.event_type.startswith("approval.") for e in events)
    # The last attempt's Dagster run: its start names it, else its finish (a run cancelled before it started).
    named_by = started or finish
    run_id = named_by.payload.get("dagster_run_id") if named_by is not None else None
    return RunFact(
        correlation_key=key,
        repository=parsed.repository,
        number=parsed.number,
        stage=stage,
        revise=revise,
        trigger_label=parsed.trigger_label,
        requested_at=before_start[-1].at if before_start else None,
        started_at=started.at if started else None,
        finished_at=finish.at if finish else None,
        outcome=FINISH_EVENTS[finish.event_type] if finish else None,
        reason=reason,
        precondition_failed=finish is not None and finish.event_type == "run.failed.precondition",
        manual_launch=not requested and not approvals,
        relaunched=sum(1 for e in events if e.event_type == "run.started") > 1,
        dagster_run_id=str(run_id) if run_id is not None else None,
        actor=str(requested[0].actor_id) if requested else None,
        tokens=tokens,
        cost=cost,
        currency=currency,
        attempts=tuple((a.started.at if a.started else None, a.finish.at if a.finish else None) for a in tries),
    )


def run_facts(events: Iterable[AuditEvent], infos: Mapping[str, RunInfo] | None = None) -> list[RunFact]:
    facts = []
    for key, rows in group_by_key(events).items():
        fact = run_fact(key, rows, (infos or {}).get(key))
        if fact is not None:
            facts.append(fact)
    return facts


def finished_between(facts: Iterable[RunFact], start: datetime, end: datetime) -> list[RunFact]:
    return [f for f in facts if f.finished_at is not None and start <= f.finished_at < end]


# -- stage_metrics ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageMetric:
    repository: str
    stage: str
    runs: int
    first_runs: int
    revise_runs: int
    succeeded: int
    failed: int
    canceled: int
    success_rate: float
    p50_seconds: float | None
    p95_seconds: float | None
    revise_rate: float | None  # revise runs per first run; None without a first run
    failure_reasons: Mapping[str, int] = field(default_factory=dict)
    untimed: int = 0  # finished without a recorded start: a hole in the trace


def stage_metrics(finished: Iterable[RunFact]) -> list[StageMetric]:
    """Per repository and stage: runs finished, success rate, failure reasons, p50/p95 duration, revise rate."""
    groups: dict[tuple[str, str], list[RunFact]] = defaultdict(list)
    for fact in finished:
        groups[(fact.repository, fact.stage)].append(fact)
    rows = []
    for (repository, stage), facts in sorted(groups.items()):
        outcomes = Counter(f.outcome for f in facts)
        durations = [d for f in facts if (d := f.duration_seconds) is not None]
        first = sum(1 for f in facts if not f.revise)
        revise = len(facts) - first
        rows.append(
            StageMetric(
                repository=repository,
                stage=stage,
                runs=len(facts),
                first_runs=first,
                revise_runs=revise,
                succeeded=outcomes["succeeded"],
                failed=outcomes["failed"],
                canceled=outcomes["canceled"],
                success_rate=outcomes["succeeded"] / len(facts),
                p50_seconds=percentile(durations, 50),
                p95_seconds=percentile(durations, 95),
                revise_rate=revise / first if first else None,
                # A failed run always has a reason (run_fact); the None test only says so to the type checker.
                failure_reasons=dict(
                    sorted(Counter(f.reason for f in facts if f.outcome == "failed" and f.reason is not None).items())
                ),
                untimed=len(facts) - len(durations),
            )
        )
    return rows


# -- approval_latency ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApprovalFact:
    correlation_key: str
    repository: str
    stage: str
    requested_at: datetime | None
    granted_at: datetime | None
    expired_at: datetime | None

    @property
    def latency_hours(self) -> float | None:
        if self.requested_at is None or self.granted_at is None:
            return None
        return (self.granted_at - self.requested_at).total_seconds() / 3600.0


def approval_fact(key: str, events: Sequence[AuditEvent]) -> ApprovalFact | None:
    requested = _first(events, "approval.requested")
    granted = _first(events, "approval.approved")
    expired = _first(events, "approval.expired")
    if requested is None and granted is None and expired is None:
        return None
    try:
        repository = parse_correlation_key(key).repository
    except ValueError:
        return None
    stage = str((requested.payload if requested else {}).get("stage") or "unknown")
    return ApprovalFact(
        key,
        repository,
        stage,
        requested.at if requested else None,
        granted.at if granted else None,
        expired.at if expired else None,
    )


@dataclass(frozen=True)
class ApprovalLatency:
    repository: str
    stage: str
    granted: int
    expired: int
    p50_hours: float | None
    p95_hours: float | None
    max_hours: float | None


@dataclass(frozen=True)
class ApprovalSummary:
    rows: list[ApprovalLatency]
    granted: int
    expired: int
    p50_hours: float | None
    p95_hours: float | None


def approval_latency(facts: Iterable[ApprovalFact], start: datetime, end: datetime) -> ApprovalSummary:
    """Approvals granted in [start, end) and their latency per stage and repository; requests expired in it."""
    groups: dict[tuple[str, str], tuple[list[float], list[ApprovalFact]]] = defaultdict(lambda: ([], []))
    every: list[float] = []
    expired_total = 0
    for fact in facts:
        if fact.granted_at is not None and start <= fact.granted_at < end and fact.latency_hours is not None:
            groups[(fact.repository, fact.stage)][0].append(fact.latency_hours)
            every.append(fact.latency_hours)
        if fact.expired_at is not None and start <= fact.expired_at < end:
            groups[(fact.repository, fact.stage)][1].append(fact)
            expired_total += 1
    rows = [
        ApprovalLatency(
            repository, stage, len(lat), len(exp), percentile(lat, 50), percentile(lat, 95), max(lat, default=None)
        )
        for (repository, stage), (lat, exp) in sorted(groups.items())
    ]
    return ApprovalSummary(rows, len(every), expired_total, percentile(every, 50), percentile(every, 95))


@dataclass(frozen=True)
class SloVerdict:
    passed: bool
    description: str
    breaches: tuple[str, ...] = ()


def approval_slo(summary: ApprovalSummary, slo_hours: float) -> SloVerdict:
    """The day's p95 approval latency against the SLO; stage/repository groups above it are named."""
    breaches = tuple(
        f"{r.repository} {r.stage}: p95 {r.p95_hours:.2f} h"
        for r in summary.rows
        if r.p95_hours is not None and r.p95_hours > slo_hours
    )
    if summary.p95_hours is None:
        return SloVerdict(True, f"no approval granted this day (SLO p95 ≤ {slo_hours:g} h)", breaches)
    passed = summary.p95_hours <= slo_hours
    word = "within" if passed else "above"
    return SloVerdict(
        passed,
        f"p95 approval latency {summary.p95_hours:.2f} h over {summary.granted} approvals is {word} the SLO "
        f"of {slo_hours:g} h",
        breaches,
    )


# -- lead_time ----------------------------------------------------------------------------------------------
Interval = tuple[datetime, datetime]


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    """The intervals merged: sorted, disjoint, none empty."""
    merged: list[Interval] = []
    for low, high in sorted(i for i in intervals if i[0] < i[1]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _minus(intervals: Sequence[Interval], taken: Sequence[Interval]) -> list[Interval]:
    """The parts of a union of intervals outside another union."""
    left: list[Interval] = []
    for low, high in intervals:
        cursor = low
        for taken_low, taken_high in taken:
            if taken_high <= cursor or taken_low >= high:
                continue
            if taken_low > cursor:
                left.append((cursor, taken_low))
            cursor = max(cursor, taken_high)
        if cursor < high:
            left.append((cursor, high))
    return left


def _seconds(intervals: Iterable[Interval]) -> float:
    return sum((high - low for low, high in intervals), timedelta()).total_seconds()


@dataclass(frozen=True)
class IssueFlow:
    """The lead time of one merge: each moment between the first trigger and the merge counted once (working,
    else approval wait, else queue wait, else other), so the four parts add up to the lead time."""

    repository: str
    issue_number: int
    pr_number: int | None
    first_trigger_at: datetime
    merged_at: datetime
    profile: str
    approval_wait_seconds: float
    queue_wait_seconds: float
    working_seconds: float
    other_seconds: float  # neither an agent at work nor a wait: humans reviewing, the issue idle

    @property
    def lead_seconds(self) -> float:
        return (self.merged_at - self.first_trigger_at).total_seconds()

    @property
    def waiting_seconds(self) -> float:
        return self.approval_wait_seconds + self.queue_wait_seconds


@dataclass(frozen=True)
class Merge:
    """A PR merged for an issue, and its lead time; `flow` None when no trigger-label decision was recorded since
    the issue's previous merge (work merged outside the platform)."""

    repository: str
    issue_number: int
    pr_number: int | None
    merged_at: datetime
    flow: IssueFlow | None


def infer_profile(stages: Iterable[str], launch_profiles: Mapping[str, Sequence[str]]) -> str:
    """The shortest launch profile whose path holds every main-path stage the issue ran (an issue records no
    profile of its own: its stages say which path it took). An issue that ran no main-path stage is filed under
    the off-path stage it ran (`self-improve`, `doc-audit`, …); `unknown` when it ran none or several of them, or
    when no profile holds its stages."""
    ran = set(stages) - {REVIEWER}
    on_path = ran & set(MAIN_PATH)
    if not on_path:
        off_path = ran - set(MAIN_PATH)
        return next(iter(off_path)) if len(off_path) == 1 else "unknown"
    fitting = [(len(path), name) for name, path in launch_profiles.items() if on_path <= set(path)]
    return min(fitting)[1] if fitting else "unknown"


def issue_flows(
    repository: str,
    issue_number: int,
    events: Sequence[AuditEvent],
    launch_profiles: Mapping[str, Sequence[str]],
    run_prefix: str = "run:",
) -> list[Merge]:
    """Every merge of a PR of the issue (`pr.merged`), oldest first, each with its lead time: from the first
    trigger-label decision after the previous merge (the first merge: the first decision ever) to the merge."""
    ordered = sorted(events, key=lambda e: (e.at, e.id))
    merges = []
    since: datetime | None = None
    for merge in (e for e in ordered if e.event_type == MERGED_EVENT):
        number = int(merge.payload["number"]) if merge.payload.get("number") is not None else None
        flow = _flow(repository, issue_number, number, ordered, merge.at, since, launch_profiles, run_prefix)
        merges.append(Merge(repository, issue_number, number, merge.at, flow))
        since = merge.at
    return merges


def _flow(
    repository: str,
    issue_number: int,
    pr_number: int | None,
    ordered: Sequence[AuditEvent],
    merged_at: datetime,
    since: datetime | None,
    launch_profiles: Mapping[str, Sequence[str]],
    run_prefix: str,
) -> IssueFlow | None:
    """The lead time of the merge at `merged_at`, the previous one at `since`; None without a trigger between."""

    def is_trigger(e: AuditEvent) -> bool:
        if e.event_type not in DECISION_EVENTS:
            return False
        try:
            return parse_correlation_key(e.correlation_key).trigger_label.startswith(run_prefix)
        except ValueError:
            return False

    before = [e for e in ordered if e.at <= merged_at]
    window = [e for e in before if since is None or e.at > since]
    first = next((e for e in window if is_trigger(e)), None)
    if first is None:
        return None
    lead = (first.at, merged_at)

    def clip(low: datetime, high: datetime) -> Interval:
        return max(low, lead[0]), min(high, lead[1])

    working: list[Interval] = []
    approval: list[Interval] = []
    queue: list[Interval] = []
    stages: set[str] = set()
    in_window = {e.correlation_key for e in window}
    for key, rows in group_by_key(before).items():
        asked = _first(rows, "approval.requested")
        if asked is not None:
            decided = next((e for e in rows if e.event_type in APPROVAL_DECIDED and e.id > asked.id), None)
            approval.append(clip(asked.at, decided.at if decided else merged_at))
        fact = run_fact(key, rows)
        if fact is None:
            continue
        if fact.stage != REVIEWER and key in in_window:
            stages.add(fact.stage)
        if fact.requested_at is not None and fact.first_started_at is not None:
            queue.append(clip(fact.requested_at, fact.first_started_at))
        working += [clip(start, finish or merged_at) for start, finish in fact.attempts if start is not None]
    # Each moment once: an agent at work, else an approval awaited, else a run queued, else other.
    worked = _union(working)
    awaited = _minus(_union(approval), worked)
    queued = _minus(_union(queue), _union([*worked, *awaited]))
    other = _minus([lead], _union([*worked, *awaited, *queued]))
    return IssueFlow(
        repository,
        issue_number,
        pr_number,
        first.at,
        merged_at,
        infer_profile(stages, launch_profiles),
        _seconds(awaited),
        _seconds(queued),
        _seconds(worked),
        _seconds(other),
    )


@dataclass(frozen=True)
class LeadTime:
    profile: str
    issues: int  # merges: an issue that merged twice in the window counts twice
    p50_hours: float | None
    p95_hours: float | None
    waiting_hours: float  # approval + queue, where no agent was at work
    working_hours: float  # while any run of the issue was under way (overlapping runs counted once)
    other_hours: float  # neither waiting nor an agent at work: humans reviewing, the issue idle
    approval_hours: float = 0.0  # the approval part of waiting
    queue_hours: float = 0.0  # the queue part of waiting (requested → started, no approval awaited meanwhile)

    @property
    def waiting_share(self) -> float | None:
        total = self.waiting_hours + self.working_hours + self.other_hours
        return self.waiting_hours / total if total > 0 else None


def lead_time(flows: Iterable[IssueFlow]) -> list[LeadTime]:
    """Per launch profile: p50/p95 lead time and its parts summed over the flows (they add up to the lead)."""
    groups: dict[str, list[IssueFlow]] = defaultdict(list)
    for flow in flows:
        groups[flow.profile].append(flow)
    rows = []
    for profile, items in sorted(groups.items()):
        lead = [f.lead_seconds / 3600.0 for f in items]
        rows.append(
            LeadTime(
                profile,
                len(items),
                percentile(lead, 50),
                percentile(lead, 95),
                sum(f.waiting_seconds for f in items) / 3600.0,
                sum(f.working_seconds for f in items) / 3600.0,
                sum(f.other_seconds for f in items) / 3600.0,
                sum(f.approval_wait_seconds for f in items) / 3600.0,
                sum(f.queue_wait_seconds for f in items) / 3600.0,
            )
        )
    return rows


# -- policy_bypass_rate -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BypassFact:
    correlation_key: str
    repository: str
    issue_number: int
    stage: str
    finished_at: datetime
    interventions: tuple[str, ...]


def bypass_facts(
    issue_events: Sequence[AuditEvent],
    start: datetime,
    end: datetime,
    need_input_label: str = "need:input",
    stages: Sequence[str] = BYPASS_STAGES,
    infos: Mapping[str, RunInfo] | None = None,
) -> list[BypassFact]:
    """The first (not revise) runs of `stages` that finished in [start, end), each with the manual interventions
    seen since the previous attempt of the same stage on the same issue (see the module's definitions)."""
    facts = sorted(
        (f for f in run_facts(issue_events, infos) if f.stage in stages and not f.revise),
        key=lambda f: (f.finished_at or datetime.max.replace(tzinfo=start.tzinfo), f.correlation_key),
    )
    need = need_input_label.strip().lower()
    # Each issue's events, oldest first, with their parsed labels: every fact looks only at its own issue.
    by_issue: dict[tuple[str, int], list[tuple[AuditEvent, str]]] = defaultdict(list)
    for event in sorted(issue_events, key=lambda e: (e.at, e.id)):
        try:
            parsed = parse_correlation_key(event.correlation_key)
        except ValueError:
            continue
        by_issue[(parsed.repository, parsed.number)].append((event, parsed.trigger_label))
    attempts: dict[tuple[str, int, str], list[RunFact]] = defaultdict(list)
    for fact in facts:
        if fact.finished_at is not None:
            attempts[(fact.repository, fact.number, fact.stage)].append(fact)
    result = []
    for (repository, number, _), tries in attempts.items():
        for i, fact in enumerate(tries):
            assert fact.finished_at is not None
            if not (start <= fact.finished_at < end):
                continue
            previous = tries[i - 1] if i else None
            following = tries[i + 1] if i + 1 < len(tries) else None
            since = previous.finished_at if previous else None
            events = by_issue[(repository, number)]
            window = [(e, label) for e, label in events if (since is None or e.at > since) and e.at <= fact.finished_at]
            found: list[str] = []
            # need:input counts when it concerns this attempt: set on the run itself (the agent asked), or by a
            # decision on the same trigger label (conflicting labels, a refused actor) before it could start.
            if any(
                _sets_label(e, need)
                for e, label in window
                if e.correlation_key == fact.correlation_key
                or (e.event_type in DECISION_EVENTS and label == fact.trigger_label)
            ):
                found.append("need_input")
            if fact.manual_launch or fact.relaunched:
                found.append("override")
            if previous is not None and previous.precondition_failed:
                found.append("rerun_after_failed_precondition")
            # A hand edit is seen when the PR merges, after the run: it belongs to the last attempt before it.
            until = following.finished_at if following else None
            if any(
                e.event_type == HAND_EDITED_EVENT and e.at > fact.finished_at and (until is None or e.at <= until)
                for e, _ in events
            ):
                found.append("hand_edited_pr")
            result.append(
                BypassFact(fact.correlation_key, repository, number, fact.stage, fact.finished_at, tuple(found))
            )
    result.sort(key=lambda f: (f.finished_at, f.correlation_key))
    return result


def _sets_label(event: AuditEvent, label: str) -> bool:
    """A decision that put the label on, or a label change (by a run or an agent through MCP) that added it."""
    payload = event.payload
    if event.event_type in DECISION_EVENTS:
        return any(str(x).strip().lower() == label for x in payload.get("add_labels") or ())
    if event.event_type == "run.labels.changed":
        added = payload.get("added") or ()
        if isinstance(added, Mapping):
            added = [x for values in added.values() for x in (values or ())]
        return any(str(x).strip().lower() == label for x in added)
    return False


@dataclass(frozen=True)
class BypassRate:
    stage: str
    runs: int
    with_intervention: int
    by_kind: Mapping[str, int]

    @property
    def rate(self) -> float | None:
        return self.with_intervention / self.runs if self.runs else None

    @property
    def without_bypass(self) -> float | None:
        return 1.0 - self.with_intervention / self.runs if self.runs else None


def bypass_rates(facts: Iterable[BypassFact], stages: Sequence[str] = BYPASS_STAGES) -> list[BypassRate]:
    groups: dict[str, list[BypassFact]] = {s: [] for s in stages}
    for fact in facts:
        groups.setdefault(fact.stage, []).append(fact)
    return [
        BypassRate(
            stage,
            len(items),
            sum(1 for f in items if f.interventions),
            {k: sum(1 for f in items if k in f.interventions) for k in INTERVENTIONS},
        )
        for stage, items in groups.items()
    ]


def bypass_target(rate: BypassRate, target: float) -> SloVerdict:
    """The roadmap's target: at least `target` of the stage's runs pass without a manual intervention."""
    if not rate.runs:
        return SloVerdict(True, f"no first run:{rate.stage} run finished this day (target {target:.0%})")
    share = rate.without_bypass or 0.0
    passed = share >= target
    return SloVerdict(
        passed,
        f"{share:.1%} of {rate.runs} run:{rate.stage} runs passed without a manual intervention "
        f"({'meets' if passed else 'below'} the target {target:.0%})",
        tuple(f"{k}: {n}" for k, n in rate.by_kind.items() if n),
    )
