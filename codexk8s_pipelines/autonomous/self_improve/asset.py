"""`self_improve_evidence`: when enough runs finished, an issue with the self-improve label and the evidence.

The schedule in `schedules/periodic.py` decides when (runs finished since the last evidence issue); this asset
gathers the evidence from the platform database and opens the issue, or refreshes the body of the one still
open. The label is put by the platform on an issue it opened, which the intake sensor accepts as a trigger (see
`Actor.platform_prepared`), so the self-improve agent starts with its evidence already in the issue.

Its check: the evidence issue is open on GitHub where it should be (read back after the run); a GitHub repository
without credentials fails it, a local repository has no issue to keep.
"""

from collections.abc import Sequence

import dagster as dg

from ...config.models import PlatformConfig
from ...config.periodic import EVIDENCE_ISSUE_OPEN
from ...github.resource import GitHubResource
from ...insight.evidence import apply as with_delivery_metrics
from ...insight.evidence import delivery_evidence, render_targets
from ...resources import PlatformConfigResource, PlatformDatabase
from ...store import PlatformStore
from ...store.evidence import PREPARED_EVENT, RunEvidence, agent_status_lines, cadence_key, last_prepared
from ..factory import check_result, open_partition, periodic_asset
from ..periodic import ACTOR, now_utc
from ..platform_issues import open_labelled_issue, recorded_issue

MARKER = "<!-- codexk8s:self-improve -->"
PURPOSE = "self-improve"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def render_evidence(evidence: RunEvidence, trigger_label: str) -> str:
    """The issue body: the evidence a self-improve agent starts from, as tables a human can check."""
    since = f"since {evidence.since:%Y-%m-%d %H:%M} UTC" if evidence.since else "since the platform started"
    statuses = ", ".join(f"{s} {n}" for s, n in sorted(evidence.by_status.items())) or "none"
    lines = [
        MARKER,
        f"**Self-improve evidence** for `{evidence.repository}`: {evidence.finished} runs finished {since} "
        f"(until {evidence.until:%Y-%m-%d %H:%M} UTC; {statuses}).",
        f"Prepared by codex-k8s from its run history; `{trigger_label}` on this issue starts the self-improve "
        "agent, which proposes changes to prompts, docs and agent instructions from this evidence.",
        "",
        "### Failures by reason",
    ]
    lines += _table(("reason", "runs"), evidence.failures_by_reason) if evidence.failures_by_reason else ["None."]
    lines += ["", "### Revise runs per stage"]
    lines += _table(("stage", "revise runs"), evidence.revise_by_stage) if evidence.revise_by_stage else ["None."]
    lines += ["", "### Slowest stages"]
    if evidence.slowest_stages:
        rows = [
            (t.stage, t.runs, _duration(t.median_seconds), _duration(t.max_seconds)) for t in evidence.slowest_stages
        ]
        lines += _table(("stage", "runs", "median", "longest"), rows)
    else:
        lines.append("No timed runs.")
    lines += ["", "### Latest agent status lines"]
    if evidence.status_lines:
        for row in evidence.status_lines:
            text = " ".join(str(row["text"]).split())[:300]
            when = f"{row['created_at']:%Y-%m-%d %H:%M}"
            lines.append(f"- `{when}` {row['stage'] or '?'} (`{row['correlation_key']}`): {text}")
    else:
        lines.append("None reported.")
    return "\n".join(lines) + "\n"


@periodic_asset(
    "self_improve_evidence",
    description="Run evidence (failures, revise counts, slow stages, agent status) in an issue labelled for the "
    "self-improve agent; opened when enough runs finished since the last one.",
    kinds={"github", "postgres"},
    deps=(),
    checks={EVIDENCE_ISSUE_OPEN: "The evidence issue is open on GitHub (GitHub repositories; a local one keeps none)."},
)
def self_improve_evidence(
    context: dg.AssetExecutionContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dg.MaterializeResult:
    run = open_partition(context, platform_db, platform_config)
    platform, repo, store = run.platform, run.repo, run.store
    repository = repo.key.lower()
    now = now_utc()
    since = last_prepared(store, repository)
    lines = agent_status_lines(store, repository, since, now, platform.periodic.self_improve.status_lines)
    # Counts, failures, revise runs and slow stages as the delivery insight assets compute them, and the delivery
    # targets' verdicts: the evidence issue and the dashboards agree.
    delivery = delivery_evidence(store, platform, repository, since, now)
    evidence = with_delivery_metrics(RunEvidence(repository, since, now, status_lines=lines), delivery)
    label = platform.label_scheme().run_label("self-improve", False)
    body = render_evidence(evidence, label) + "\n" + render_targets(delivery)
    metadata: dict = {"finished_runs": evidence.finished, "failed": evidence.by_status.get("failed", 0)}
    metadata["evidence"] = dg.MetadataValue.md(body)
    if repo.github is None or not github.credentials().configured:
        reason = "a local repository" if repo.github is None else github.credentials().missing_reason()
        context.log.warning(f"{repo.key}: evidence prepared but no issue opened: {reason}")
        action, number = "skipped", None
        check = check_result(platform, EVIDENCE_ISSUE_OPEN, repo.github is None, f"no evidence issue: {reason}")
    else:
        action, number = _open_or_update(github, store, repo.github, repository, body, label)
        metadata["issue"] = number
        check = issue_check(platform, github, store, repo.github, repository)
    store.append_event(
        cadence_key(repository), PREPARED_EVENT, "system", ACTOR,
        {"finished": evidence.finished, "issue": number, "action": action, "dagster_run_id": context.run.run_id},
    )  # fmt: skip
    metadata["action"] = action
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def issue_check(
    platform: PlatformConfig, github: GitHubResource, store: PlatformStore, full_name: str, repository: str
) -> dg.AssetCheckResult:
    """Read the issue back from GitHub: recorded, still there and open."""
    issue = recorded_issue(github.repo_api(full_name), store, repository, PURPOSE)
    if issue is None:
        return check_result(
            platform, EVIDENCE_ISSUE_OPEN, False, f"the evidence issue of {full_name} is gone from GitHub"
        )
    number, state = int(issue["number"]), str(issue.get("state"))
    text = f"#{number} is {state}" + ("" if state == "open" else ": the self-improve agent will not see it")
    return check_result(platform, EVIDENCE_ISSUE_OPEN, state == "open", text, issue=number)


def _open_or_update(
    github: GitHubResource, store: PlatformStore, full_name: str, repository: str, body: str, label: str
) -> tuple[str, int]:
    api = github.repo_api(full_name)
    issue = recorded_issue(api, store, repository, PURPOSE)
    if issue is not None and issue.get("state") == "open":
        api.edit_issue(int(issue["number"]), body=body)
        return "updated", int(issue["number"])
    number = open_labelled_issue(api, store, repository, PURPOSE, "codex-k8s: self-improve evidence", body, label)
    return "opened", number
