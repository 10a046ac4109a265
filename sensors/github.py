"""The GitHub sensors: thin Dagster glue around the intake. They decide by calling the domain, nothing else.

Each sensor evaluates every 3 seconds: it drains the webhook deliveries of its kind (one database query, no
GitHub request when none arrived) and polls a repository's listing only when its polling interval is due:
`CODEXK8S_INTAKE_POLL_SECONDS` (30) normally, `CODEXK8S_INTAKE_RECONCILE_SECONDS` (300) while the repository's
webhook delivered within the last hour, when polling is only the safety net for missed deliveries.
"""

import os
from collections.abc import Callable, Sequence
from datetime import timedelta

import dagster as dg

from codexk8s_pipelines.delivery.context import run_branch, work_branch
from codexk8s_pipelines.delivery.stage_jobs import STAGE_JOBS, StageRunConfig, stage_run_config, stage_run_tags
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.payloads import PullRequest
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store.intake import covered_deliveries, mark_drained, read_inbox

from .cursor import IntakeCursor
from .intake import IntakeKind, RunIntent, TickContext, now_utc, run_tick
from .status import skip_reason, with_status
from .tick import TICK_BUDGET_SECONDS, TICK_GRACE_SECONDS

MINIMUM_INTERVAL_SECONDS = 3  # how often webhook deliveries are drained (p95 label → run request under 5 s)
POLL_SECONDS_VAR = "CODEXK8S_INTAKE_POLL_SECONDS"
RECONCILE_SECONDS_VAR = "CODEXK8S_INTAKE_RECONCILE_SECONDS"
WEBHOOK_HEALTHY = timedelta(hours=1)


def _seconds(var: str, default: float, notes: list[str]) -> timedelta:
    """A polling interval from the environment; a bad value is named in the tick's notes, never a crash."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return timedelta(seconds=default)
    try:
        value = float(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        notes.append(f"{var}={raw!r} is not a number of seconds >= 0; using {default:g}")
        return timedelta(seconds=default)
    return timedelta(seconds=value)


def agents_by_role() -> dict[str, str]:
    """Which catalog agent each role runs: the per-agent budgets' key."""
    from codexk8s_pipelines.agents.catalog import agent_name_for_role
    from codexk8s_pipelines.domain.stages import Role

    return {role.value: agent_name_for_role(role) for role in Role}


def run_request(intent: RunIntent, branch: str | None = None) -> dg.RunRequest:
    """The run of a decided intent; `branch` (`pull_branches`) names its branch in the queue's `codexk8s/branch`."""
    d = intent.decision
    config = StageRunConfig(
        repository=intent.repository,
        correlation_key=intent.correlation_key,
        issue_number=intent.issue_number,
        pr_number=intent.pr_number,
        stage=d.stage,
        revise=d.revise,
        role=d.role or "",
        trigger_label=d.trigger_label or "",
        model=d.model or "",
        reasoning=d.reasoning or "",
        actor=intent.actor,
        discussion=d.discussion,
    )
    return dg.RunRequest(
        run_key=intent.correlation_key,
        job_name=d.job_name,
        run_config=stage_run_config(config),
        tags=stage_run_tags(config, branch),
    )


def pull_branches(intents: Sequence[RunIntent], api_for: Callable[[str], RepoApi], notes: list[str]) -> dict[str, str]:
    """The branch of each PR's run, by correlation key: the PR's head branch when it is this repository's (a review
    of the PR a dev run opened works on that run's `codex/issue-N`). An issue's run needs no request: its branch is
    its number's. Read here, after every decision, for the run queue's one-run-per-branch limit. A PR that cannot
    be read is named in the tick's notes and its run is queued under its number's branch: the run itself then
    meets any other run of its branch at its working folder's lock (`agents.workdir_lock`), and stops there."""
    branches: dict[str, str] = {}
    for intent in intents:
        if intent.pr_number is None:
            continue
        try:
            pull = PullRequest.parse(api_for(intent.repository).pull(intent.pr_number))
        except Exception as exc:
            fallback = work_branch(intent.issue_number, intent.pr_number)
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
            notes.append(f"{intent.correlation_key}: its PR's branch is unknown ({why}); queued as {fallback}")
            continue
        branches[intent.correlation_key] = run_branch(pull, intent.repository, intent.issue_number, intent.pr_number)
    return branches


