"""The delivery metrics of a time window, read from the platform database: the assets, the self-improve evidence
and the CLI call these, so that every place shows the same numbers. No Dagster here.

With a repository, the store reads only that repository's range of correlation keys (`<repo>#…`); the filters
below on the parsed repository stay the definition (a key in the range that does not parse as the repository's
is still left out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..config import PlatformConfig
from ..domain import delivery_metrics as dm
from ..store import PlatformStore
from ..store import insight as q


def day_window(partition_key: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a daily partition key `YYYY-MM-DD`; a clear error for anything else."""
    try:
        day = datetime.strptime(partition_key, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"partition key {partition_key!r} is not a day YYYY-MM-DD") from exc
    return day, day + timedelta(days=1)


@dataclass(frozen=True)
class StageMetricsResult:
    rows: list[dm.StageMetric]
    runs: list[dm.RunFact]


def stage_metrics(
    store: PlatformStore, start: datetime, end: datetime, repository: str | None = None
) -> StageMetricsResult:
    """Runs finished in [start, end) (of one repository, when given) and their metrics per stage."""
    events = q.finished_run_events(store, start, end, repository)
    keys = {e.correlation_key for e in events}
    facts = dm.finished_between(dm.run_facts(events, q.run_infos(store, keys)), start, end)
    if repository is not None:
        facts = [f for f in facts if f.repository == repository.strip().lower()]
    return StageMetricsResult(dm.stage_metrics(facts), facts)


def approval_latency(
    store: PlatformStore, start: datetime, end: datetime, repository: str | None = None
) -> dm.ApprovalSummary:
    """Approvals granted (and requests expired) in [start, end), of one repository when given."""
    facts = []
    for key, rows in dm.group_by_key(q.approval_events(store, start, end, repository)).items():
        fact = dm.approval_fact(key, rows)
        if fact is not None and (repository is None or fact.repository == repository.strip().lower()):
            facts.append(fact)
    return dm.approval_latency(facts, start, end)


@dataclass(frozen=True)
class LeadTimeResult:
    rows: list[dm.LeadTime]
    flows: list[dm.IssueFlow]
    # merged, but no trigger-label decision recorded before the merge (since the issue's previous merge)
    untraced: list[tuple[str, int]]


def lead_time(
    store: PlatformStore,
    start: datetime,
    end: datetime,
    launch_profiles: Mapping[str, Sequence[str]],
    run_prefix: str = "run:",
) -> LeadTimeResult:
    """The lead time of every PR merged in [start, end): one flow per merge (an issue reopened and merged again
    has one per merge), or the issue among the untraced when nothing the platform decided led to that merge."""
    flows: list[dm.IssueFlow] = []
    untraced: list[tuple[str, int]] = []
    stories = q.stories_events(store, q.merged_issues(store, start, end))
    for (repository, number), events in sorted(stories.items()):
        for merge in dm.issue_flows(repository, number, events, launch_profiles, run_prefix):
            if not start <= merge.merged_at < end:
                continue
            if merge.flow is None:
                untraced.append((repository, number))
            else:
                flows.append(merge.flow)
    return LeadTimeResult(dm.lead_time(flows), flows, untraced)


@dataclass(frozen=True)
class BypassResult:
    rates: list[dm.BypassRate]
    runs: list[dm.BypassFact]


def policy_bypass(
    store: PlatformStore, start: datetime, end: datetime, need_input_label: str, repository: str | None = None
) -> BypassResult:
    # Every issue with a run finished this day; its rows hold that run and its earlier attempts (an agent's MCP
    # calls are left out: they never decide an intervention, and they are most of the rows).
    issues = q.issues_finished_on_day(store, start, end, repository)
    if repository is not None:
        issues = [i for i in issues if i[0] == repository.strip().lower()]
    events = q.issues_events(store, issues, without_prefix=q.MCP_PREFIX)
    infos = q.run_infos(store, {e.correlation_key for e in events})
    facts = dm.bypass_facts(events, start, end, need_input_label, infos=infos)
    return BypassResult(dm.bypass_rates(facts), facts)


@dataclass(frozen=True)
class BypassVerdict:
    """A stage's bypass rate against its target (`slo.dev_without_bypass`, `slo.self_improve_without_bypass`)."""

    target: float
    rate: dm.BypassRate
    verdict: dm.SloVerdict


def bypass_verdicts(platform: PlatformConfig, result: BypassResult) -> dict[str, BypassVerdict]:
    """The verdict of each stage with a bypass target (dev, then self-improve); a stage without a finished first
    run has an empty rate, which meets its target."""
    rates = {r.stage: r for r in result.rates}
    targets = {"dev": platform.slo.dev_without_bypass, "self-improve": platform.slo.self_improve_without_bypass}
    verdicts = {}
    for stage, target in targets.items():
        rate = rates.get(stage) or dm.BypassRate(stage, 0, 0, {})
        verdicts[stage] = BypassVerdict(target, rate, dm.bypass_target(rate, target))
    return verdicts
