"""The `stage_<stage>` jobs: context → prompt → agent step → publish, built by one factory from the catalog.

Each op is thin: GitHub reading lives in `context`, the comment and PR in `publish`, the agent in the runtime,
the rules in `domain`. Every step is audited under the run's correlation key.
"""

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterExecutionInterruptedError

from .. import settings
from ..agents.agent_kinds import effective_model, launch_settings
from ..agents.agent_setup import AgentSettings
from ..agents.catalog import current_catalog, load_catalog
from ..agents.prompts import RESULT_FILE, PromptInputs, render_prompt
from ..agents.runner_spec import RunnerResult, RunnerSpec
from ..agents.runtime import AgentRuntime, write_private_file
from ..domain.redaction import redact_text
from ..domain.stages import REVIEWER_JOB_NAME, STAGES, Role, WriteScope
from ..github.api import RepoApi
from ..github.resource import GitHubResource
from ..queue_tags import BRANCH_TAG, PRIORITY_TAG, STAGE_PRIORITY, TAG_PREFIX
from ..resources import PlatformConfigResource, PlatformDatabase
from ..store.database import RunRecord
from ..store.usage import release_reservation
from . import publish
from .context import DefaultBranchUnknown, StageContext, closed_pull, gather, work_branch
from .spend import comment_line, record_run, spend_guard

ACTOR = "dagster"


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
    # `mode:discussion` on the issue: the stage's agent only comments (comment-only checkout, nothing pushed, no PR).
    discussion: bool = False


def stage_run_config(config: StageRunConfig) -> dict[str, Any]:
    return {"ops": {"prepare_context": {"config": config.model_dump()}}}


# Dagster's run monitoring ends a run older than this tag (seconds): a hung run frees its issue's queue slot, and
# the failure sensor's service comment says "Exceeded maximum runtime". The margin is beyond the agent's own
# timeout: pod start, checkout, prompt, verify-and-push, publishing.
MAX_RUNTIME_TAG = "dagster/max_runtime"
RUN_DEADLINE_MARGIN_SECONDS = 30 * 60
# The run's Kubernetes Job gets a hard deadline too (K8sRunLauncher merges this tag into the Job), a little after
# the daemon's, so that a run ends even while the daemon is down; run monitoring then fails the run (its pod died).
K8S_CONFIG_TAG = "dagster-k8s/config"
JOB_DEADLINE_GRACE_SECONDS = 5 * 60


def stage_timeout_seconds(config: StageRunConfig) -> int:
    """The longest the agent step of this run may take: the stage's timeout (domain or configuration override,
    whichever is longer: the step reads the configuration when it runs, which may have changed since the tick)
    or, for a reviewer run, its agent's. Never raises: a tick must not fail over a configuration error, which
    the run itself then reports."""
    from ..config import load_config_from_environment

    candidates = [STAGES[config.stage].timeout_minutes] if config.stage in STAGES else []
    with contextlib.suppress(Exception):  # the domain's timeout (or the default) stands in
        stages = load_config_from_environment().rules().stages
        if config.stage is not None and config.stage in stages:
            candidates.append(stages[config.stage].timeout_minutes)
    if not config.stage:
        with contextlib.suppress(Exception):
            candidates.append(current_catalog().for_role(Role(config.role)).timeout_minutes)  # on the tick
    return max(candidates or [60]) * 60


def branch_tag(repository: str, branch: str) -> str:
    """The `codexk8s/branch` tag's value, `owner/name:branch`, lower-cased: the same for every run of the branch
    however its repository or branch was spelled (`Acme/Shop`), so that the run queue counts them together."""
    return f"{repository}:{branch}".lower()