def evaluate(
    kind: IntakeKind,
    cursor: str | None,
    github: GitHubResource,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    log: Callable[[str], None] | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One tick: the whole decision path, callable from a test with the same resources as the daemon."""
    reason = skip_reason(github.credentials(), platform_config.get)
    if reason is not None:
        return dg.SkipReason(reason)
    config = platform_config.get()
    repositories: Sequence[str] = [r.github.lower() for r in config.repositories if r.github]
    connector = github.connector()
    store = platform_db.store()
    budgets = config.budgets.budgets()
    ctx = TickContext(
        rules=config.rules(),
        store=store,
        now=now_utc(),
        budgets=budgets,
        budgets_currency=config.pricing.currency,
        agents=agents_by_role() if budgets.any else {},  # the catalog is read only when a budget needs its names
    )
    notes: list[str] = []
    poll = _seconds(POLL_SECONDS_VAR, 30, notes)
    reconcile = _seconds(RECONCILE_SECONDS_VAR, 300, notes)
    watched = {r.lower() for r in repositories}
    intake_cursor = IntakeCursor.from_json(cursor)
    backing_off = intake_cursor.backing_off(ctx.now) & watched  # (an unwatched one's deliveries are drained)
    inbox = read_inbox(store, kind.value, ctx.now - WEBHOOK_HEALTHY, backing_off=backing_off)
    healthy, pending = inbox.healthy, inbox.pending
    notes += [f"{name}: {intake_cursor.repo(name).backoff_reason or 'backing off'}" for name in sorted(inbox.waiting)]
    hints: dict[str, list[int]] = {}
    for delivery in pending:
        hints.setdefault(delivery.repository, []).append(delivery.item_number)

    def api_for(name: str) -> RepoApi:
        return RepoApi(connector.for_repository(name), name)

    outcome = run_tick(
        kind,
        repositories,
        api_for,
        intake_cursor,
        ctx,
        budget_seconds=TICK_BUDGET_SECONDS,
        hints=hints,
        poll_interval=lambda name: reconcile if name.lower() in healthy else poll,
        credential_of=connector.credential_of,
        grace_seconds=TICK_GRACE_SECONDS,
    )
    drained = [
        d.id
        for d in pending
        if d.repository not in watched or d.item_number in outcome.decided.get(d.repository, set())
    ]
    if inbox.read_at is not None:  # and every other delivery the decided items cover
        drained += covered_deliveries(store, kind.value, outcome.decided, inbox.read_at)
    mark_drained(store, sorted(set(drained)), ctx.now)
    # One request per run key: a held run may be started by the budgets and by an override in one tick.
    intents = list({i.correlation_key: i for i in outcome.intents}.values())
    branches = pull_branches(intents, api_for, notes)
    requests = [run_request(i, branches.get(i.correlation_key)) for i in intents]
    notes = list(dict.fromkeys(notes + outcome.notes))  # a repository backing off is named once
    for note in notes:
        if log:
            log(note)
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=outcome.cursor.to_json())
    reason = "; ".join(notes) or (
        f"nothing new in {outcome.repositories_polled} repositories polled and {len(pending)} webhook deliveries"
    )
    return dg.SensorResult(skip_reason=reason, cursor=outcome.cursor.to_json())


def _github_sensor(name: str, description: str, kind: IntakeKind) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        description=with_status(description),
        jobs=STAGE_JOBS,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        github: GitHubResource,
        platform_db: PlatformDatabase,
        platform_config: PlatformConfigResource,
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate(kind, context.cursor, github, platform_db, platform_config, context.log.warning)

    return _sensor


github_issue_labels_sensor = _github_sensor(
    "github_issue_labels_sensor",
    "Trigger labels (run:*) on issues, and state:approved for runs waiting for approval.",
    IntakeKind.ISSUE_LABELS,
)
github_pull_requests_sensor = _github_sensor(
    "github_pull_requests_sensor",
    "need:reviewer on pull requests, and reviews requesting changes (revise of the PR's stage).",
    IntakeKind.PULL_REQUESTS,
)
