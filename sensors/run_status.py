"""Stage runs that end outside their ops (a launch error, a crash, a cancellation while queued) still tell the
issue and the audit trail why: the ops cover their own failures, these sensors cover the rest.

They also end what such a run left working: a run pod killed without running its `finally` (an OOM kill, a lost
node) leaves its agent pod in the agent namespace, spending model money and able to push after the issue says the
run failed. The agent runtime deletes that run's pods (`AgentRuntime.end_run_agents`: its own settings say where,
never the run's tags); the audit says which (`agent_pods.deleted`) or what could not be done
(`agent_pods.delete_failed`). This is the code location's one use of the Kubernetes API (the chart mounts its
service account token for it).
"""

import dagster as dg

from codexk8s_pipelines.agents.runtime import AgentCleanup, AgentRuntime
from codexk8s_pipelines.delivery import publish
from codexk8s_pipelines.delivery.stage_jobs import STAGE_JOBS, TAG_PREFIX
from codexk8s_pipelines.domain.correlation import parse_correlation_key
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.github.service_comment import RunView, upsert
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.usage import release_reservation

FINISHED = ("failed", "canceled", "succeeded")


def report_outside_failure(
    dagster_run: dg.DagsterRun,
    phase: str,
    message: str,
    github: GitHubResource,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    agent_runtime: AgentRuntime,
) -> str:
    """Record and show a run that ended without its ops saying so, and end the agents it left; returns what was
    done, for the tick's log."""
    # First, whatever the run's record says: nothing follows an ended run's agent, and a run its ops reported can
    # still leave one (its worker killed while deleting it). The run id is Dagster's, the namespaces the runtime's.
    agents = agent_runtime.end_run_agents(dagster_run.run_id)
    key = dagster_run.tags.get(f"{TAG_PREFIX}/correlation_key")
    if not key:
        return f"{agents.text()}; not a stage run started by the platform"
    store = platform_db.store()
    _audit_agents(store, key, agents)
    # The run has ended: a hold still kept has no usage report coming (one that came released it). First, so that
    # a run its own ops reported still gives its hold back.
    release_reservation(store, key)
    run = store.get_run(key)
    if run is None or run["status"] in FINISHED:
        return f"{agents.text()}; {key}: already reported"
    return f"{agents.text()}; {_report(dagster_run, key, phase, message, github, store, platform_config)}"


def _audit_agents(store: PlatformStore, key: str, agents: AgentCleanup) -> None:
    """One audit row when a pod was found or something failed; none when there was nothing to end."""
    payload = {"dagster_run_id": agents.run_id, "namespaces": list(agents.namespaces), "pods": list(agents.deleted)}
    if agents.gone:
        payload["already_gone"] = list(agents.gone)
    if agents.errors:
        store.append_event(
            key,
            "agent_pods.delete_failed",
            "system",
            "dagster",
            {**payload, "pods_left": list(agents.left), "errors": list(agents.errors)},
        )
    elif agents.deleted or agents.gone:
        store.append_event(key, "agent_pods.deleted", "system", "dagster", payload)


def _report(
    dagster_run: dg.DagsterRun,
    key: str,
    phase: str,
    message: str,
    github: GitHubResource,
    store: PlatformStore,
    platform_config: PlatformConfigResource,
) -> str:
    status = "canceled" if phase == "cancelled" else "failed"
    store.set_run_status(key, status, dagster_run_id=dagster_run.run_id)
    event = "run.canceled" if status == "canceled" else "run.failed.outside_ops"
    store.append_event(key, event, "system", "dagster", {"dagster_run_id": dagster_run.run_id, "message": message})
    credentials = github.credentials()
    if not credentials.configured:
        return f"{key}: recorded; no GitHub credentials to update the comment"
    repository = dagster_run.tags.get(f"{TAG_PREFIX}/repository", "")
    number = parse_correlation_key(key).number
    stage = dagster_run.tags.get(f"{TAG_PREFIX}/stage")
    view = RunView(
        correlation_key=key,
        phase=phase,
        stage=stage.removesuffix(":revise") if stage else None,
        revise=bool(stage and stage.endswith(":revise")),
        role=dagster_run.tags.get(f"{TAG_PREFIX}/role", ""),
        locale=platform_config.get().locale,
        run_url=publish.run_url(dagster_run.run_id),
        reason="run_" + status,
        message=message[:500],
        history=publish.history_for(store, repository, number),
    )
    api = github.repo_api(repository)
    comment_id = upsert(api, number, view, publish.comment_id(store, key))
    store.append_event(key, "service_comment.upserted", "system", "dagster", {"comment_id": comment_id, "phase": phase})
    return f"{key}: {status}, comment {comment_id} updated"


@dg.run_failure_sensor(
    name="stage_run_failure_sensor",
    description="Tells the issue and the audit trail about stage runs that failed outside their ops.",
    monitored_jobs=STAGE_JOBS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def stage_run_failure_sensor(
    context: dg.RunFailureSensorContext,
    github: GitHubResource,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    agent_runtime: AgentRuntime,
) -> None:
    message = context.failure_event.message or "the run failed before its steps could report"
    context.log.info(
        report_outside_failure(
            context.dagster_run, "failed", message, github, platform_db, platform_config, agent_runtime
        )
    )


@dg.run_status_sensor(
    name="stage_run_canceled_sensor",
    description="Tells the issue and the audit trail about stage runs cancelled before their agent step.",
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=STAGE_JOBS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def stage_run_canceled_sensor(
    context: dg.RunStatusSensorContext,
    github: GitHubResource,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    agent_runtime: AgentRuntime,
) -> None:
    message = "the run was cancelled in Dagster before the agent finished; nothing was pushed"
    context.log.info(
        report_outside_failure(
            context.dagster_run, "cancelled", message, github, platform_db, platform_config, agent_runtime
        )
    )
