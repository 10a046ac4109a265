"""Answer "why did my label not start anything?" with the decision the sensors would make, as text or JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .domain.decisions import (
    Decision,
    IssueLabelEvent,
    PullRequestLabelEvent,
    PullRequestReviewEvent,
    decide_issue_label,
    decide_pull_request_label,
    decide_review,
)
from .domain.rules import Actor, Rules
from .domain.stages import Permission


@dataclass(frozen=True)
class ExplainRequest:
    """A described GitHub event: labels on the issue or PR, what was added or reviewed, and by whom."""

    labels: tuple[str, ...]
    actor: str
    actor_type: str = "User"
    permission: Permission | None = None
    added: str | None = None
    pull_request: bool = False
    review: str | None = None
    issue_labels: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    dev_run_exists: bool = False
    fork: bool = False  # the PR's branch is in another repository


class ExplainInputError(ValueError):
    pass


def explain(request: ExplainRequest, rules: Rules) -> Decision:
    actor = Actor(request.actor, request.actor_type, request.permission)
    if request.fork and request.review is None:
        raise ExplainInputError("--fork describes the branch of a reviewed pull request: add --pr --review STATE")
    if request.review is not None:
        if not request.pull_request:
            raise ExplainInputError("--review describes a pull request review: add --pr")
        return decide_review(
            PullRequestReviewEvent(
                request.review, actor, request.labels, request.issue_labels, request.history, request.fork
            ),
            rules,
        )
    if request.added is None:
        raise ExplainInputError("say which label was added (--added LABEL) or which review was submitted (--review)")
    if request.pull_request:
        return decide_pull_request_label(PullRequestLabelEvent(request.labels, request.added, actor), rules)
    return decide_issue_label(IssueLabelEvent(request.labels, request.added, actor, request.dev_run_exists), rules)


def render_text(decision: Decision) -> str:
    lines = [f"decision: {decision.kind.value}", f"reason:   {decision.reason.value}", f"          {decision.message}"]
    if decision.stage or decision.role:
        revise = "yes" if decision.revise else "no"
        lines.append(
            f"stage:    {decision.stage or '-'} (revise: {revise}), role: {decision.role}, job: {decision.job_name}"
        )
    if decision.runs or decision.kind.value == "approval_required":
        lines.append(
            f"agent:    model {decision.model}, reasoning {decision.reasoning}, runtime {decision.profile},"
            f" write scope {decision.write_scope}"
        )
    if decision.resolved_from:
        lines.append(f"stage from: {decision.resolved_from}")
    if decision.labels:
        lines.append("labels:   " + ", ".join(decision.labels))
    if decision.add_labels:
        lines.append("sets:     " + ", ".join(decision.add_labels))
    if decision.suggested_labels:
        lines.append("try:      " + ", ".join(decision.suggested_labels))
    if decision.approvers:
        lines.append(f"approver: {decision.approvers}")
    return "\n".join(lines)


def render_json(decision: Decision) -> str:
    return json.dumps(decision.to_dict(), sort_keys=True)
