"""The GitHub sensors: thin Dagster glue around the intake. They decide by calling the domain, nothing else."""

from collections.abc import Callable, Sequence

import dagster as dg

from codexk8s_pipelines.delivery.stage_jobs import STAGE_JOBS, StageRunConfig, stage_run_config, stage_run_tags
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase

from .cursor import IntakeCursor
from .intake import IntakeKind, RunIntent, TickContext, now_utc, run_tick

TICK_BUDGET_SECONDS = 40.0  # of Dagster's 60 s per tick, leaving room to launch the run requests
MINIMUM_INTERVAL_SECONDS = 30


def run_request(intent: RunIntent) -> dg.RunRequest:
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
    )
    return dg.RunRequest(
        run_key=intent.correlation_key,
        job_name=d.job_name,
        run_config=stage_run_config(config),
        tags=stage_run_tags(config),
    )


def evaluate(
    kind: IntakeKind,
    cursor: str | None,
    github: GitHubResource,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    log: Callable[[str], None] | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One tick: the whole decision path, callable from a test with the same resources as the daemon."""
    credentials = github.credentials()
    if not credentials.configured:
        return dg.SkipReason(credentials.missing_reason())
    config = platform_config.get()
    repositories: Sequence[str] = [r.github.lower() for r in config.repositories if r.github]
    if not repositories:
        return dg.SkipReason("no GitHub repository is watched: add `github: owner/name` under repositories")
    connector = github.connector()
    ctx = TickContext(rules=config.rules(), store=platform_db.store(), now=now_utc())
    outcome = run_tick(
        kind,
        repositories,
        lambda name: RepoApi(connector.for_repository(name), name),
        IntakeCursor.from_json(cursor),
        ctx,
        budget_seconds=TICK_BUDGET_SECONDS,
    )
    for note in outcome.notes:
        if log:
            log(note)
    requests = [run_request(i) for i in outcome.intents]
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=outcome.cursor.to_json())
    reason = "; ".join(outcome.notes) or f"nothing new in {outcome.repositories_polled} repositories"
    return dg.SensorResult(skip_reason=reason, cursor=outcome.cursor.to_json())


def _github_sensor(name: str, description: str, kind: IntakeKind) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        description=description,
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
