"""What a stage run works on, read from GitHub once at the start: texts, comments, branch, PR, review threads.

The branch rule is the reference system's: a stage works on `codex/issue-<N>`; a revise must find the branch of
its PR (there is nothing to revise otherwise); a reviewer run reads the PR's branch and changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..domain.correlation import comment_number
from ..github.api import RepoApi

MAX_COMMENTS = 30


@dataclass(frozen=True)
class StageContext:
    repository: str
    correlation_key: str
    stage: str | None
    revise: bool
    role: str
    mode: str  # work | revise | comment_only
    branch: str
    base_branch: str
    issue_number: int | None
    issue_title: str
    issue_body: str
    comments: tuple[tuple[str, str], ...]
    pr_number: int | None
    pr_title: str
    pr_body: str
    pr_url: str | None
    review_threads: tuple[tuple[str, str, int | None, str], ...]
    trigger_label: str
    model: str
    reasoning: str
    actor: str
    comment_number: int  # where the service comment lives: the issue, or the PR for PR-triggered runs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageContext:
        data = dict(data)
        data["comments"] = tuple(tuple(c) for c in data["comments"])
        data["review_threads"] = tuple(tuple(t) for t in data["review_threads"])
        return cls(**data)


def work_branch(issue_number: int | None, pr_number: int | None) -> str:
    return f"codex/issue-{issue_number}" if issue_number is not None else f"codex/pr-{pr_number}"


def _comments(api: RepoApi, number: int) -> tuple[tuple[str, str], ...]:
    rows = api.comments(number)[-MAX_COMMENTS:]
    return tuple(
        (str((c.get("user") or {}).get("login") or ""), str(c.get("body") or ""))
        for c in rows
        if "<!-- codexk8s:" not in str(c.get("body") or "")  # the platform's own comments are not input
    )


def gather(
    api: RepoApi,
    *,
    correlation_key: str,
    stage: str | None,
    revise: bool,
    role: str,
    issue_number: int | None,
    pr_number: int | None,
    default_branch: str,
    trigger_label: str,
    model: str,
    reasoning: str,
    actor: str,
) -> StageContext:
    issue: dict[str, Any] = api.issue(issue_number) if issue_number is not None else {}
    branch = work_branch(issue_number, pr_number)
    pr: dict[str, Any] | None = api.pull(pr_number) if pr_number is not None else api.open_pull_for_branch(branch)
    if pr is not None:
        branch = str((pr.get("head") or {}).get("ref") or branch)
    mode = "comment_only" if stage is None else ("revise" if revise else "work")
    threads: tuple[tuple[str, str, int | None, str], ...] = ()
    if pr is not None and (revise or stage is None):
        threads = tuple(
            (str((r.get("user") or {}).get("login") or ""), "", None, str(r.get("body") or ""))
            for r in api.pull_reviews(int(pr["number"]))
            if str(r.get("state") or "").upper() == "CHANGES_REQUESTED" and r.get("body")
        )
    return StageContext(
        repository=api.full_name.lower(),
        correlation_key=correlation_key,
        stage=stage,
        revise=revise,
        role=role,
        mode=mode,
        branch=branch,
        base_branch=default_branch,
        issue_number=issue_number,
        issue_title=str(issue.get("title") or ""),
        issue_body=str(issue.get("body") or ""),
        comments=_comments(api, issue_number) if issue_number is not None else (),
        pr_number=int(pr["number"]) if pr is not None else None,
        pr_title=str((pr or {}).get("title") or ""),
        pr_body=str((pr or {}).get("body") or ""),
        pr_url=(pr or {}).get("html_url"),
        review_threads=threads,
        trigger_label=trigger_label,
        model=model,
        reasoning=reasoning,
        actor=actor,
        # The comment lives where the trigger happened: the issue for a label, the PR for a review or need:reviewer.
        comment_number=comment_number(correlation_key, issue_number, pr_number),
    )