def stage_run_tags(config: StageRunConfig, branch: str | None = None) -> dict[str, str]:
    """Tags shown in the UI and used by the run queue's concurrency limits (per issue, per PR, per branch, per
    repository) and order (a stage run before the periodic runs queued by the hundred: `queue_tags`), and the run's
    deadline (`dagster/max_runtime`).

    `branch`: the branch the run will work on, when the caller read it (a PR's head branch, `codex/issue-1` for the
    PR its dev run opened); else the branch its issue or PR number names (`context.work_branch`). Runs of one branch
    share its working folder and push to it: a `run:dev:revise` of issue 1 (tag `codexk8s/issue`) and a
    `need:reviewer` of its PR 2 (tag `codexk8s/pr`) were each alone under their own limit, ran at once, and the
    reviewer's checkout emptied the folder under the dev agent."""
    deadline = stage_timeout_seconds(config) + RUN_DEADLINE_MARGIN_SECONDS
    job_deadline = {"job_spec_config": {"active_deadline_seconds": deadline + JOB_DEADLINE_GRACE_SECONDS}}
    tags = {
        MAX_RUNTIME_TAG: str(deadline),
        PRIORITY_TAG: str(STAGE_PRIORITY),
        K8S_CONFIG_TAG: json.dumps(job_deadline, separators=(",", ":")),
        f"{TAG_PREFIX}/repository": config.repository,
        f"{TAG_PREFIX}/role": config.role,
        f"{TAG_PREFIX}/trigger": config.trigger_label,
        f"{TAG_PREFIX}/actor": config.actor or "unknown",
        f"{TAG_PREFIX}/correlation_key": config.correlation_key,
        BRANCH_TAG: branch_tag(config.repository, branch or work_branch(config.issue_number, config.pr_number)),
    }
    if config.stage:
        tags[f"{TAG_PREFIX}/stage"] = config.stage + (":revise" if config.revise else "")
    if config.discussion:
        tags[f"{TAG_PREFIX}/mode"] = "discussion"
    if config.issue_number is not None:
        tags[f"{TAG_PREFIX}/issue"] = f"{config.repository}#{config.issue_number}"
    if config.pr_number is not None:
        tags[f"{TAG_PREFIX}/pr"] = f"{config.repository}#{config.pr_number}"
    return tags


def _api(github: GitHubResource, repository: str) -> RepoApi:
    credentials = github.credentials()
    if not credentials.configured:
        raise dg.Failure(description=f"cannot reach GitHub: {credentials.missing_reason()}")
    return github.repo_api(repository)


def _run_dir(run_id: str) -> Path:
    return settings.state_dir() / "runs" / run_id


