"""Tell the humans: the service comment through the phases, the PR, the labels, and the audit of each step."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ..agents.runner_spec import RunnerResult
from ..domain.labels import normalize
from ..domain.next_steps import next_steps
from ..domain.rules import Rules
from ..github.api import RepoApi
from ..github.payloads import PR_MARKER
from ..github.service_comment import COMMENT_EVENT, BranchRestart, RunView, comment_id, inert, run_url, upsert
from ..store import PlatformStore
from .context import StageContext

ACTOR = "dagster"
log = logging.getLogger(__name__)


def history_for(store: PlatformStore, repository: str, number: int) -> str | None:
    """The issue's story so far for the comment's collapsed "History" (`codexk8s trace` has all of it). A
    courtesy: a failure to read it is logged and the comment goes out without it."""
    from ..domain.issue_trace import render_history_markdown
    from ..insight.trace import issue_trace

    try:
        return render_history_markdown(issue_trace(store, repository, number)) or None
    except Exception as exc:
        log.warning("no history for %s#%s in the service comment: %s", repository, number, exc)
        return None


def history_of(store: PlatformStore, ctx: StageContext) -> str | None:
    number = ctx.issue_number if ctx.issue_number is not None else ctx.comment_number
    return history_for(store, ctx.repository, number)


def show(api: RepoApi, store: PlatformStore, ctx: StageContext, view: RunView) -> int:
    """Upsert the run's comment and audit it; the comment id is remembered in the audit trail."""
    if view.history is None:
        view = replace(view, history=history_of(store, ctx))
    posted = upsert(api, ctx.comment_number, view, comment_id(store, ctx.correlation_key))
    payload = {"comment_id": posted, "phase": view.phase}
    store.append_event(ctx.correlation_key, COMMENT_EVENT, "system", ACTOR, payload)
    return posted


def view_of(ctx: StageContext, phase: str, dagster_run_id: str, locale: str, **kw: Any) -> RunView:
    return RunView(
        correlation_key=ctx.correlation_key,
        phase=phase,
        stage=ctx.stage,
        revise=ctx.revise,
        role=ctx.role,
        locale=locale,
        run_url=run_url(dagster_run_id),
        model=ctx.model,
        reasoning=ctx.reasoning,
        pr_url=kw.pop("pr_url", ctx.pr_url),
        discussion=ctx.discussion,
        **kw,
    )


def open_or_update_pull(api: RepoApi, store: PlatformStore, ctx: StageContext, summary: str | None) -> dict[str, Any]:
    """The PR of the work branch, opened when missing, its body kept linked to the issue with `Closes #N`."""
    closes = f"Closes #{ctx.issue_number}" if ctx.issue_number is not None else ""
    # The agent's words hold no HTML comment (`inert`): no marker of another run can come in with them.
    marker = PR_MARKER.format(key=ctx.correlation_key)
    body = "\n\n".join(x for x in (inert(summary or ""), closes, marker) if x)
    existing = api.open_pull_for_branch(ctx.branch)
    if existing is None:
        title = ctx.issue_title or f"{ctx.stage}: {ctx.branch}"
        pr = api.create_pull(f"[{ctx.stage}] {title}", ctx.branch, ctx.base_branch, body)
        event = "run.pr.created"
    else:
        old = str(existing.get("body") or "")
        pr = existing if closes and closes in old else api.update_pull(int(existing["number"]), f"{old}\n\n{closes}")
        event = "run.pr.updated"
    store.append_event(
        ctx.correlation_key, event, "system", ACTOR, {"number": pr.get("number"), "url": pr.get("html_url")}
    )
    return pr


def record_restart(store: PlatformStore, ctx: StageContext, outcome: RunnerResult) -> BranchRestart | None:
    """A work branch the run started again from its base, its PR having been merged or closed (`run.branch.restarted`):
    which PR, and the head the push replaced, which GitHub keeps at the PR's refs/pull/N/head. None: no such run."""
    if ctx.closed_pr_number is None or not outcome.pushed or not outcome.replaced_head:
        return None
    pr, merged = ctx.closed_pr_number, ctx.closed_pr_merged
    restart = BranchRestart(ctx.branch, ctx.base_branch, pr, merged, outcome.replaced_head)
    payload = {
        "branch": restart.branch, "base": restart.base, "pr": restart.pr, "merged": restart.merged,
        "replaced_head": restart.old_head, "kept_at": f"refs/pull/{restart.pr}/head",
    }  # fmt: skip
    store.append_event(ctx.correlation_key, "run.branch.restarted", "system", ACTOR, payload)
    return restart


def _on_issue(ctx: StageContext, label: str) -> list[str]:
    """`label` as the issue carried it when the run started (GitHub compares label names case-insensitively)."""
    return [name for name in ctx.issue_labels if normalize(name) == normalize(label)][:1]


def relabel_after_success(api: RepoApi, store: PlatformStore, ctx: StageContext, rules: Rules, pr: dict | None) -> None:
    """The trigger label comes off; `state:in-review` goes on the issue and on the PR, except after a discussion
    (`mode:discussion`), which wrote nothing to review. A `state:blocked` the issue had comes off: the stage went
    through (the issue showed both states before, and nothing took `blocked` off)."""
    removed: list[str] = []
    if ctx.issue_number is not None:
        own = ctx.comment_number == ctx.issue_number  # the trigger label is the issue's (not a PR review's)
        taken_off = [ctx.trigger_label] if own else []
        taken_off += [] if ctx.discussion else _on_issue(ctx, rules.labels.state_label("blocked"))
        removed = [label for label in taken_off if api.remove_label(ctx.issue_number, label)]
    targets = [] if ctx.discussion else [n for n in (ctx.issue_number, (pr or {}).get("number")) if n is not None]
    for number in targets:
        api.add_labels(int(number), [rules.labels.in_review])
    store.append_event(
        ctx.correlation_key,
        "run.labels.changed",
        "system",
        ACTOR,
        {
            "removed": removed,
            "added": {str(n): [rules.labels.in_review] for n in targets},
        },
    )


def session_line(notes: list[str]) -> str | None:
    """What a revise did with the branch's agent session (continued it, or started fresh and why)."""
    said = [n.removeprefix("resume: ") for n in notes if n.startswith("resume: ")]
    return "; ".join(said) or None


def mark_blocked(api: RepoApi, store: PlatformStore, ctx: StageContext, rules: Rules) -> None:
    """A blocked run: `state:blocked` on the issue (the trigger label stays, so a human sees what was asked), in
    place of a `state:in-review` an earlier stage left: the issue now waits for an answer, not for a review."""
    if ctx.issue_number is None:
        return
    label = rules.labels.state_label("blocked")
    api.add_labels(ctx.issue_number, [label])
    removed = [name for name in _on_issue(ctx, rules.labels.in_review) if api.remove_label(ctx.issue_number, name)]
    payload = {"removed": removed, "added": {str(ctx.issue_number): [label]}}
    store.append_event(ctx.correlation_key, "run.labels.changed", "system", ACTOR, payload)


def next_steps_for(ctx: StageContext, rules: Rules, pr_exists: bool) -> tuple:
    if ctx.stage is None or ctx.discussion:  # a discussion moved nothing forward: the next stage is not due
        return ()
    return tuple(next_steps(ctx.stage, rules, pr_exists=pr_exists))
