"""The `stage_<stage>` jobs the sensors launch, built by one factory from the stage catalog.

What exists now: the typed run config the sensors fill in, and `prepare_context`, which marks the platform's run
as running (it also registers runs launched by hand from the UI) and audits `run.started`. The agent step is
issue #4's work; until it lands `run_agent` fails the run with that explanation and records the failure, so a
label never ends in a run that silently "succeeds" without an agent.
"""

from typing import Any

import dagster as dg

from ..domain.stages import REVIEWER_JOB_NAME, STAGES
from ..resources import PlatformDatabase
from ..store.database import RunRecord

TAG_PREFIX = "codexk8s"


class StageRunConfig(dg.Config):
    """What a stage run works on. No secret goes here: the UI shows run config."""

    repository: str
    correlation_key: str
    issue_number: int | None = None
    pr_number: int | None = None
    stage: str | None = None
    revise: bool = False
    role: str
    trigger_label: str
    model: str
    reasoning: str
    actor: str = ""


def stage_run_config(config: StageRunConfig) -> dict[str, Any]:
    return {"ops": {"prepare_context": {"config": config.model_dump()}}}


def stage_run_tags(config: StageRunConfig) -> dict[str, str]:
    """Tags shown in the UI and used by the run queue's concurrency limits (per issue, per repository)."""
    tags = {
        f"{TAG_PREFIX}/repository": config.repository,
        f"{TAG_PREFIX}/role": config.role,
        f"{TAG_PREFIX}/trigger": config.trigger_label,
        f"{TAG_PREFIX}/actor": config.actor or "unknown",
        f"{TAG_PREFIX}/correlation_key": config.correlation_key,
    }
    if config.stage:
        tags[f"{TAG_PREFIX}/stage"] = config.stage + (":revise" if config.revise else "")
    if config.issue_number is not None:
        tags[f"{TAG_PREFIX}/issue"] = f"{config.repository}#{config.issue_number}"
    if config.pr_number is not None:
        tags[f"{TAG_PREFIX}/pr"] = f"{config.repository}#{config.pr_number}"
    return tags


@dg.op(description="Mark the platform's run as running and collect what the agent works on.")
def prepare_context(context: dg.OpExecutionContext, config: StageRunConfig, platform_db: PlatformDatabase) -> dict:
    store = platform_db.store()
    store.register_run(
        RunRecord(
            correlation_key=config.correlation_key,
            repository=config.repository,
            role=config.role,
            stage=config.stage,
            revise=config.revise,
            issue_number=config.issue_number,
            pr_number=config.pr_number,
        )
    )
    store.set_run_status(config.correlation_key, "running", dagster_run_id=context.run_id)
    store.append_event(config.correlation_key, "run.started", "system", "dagster", {"dagster_run_id": context.run_id})
    return config.model_dump()


@dg.op(description="Run the stage's agent (the agent runtime is issue #4; until then the run fails saying so).")
def run_agent(context: dg.OpExecutionContext, stage_context: dict, platform_db: PlatformDatabase) -> None:
    key = stage_context["correlation_key"]
    reason = "agent_runtime_unavailable"
    message = "the agent runtime is not installed in this version (issue #4); nothing was changed"
    store = platform_db.store()
    store.append_event(key, "run.failed.precondition", "system", "dagster", {"reason": reason, "message": message})
    store.set_run_status(key, "failed", dagster_run_id=context.run_id)
    raise dg.Failure(description=message, metadata={"reason": reason, "correlation_key": key})


def _build(name: str, description: str) -> dg.JobDefinition:
    @dg.job(name=name, description=description, tags={f"{TAG_PREFIX}/kind": "stage"})
    def _job() -> None:
        run_agent(prepare_context())

    return _job


def stage_jobs() -> list[dg.JobDefinition]:
    jobs = [
        _build(stage.job_name, f"Stage {name}: role {stage.role.value}, write scope {stage.write_scope.value}.")
        for name, stage in STAGES.items()
    ]
    jobs.append(_build(REVIEWER_JOB_NAME, "Comment-only reviewer run on a pull request (need:reviewer)."))
    return jobs


STAGE_JOBS = stage_jobs()