def _branch_folder(ctx: StageContext) -> str:
    """The branch's folder name under the state directory (its checkout, its kept agent session)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{ctx.repository}/{ctx.branch}")


def _workdir(ctx: StageContext) -> Path:
    return settings.state_dir() / "workspaces" / _branch_folder(ctx)


@dg.op(description="Mark the run as running, read the issue/PR from GitHub and say so in the service comment.")
def prepare_context(
    context: dg.OpExecutionContext,
    config: StageRunConfig,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dict:
    if LAUNCHPAD_REPOSITORY in (config.repository, config.correlation_key.split("#", 1)[0]) or (
        config.issue_number is None and config.pr_number is None
    ):
        raise dg.Failure(
            description="fill in the run config: repository (owner/name), issue_number or pr_number, and a "
            f"correlation_key (e.g. owner/name#7:manual); got repository={config.repository!r}"
        )
    store = platform_db.store()
    record = RunRecord(
        correlation_key=config.correlation_key,
        repository=config.repository,
        role=config.role,
        stage=config.stage,
        revise=config.revise,
        issue_number=config.issue_number,
        pr_number=config.pr_number,
        discussion=config.discussion,
    )
    store.register_run(record)  # a run launched by hand from the UI is registered here
    store.set_run_status(config.correlation_key, "running", dagster_run_id=context.run_id)
    store.append_event(config.correlation_key, "run.started", "system", ACTOR, {"dagster_run_id": context.run_id})
    platform = platform_config.get()
    repo_config = platform.repository(config.repository)
    api = _api(github, config.repository)
    model = _model_for_agent(store, config)
    try:
        ctx = _gather(api, config, repo_config.default_branch if repo_config else None, model)
    except DefaultBranchUnknown as exc:
        raise dg.Failure(description=str(exc)) from exc
    publish.show(api, store, ctx, publish.view_of(ctx, "started", context.run_id, platform.locale))
    context.add_output_metadata({"branch": ctx.branch, "mode": ctx.mode, "comment_on": ctx.comment_number})
    return ctx.to_dict()


def _gather(api: RepoApi, config: StageRunConfig, configured_default_branch: str | None, model: str) -> StageContext:
    """What the run works on, read from GitHub (`context.gather`)."""
    return gather(
        api,
        correlation_key=config.correlation_key,
        stage=config.stage,
        revise=config.revise,
        role=config.role,
        issue_number=config.issue_number,
        pr_number=config.pr_number,
        configured_default_branch=configured_default_branch,
        trigger_label=config.trigger_label,
        model=model,
        reasoning=config.reasoning,
        actor=config.actor,
        discussion=config.discussion,
    )


@dg.op(description="Render the stage's prompt (saved as run metadata) and the agent's command line.")
def render_prompt_op(
    context: dg.OpExecutionContext,
    stage_context: dict,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
) -> dict:
    ctx = StageContext.from_dict(stage_context)
    platform = platform_config.get()
    agent = load_catalog().for_role(Role(ctx.role))
    # The stage as this installation configured it (codexk8s.yaml `stages:` may lengthen its timeout).
    stage = platform.rules().stages[ctx.stage] if ctx.stage else None
    scope = stage.write_scope if stage and not ctx.discussion else WriteScope.NONE
    rendered = render_prompt(
        PromptInputs(
            stage=ctx.stage,
            kind="reviewer" if ctx.stage is None else ("revise" if ctx.revise else "work"),
            role=Role(ctx.role),
            locale=platform.locale,
            repository=ctx.repository,
            branch=ctx.branch,
            write_scope=scope,
            issue_number=ctx.issue_number,
            issue_title=ctx.issue_title,
            issue_body=ctx.issue_body,
            comments=ctx.comments,
            pr_number=ctx.pr_number,
            pr_title=ctx.pr_title or None,
            pr_body=ctx.pr_body or None,
            review_threads=ctx.review_threads,
            model=ctx.model,
            reasoning=ctx.reasoning,
            base_branch=ctx.base_branch,
        )
    )
    text = redact_text(rendered.text)
    run_dir = _run_dir(context.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    prompt_file = run_dir / "prompt.md"
    write_private_file(prompt_file, text)  # issue text: mode 600, removed when the agent step ends
    workdir = _workdir(ctx)
    command = agent.render_command(ctx.model, ctx.reasoning, workdir, prompt_file)
    # A revise continues the branch's agent session when one was kept (agents.agent_setup); else it starts fresh.
    agent_settings = launch_settings(
        agent, ctx.model, ctx.reasoning, resume=ctx.revise, session_dir=str(_session_dir(ctx, agent.kind))
    )
    context.add_output_metadata(
        {
            "prompt": dg.MetadataValue.md(text),
            "templates": dg.MetadataValue.json(list(rendered.templates)),
            "locale": rendered.locale,
            "agent": agent.name,
        }
    )
    payload = {
        "templates": list(rendered.templates),
        "locale": rendered.locale,
        "chars": len(text),
        "agent": agent.name,
    }
    platform_db.store().append_event(ctx.correlation_key, "prompt.context.assembled", "system", ACTOR, payload)
    return {
        "agent": agent.name,
        "prompt_file": str(prompt_file),
        "prompt_via": agent.prompt_via,
        "command": command,
        "workdir": str(workdir),
        "write_scope": scope.value,
        "timeout_seconds": (stage.timeout_minutes if stage else agent.timeout_minutes) * 60,
        "agent_settings": agent_settings.model_dump(mode="json"),
    }


@dg.op(description="Run the agent through Dagster Pipes: checkout, agent, write-scope check, commit, push.")
def run_agent(
    context: dg.OpExecutionContext,
    stage_context: dict,
    prepared: dict,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
    agent_runtime: AgentRuntime,
) -> dict:
    ctx = StageContext.from_dict(stage_context)
    platform = platform_config.get()
    repo_config = platform.repository(ctx.repository)
    remote = repo_config.clone_url(github.credentials().api_url) if repo_config else ctx.repository
    spec = RunnerSpec(
        remote_url=remote,
        base_branch=ctx.base_branch,
        branch=ctx.branch,
        mode=ctx.mode,  # type: ignore[arg-type]
        pull_ref=ctx.pull_ref,
        pull_ref_fallback=ctx.pull_ref_fallback,
        closed_pull=closed_pull(ctx),
        default_branch=ctx.default_branch or None,
        protected_branches=list(ctx.protected_branches),
        workdir=prepared["workdir"],
        command=prepared["command"],
        prompt_file=prepared["prompt_file"],
        prompt_via=prepared["prompt_via"],
        write_scope=WriteScope(prepared["write_scope"]),
        commit_message=_commit_message(ctx),
        author_name="codex-k8s agent",
        author_email="codexk8s-agent@users.noreply.github.com",
        timeout_seconds=prepared["timeout_seconds"],
        result_file=RESULT_FILE,
        spend=spend_guard(platform, ctx.model),
        **_agent_access(ctx, prepared),
    )
    store = platform_db.store()
    store.append_event(
        ctx.correlation_key, "run.agent.started", "system", ACTOR, {"branch": ctx.branch, "mode": ctx.mode}
    )
    try:
        agent = load_catalog().agent(prepared["agent"])
        result = agent_runtime.run(context, spec, _run_dir(context.run_id), agent)
    except DagsterExecutionInterruptedError:
        _cancelled(context, ctx, platform_db, platform_config, github)
        raise
    result = _with_base_branch_hint(result, ctx)
    payload = result.model_dump(exclude={"diagnosis"})
    store.append_event(ctx.correlation_key, "run.agent.finished", "system", ACTOR, payload)
    spent = record_run(store, platform, ctx, prepared["agent"], result, context.run_id)
    context.add_output_metadata(
        {
            "status": result.status,
            "reason": result.reason,
            "changed_files": dg.MetadataValue.json(result.changed_files),
            "duration_seconds": result.duration_seconds,
            "usage": dg.MetadataValue.json(result.usage or {}),
            "cost": spent["cost"] or "unknown",
            "agent_session": result.session_id or "",
        }
    )
    return result.model_dump()


def _with_base_branch_hint(result: RunnerResult, ctx: StageContext) -> RunnerResult:
    """A `base_branch_not_found` says what exists and where the missing name came from: the runner knows the remote's
    branches, not that the name was `default_branch` of codexk8s.yaml while GitHub's default branch is another."""
    if result.reason != "base_branch_not_found":
        return result
    github = ctx.github_default_branch
    if ctx.configured_default_branch and ctx.base_branch == ctx.configured_default_branch:
        where = f"'{ctx.base_branch}' is repositories[].default_branch of {ctx.repository} in codexk8s.yaml"
        fix = "remove that setting to follow GitHub's default branch, or name a branch that exists"
        hint = f"{where}; GitHub's default branch is '{github}': {fix}" if github else f"{where}: {fix}"
    elif ctx.pr_number is not None and ctx.base_branch != ctx.default_branch:
        hint = f"'{ctx.base_branch}' is the base branch of pull request #{ctx.pr_number}: retarget the PR on GitHub"
    else:
        hint = (
            f"'{ctx.base_branch}' is {ctx.repository}'s default branch on GitHub, and the remote has no such branch "
            "(an empty repository, or a remote that is not this repository's: repositories[].git_url)"
        )
    return result.model_copy(update={"message": f"{result.message} — {hint}"})


