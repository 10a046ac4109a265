"""`self_improve_evidence`: when enough runs finished, an issue with the self-improve label and the evidence.

The schedule in `schedules/periodic.py` decides when (runs finished since the last evidence issue); this asset
gathers the evidence from the platform database and opens the issue, or refreshes the body of the recorded one
while no run has taken it up yet (`placement.py`): an issue that was worked on keeps the evidence its run and its
PR cite, and the new evidence goes to a new labelled issue; while its run is in flight the evidence waits and is
not recorded as prepared, so it is not used up. The label is put by the platform on an issue it opened, which the
intake sensor accepts as a trigger (see `Actor.platform_prepared`), so the self-improve agent starts with its
evidence already in the issue.

Its check: the evidence issue is open on GitHub where it should be (read back after the run), and says which issue
holds the current evidence; a GitHub repository without credentials fails it, a local repository has no issue to
keep.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dagster as dg

from ...config.models import PlatformConfig
from ...config.periodic import EVIDENCE_ISSUE_OPEN
from ...domain.labels import LabelScheme
from ...github.resource import GitHubResource
from ...insight.evidence import apply as with_delivery_metrics
from ...insight.evidence import delivery_evidence, render_targets
from ...resources import PlatformConfigResource, PlatformDatabase
from ...store import PlatformStore
from ...store.evidence import PREPARED_EVENT, RunEvidence, agent_status_lines, cadence_key, last_prepared
from ..factory import check_result, open_partition, periodic_asset
from ..periodic import ACTOR, now_utc
from ..platform_issues import open_labelled_issue, recorded_issue
from .placement import place

MARKER = "<!-- codexk8s:self-improve -->"
PURPOSE = "self-improve"
TITLE = "codex-k8s: self-improve evidence"


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
    scheme = platform.label_scheme()
    label = scheme.run_label("self-improve", False)
    body = render_evidence(evidence, label) + "\n" + render_targets(delivery)
    metadata: dict = {"finished_runs": evidence.finished, "failed": evidence.by_status.get("failed", 0)}
    metadata["evidence"] = dg.MetadataValue.md(body)
    if repo.github is None or not github.credentials().configured:
        reason = "a local repository" if repo.github is None else github.credentials().missing_reason()
        context.log.warning(f"{repo.key}: evidence prepared but no issue opened: {reason}")
        action, number, previous = "skipped", None, None
        check = check_result(platform, EVIDENCE_ISSUE_OPEN, repo.github is None, f"no evidence issue: {reason}")
    else:
        outcome = _open_or_update(github, store, repo.github, repository, body, label, scheme)
        action, number, previous = outcome.action, outcome.number, outcome.previous
        metadata["issue"] = number
        if previous is not None:
            metadata["previous_issue"] = previous
        if outcome.note:
            context.log.info(f"{repo.key}: evidence issue #{number} {action}: {outcome.note}")
        check = issue_check(platform, github, store, repo.github, repository, outcome.note)
    if action != "waiting":  # evidence that reached no issue is not used up: the next cadence gathers it again
        store.append_event(
            cadence_key(repository), PREPARED_EVENT, "system", ACTOR,
            {"finished": evidence.finished, "issue": number, "action": action, "previous_issue": previous,
             "dagster_run_id": context.run.run_id},
        )  # fmt: skip
    metadata["action"] = action
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def issue_check(
    platform: PlatformConfig,
    github: GitHubResource,
    store: PlatformStore,
    full_name: str,
    repository: str,
    note: str = "",
) -> dg.AssetCheckResult:
    """Read the issue back from GitHub: recorded, still there and open. `note` says what this run did with the
    evidence when the recorded issue alone would not tell (a new issue after a worked-on one, evidence waiting for
    a run in flight), so the check names the issue that holds the current evidence."""
    issue = recorded_issue(github.repo_api(full_name), store, repository, PURPOSE)
    if issue is None:
        return check_result(
            platform, EVIDENCE_ISSUE_OPEN, False, f"the evidence issue of {full_name} is gone from GitHub"
        )
    number, state = int(issue["number"]), str(issue.get("state"))
    text = f"#{number} is {state}" + ("" if state == "open" else ": the self-improve agent will not see it")
    text += f" ({note})" if note else ""
    return check_result(platform, EVIDENCE_ISSUE_OPEN, state == "open", text, issue=number)


@dataclass(frozen=True)
class Outcome:
    """What became of the evidence: `updated` in the recorded issue, `opened` in a new one (`previous` is the
    recorded one it follows, left as it is), or `waiting` for the recorded issue's run to finish."""

    action: Literal["opened", "updated", "waiting"]
    number: int
    note: str = ""
    previous: int | None = None


def _open_or_update(
    github: GitHubResource,
    store: PlatformStore,
    full_name: str,
    repository: str,
    body: str,
    label: str,
    scheme: LabelScheme,
) -> Outcome:
    api = github.repo_api(full_name)
    issue = recorded_issue(api, store, repository, PURPOSE)
    if issue is None:  # none recorded yet, or it is gone from GitHub
        number = open_labelled_issue(api, store, repository, PURPOSE, TITLE, body, label)
        return Outcome("opened", number)
    previous = int(issue["number"])
    placement = place(issue, label, scheme, store, repository)
    if placement.verdict == "refresh":
        api.edit_issue(previous, body=body)
        return Outcome("updated", previous)
    if placement.verdict == "wait":
        return Outcome("waiting", previous, f"{placement.reason}: the new evidence waits for it to finish")
    # The old issue keeps its body and labels: it is what its run read and what its PR cites.
    body += f"\nFollows #{previous}, which keeps its own evidence: {placement.reason}.\n"
    number = open_labelled_issue(api, store, repository, PURPOSE, TITLE, body, label)
    return Outcome("opened", number, f"it holds the evidence since #{previous}: {placement.reason}", previous)