def _mcp_access(ctx: StageContext, timeout_seconds: int, tools: list[str] | None) -> dict[str, Any]:
    """A run-scoped MCP token for the agent when the platform signs them: it can reach this run's issue/PR only,
    call only `tools` (the MCP tools its client is configured with; the server enforces the signed list, since
    the agent can reach the server without that client), and expires shortly after the run's own deadline."""
    if not os.environ.get(settings.MCP_SECRET_VAR):
        return {}
    from ..mcp.tokens import issue_token

    token = issue_token(
        ctx.correlation_key, ctx.repository, issue_number=ctx.issue_number, pr_number=ctx.pr_number,
        ttl_seconds=timeout_seconds + 900, role=ctx.role, tools=tools,
    )  # fmt: skip
    env = {settings.MCP_TOKEN_VAR: token, settings.MCP_URL_VAR: os.environ.get(settings.MCP_URL_VAR, "")}
    return {"env": env, "pass_env": [settings.MCP_TOKEN_VAR]}


def _agent_access(ctx: StageContext, prepared: dict) -> dict[str, Any]:
    """The runner spec's agent part: the agent's setup and its MCP pair. The model key it may read is declared
    with the catalog entry, by the runtime (`with_agent_limits`), locally and in a pod alike."""
    raw = prepared.get("agent_settings")
    agent = AgentSettings.model_validate(raw) if raw else None
    access = _mcp_access(ctx, prepared["timeout_seconds"], agent.mcp_tools if agent else None)
    return {**access, "agent": agent}


def _model_for_agent(store: Any, config: StageRunConfig) -> str:
    """The run's model, unless the pinned agent of the role does not know it: then its default, audited."""
    agent = load_catalog().for_role(Role(config.role))
    model, note = effective_model(config.model, agent.default_model, agent.known_models)
    if note:
        payload = {"requested": config.model, "model": model, "agent": agent.name, "note": note}
        store.append_event(config.correlation_key, "run.model.substituted", "system", ACTOR, payload)
    return model


def _session_dir(ctx: StageContext, kind: str) -> Path:
    """Where a branch's agent session is kept between its runs (local state; a pod starts fresh)."""
    return settings.state_dir() / "agent-sessions" / _branch_folder(ctx) / kind


def _commit_message(ctx: StageContext) -> str:
    stage = ctx.stage or "review"
    what = f"#{ctx.issue_number}" if ctx.issue_number is not None else f"PR #{ctx.pr_number}"
    return f"{stage}{' (revise)' if ctx.revise else ''}: {what} {ctx.issue_title}".strip()


def _cancelled(
    context: dg.OpExecutionContext,
    ctx: StageContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> None:
    store = platform_db.store()
    store.set_run_status(ctx.correlation_key, "canceled")
    store.append_event(ctx.correlation_key, "run.canceled", "system", ACTOR, {"dagster_run_id": context.run_id})
    # No usage will be reported: the budget hold goes back here. The canceled-run sensor sees the run already
    # reported, and a hold kept was counted against the issue for good (its later runs were refused).
    release_reservation(store, ctx.correlation_key)
    view = publish.view_of(
        ctx, "cancelled", context.run_id, platform_config.get().locale, reason="cancelled",
        message="the run was cancelled in Dagster; the agent process was stopped and nothing was pushed",
    )  # fmt: skip
    publish.show(_api(github, ctx.repository), store, ctx, view)


@dg.op(description="Open or update the PR, relabel, finish the service comment; a failed agent fails the run.")
def publish_result(
    context: dg.OpExecutionContext,
    stage_context: dict,
    result: dict,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> None:
    ctx = StageContext.from_dict(stage_context)
    outcome = RunnerResult.model_validate(result)
    platform = platform_config.get()
    rules = platform.rules()
    store = platform_db.store()
    api = _api(github, ctx.repository)
    usage = comment_line(store, platform, ctx, outcome)
    if outcome.status != "succeeded":
        status = "canceled" if outcome.status == "cancelled" else "failed"
        event = "run.failed.precondition" if outcome.status == "failed_precondition" else f"run.{status}"
        if outcome.status == "blocked":  # the agent's own "I cannot": a human must answer, nothing is opened
            event = "run.blocked"
            publish.mark_blocked(api, store, ctx, rules)
        store.set_run_status(ctx.correlation_key, status)
        store.append_event(
            ctx.correlation_key, event, "system", ACTOR, {"reason": outcome.reason, "message": outcome.message}
        )
        phase = "cancelled" if status == "canceled" else ("blocked" if outcome.status == "blocked" else "failed")
        view = publish.view_of(
            ctx, phase, context.run_id, platform.locale, reason=outcome.reason, message=outcome.message,
            summary=outcome.summary, changed_files=tuple(outcome.violations or outcome.changed_files),
            diagnosis=outcome.diagnosis, usage=usage, session=publish.session_line(outcome.agent_notes),
        )  # fmt: skip
        publish.show(api, store, ctx, view)
        raise dg.Failure(
            description=f"{outcome.status}: {outcome.reason}: {outcome.message}",
            metadata={"reason": outcome.reason, "violations": dg.MetadataValue.json(outcome.violations)},
        )
    pr: dict | None = None
    restart = publish.record_restart(store, ctx, outcome)
    if outcome.pushed and ctx.mode != "comment_only":
        pr = publish.open_or_update_pull(api, store, ctx, outcome.summary)
    elif ctx.pr_number is not None:
        pr = {"number": ctx.pr_number, "html_url": ctx.pr_url}
    publish.relabel_after_success(api, store, ctx, rules, pr)
    store.set_run_status(ctx.correlation_key, "succeeded")
    store.append_event(ctx.correlation_key, "run.succeeded", "system", ACTOR, {"pr": (pr or {}).get("html_url")})
    view = publish.view_of(
        ctx, "finished", context.run_id, platform.locale, summary=outcome.summary or outcome.message,
        changed_files=tuple(outcome.changed_files), pr_url=(pr or {}).get("html_url"), usage=usage,
        session=publish.session_line(outcome.agent_notes), restart=restart,
        next_steps=publish.next_steps_for(ctx, rules, pr_exists=pr is not None),
    )  # fmt: skip
    publish.show(api, store, ctx, view)
    context.add_output_metadata(
        {"pull_request": (pr or {}).get("html_url") or "", "changed": len(outcome.changed_files)}
    )


LAUNCHPAD_REPOSITORY = "OWNER/NAME"
NEEDS_GITHUB = (
    " Needs GitHub credentials (CODEXK8S_GITHUB_TOKEN, or a GitHub App) and fails at once without them. Started "
    "by the label sensors; from the Launchpad, replace OWNER/NAME and ISSUE in the default config and add "
    "issue_number (or pr_number)."
)


def launchpad_config(role: str, trigger_label: str) -> dict[str, Any]:
    """The Launchpad's default config: what a manual run must fill in is spelled out, the rest has the defaults
    a sensor would use. Only required fields are set here: the sensors' own config overrides them, and an
    optional default (an issue number) would leak into a PR run."""
    from ..config.models import ModelsConfig

    models = ModelsConfig()
    fields = {
        "repository": LAUNCHPAD_REPOSITORY,
        "correlation_key": f"{LAUNCHPAD_REPOSITORY}#ISSUE:manual",
        "role": role,
        "trigger_label": trigger_label,
        "model": models.default,
        "reasoning": models.reasoning,
    }
    return {"ops": {"prepare_context": {"config": fields}}}


def _build(name: str, description: str, role: str, trigger_label: str) -> dg.JobDefinition:
    @dg.job(
        name=name,
        description=description + NEEDS_GITHUB,
        tags={f"{TAG_PREFIX}/kind": "stage"},
        config=launchpad_config(role, trigger_label),
    )
    def _job() -> None:
        stage_context = prepare_context()
        result = run_agent(stage_context, render_prompt_op(stage_context))
        publish_result(stage_context, result)

    return _job


def stage_jobs() -> list[dg.JobDefinition]:
    jobs = [
        _build(
            stage.job_name,
            f"Stage {name}: role {stage.role.value}, write scope {stage.write_scope.value}.",
            stage.role.value,
            f"run:{name}",
        )
        for name, stage in STAGES.items()
    ]
    jobs.append(
        _build(
            REVIEWER_JOB_NAME,
            "Comment-only reviewer run on a pull request (need:reviewer).",
            Role.REVIEWER.value,
            "need:reviewer",
        )
    )
    return jobs


STAGE_JOBS = stage_jobs()
