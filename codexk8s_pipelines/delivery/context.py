"""What a stage run works on, read from GitHub once at the start: texts, comments, branch, PR, review threads.

The branch rule is the reference system's: a stage works on `codex/issue-<N>`; a revise must find the branch of
its PR (there is nothing to revise otherwise); a reviewer run reads the PR's branch and changes nothing. A branch
whose PR was merged or closed (GitHub keeps the branch) holds finished or rejected work: a run on the issue starts
from the base branch again (`closed_pr_number`; the runner replaces the branch's old head, kept by GitHub at
refs/pull/N/head, only under a lease on it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..agents.runner_spec import ClosedPull
from ..domain.correlation import comment_number
from ..github.api import RepoApi
from ..github.payloads import Comment, IssueItem, PullRequest, Review

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
    # A comment-only run of a PR reads its head as GitHub keeps it here (refs/pull/N/head): always for a fork's PR
    # (the fork's branch is not this repository's); for a PR of this repository only once its branch is deleted
    # (`pull_ref_fallback`), where the run would otherwise start on the base branch and review nothing of the PR.
    pull_ref: str | None = None
    pull_ref_fallback: bool = False
    # The repository's default branch, never pushed to whatever the PR's base (empty in older contexts): the configured
    # one when codexk8s.yaml sets `default_branch` (an override), else GitHub's.
    default_branch: str = ""
    github_default_branch: str = ""  # as GitHub names it at the start of the run
    configured_default_branch: str = ""  # `repositories[].default_branch` of codexk8s.yaml; empty: not set
    discussion: bool = False  # `mode:discussion`: the stage's agent only comments (mode comment_only)
    issue_labels: tuple[str, ...] = ()  # the issue's labels when the run started: which state label to take off
    # The issue's branch has no open PR but a merged or closed one: the run starts again from the base branch.
    closed_pr_number: int | None = None
    closed_pr_merged: bool = False

    @property
    def protected_branches(self) -> tuple[str, ...]:
        """Every name the repository's default branch goes by here: the run's, GitHub's and the configured one. A
        configuration left as it was after the branch was renamed on GitHub (main -> trunk) names the old one; a PR
        from `trunk` is then revised against a base that is neither, and only these names keep it off `trunk`."""
        names = (self.default_branch, self.github_default_branch, self.configured_default_branch)
        return tuple(dict.fromkeys(n for n in names if n))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageContext:
        data = dict(data)
        data["comments"] = tuple(tuple(c) for c in data["comments"])
        data["review_threads"] = tuple(tuple(t) for t in data["review_threads"])
        data["issue_labels"] = tuple(data.get("issue_labels") or ())
        return cls(**data)


def work_branch(issue_number: int | None, pr_number: int | None) -> str:
    return f"codex/issue-{issue_number}" if issue_number is not None else f"codex/pr-{pr_number}"


def run_branch(pr: PullRequest | None, repository: str, issue_number: int | None, pr_number: int | None) -> str:
    """The branch a run works on (and whose working folder it uses): its PR's head branch when that branch is one
    of `repository`'s, else `codex/issue-<N>` (`codex/pr-<N>` without an issue). The one rule of the run itself
    (`gather`) and of the sensor that names the branch in the run's queue tag (`codexk8s/branch`)."""
    # Only a branch of this repository: a fork's head_ref names a branch of the fork (`main`, say), and pushing to
    # that name here would push to this repository's own branch of that name.
    if pr is not None and pr.head_is_in(repository) and pr.head_ref:
        return pr.head_ref
    return work_branch(issue_number, pr_number)


class DefaultBranchUnknown(RuntimeError):
    """GitHub did not say which branch is the repository's default: the run cannot know what it must never push to."""


def github_default_branch(api: RepoApi) -> str:
    """The repository's default branch as GitHub names it now. No fallback to the configured name when GitHub does not
    answer: that name may be the stale one (the branch renamed on GitHub since), and a guess would let a revise push
    to the real default branch; a run that stops here has changed nothing, and its label put back runs it again."""
    try:
        return api.repository().default_branch
    except Exception as exc:  # GitHub's error, a network failure, an answer without the field: all said as they are
        raise DefaultBranchUnknown(
            f"cannot read the default branch of {api.full_name} from GitHub (GET /repos/{api.full_name}: "
            f"{type(exc).__name__}: {str(exc)[:300]}); the run needs it to know which branch it must never push to, "
            "so it stopped before its checkout and changed nothing: put the label back once GitHub answers"
        ) from exc


def _comments(api: RepoApi, number: int) -> tuple[tuple[str, str], ...]:
    rows = [Comment.parse(c) for c in api.comments(number)[-MAX_COMMENTS:]]
    return tuple((c.author, c.body) for c in rows if "<!-- codexk8s:" not in c.body)  # the platform's are not input


def gather(
    api: RepoApi,
    *,
    correlation_key: str,
    stage: str | None,
    revise: bool,
    role: str,
    issue_number: int | None,
    pr_number: int | None,
    configured_default_branch: str | None,
    trigger_label: str,
    model: str,
    reasoning: str,
    actor: str,
    discussion: bool = False,
) -> StageContext:
    github_default = github_default_branch(api)
    # An explicitly configured default branch stays an override (a team that opens its PRs into `develop`); GitHub's
    # is protected beside it all the same (`StageContext.protected_branches`).
    default_branch = configured_default_branch or github_default
    issue = IssueItem.parse(api.issue(issue_number)) if issue_number is not None else None
    branch = work_branch(issue_number, pr_number)
    raw_pr = api.pull(pr_number) if pr_number is not None else api.open_pull_for_branch(branch)
    pr = PullRequest.parse(raw_pr) if raw_pr is not None else None
    closed = _closed_pull(api, branch) if pr is None and pr_number is None else None
    own_head = pr is not None and pr.head_is_in(api.full_name)
    branch = run_branch(pr, api.full_name, issue_number, pr_number)
    # A reviewer run and a discussion (`mode:discussion`) comment only: the checkout is read, nothing is pushed.
    mode = "comment_only" if stage is None or discussion else ("revise" if revise else "work")
    pull_ref = f"refs/pull/{pr.number}/head" if pr is not None and mode == "comment_only" else None
    # A PR is reviewed and revised against its own base (a PR into `release` against `release`); the default branch
    # stays protected by name (`default_branch`: a revise of a PR from `main` into `release` never pushes to `main`).
    base_branch = pr.base_ref if pr is not None and pr.base_ref else default_branch
    threads: tuple[tuple[str, str, int | None, str], ...] = ()
    if pr is not None and (revise or stage is None):
        reviews = [Review.parse(r) for r in api.pull_reviews(pr.number)]
        threads = tuple((r.user.login, "", None, r.body) for r in reviews if r.requests_changes and r.body)
    return StageContext(
        repository=api.full_name.lower(),
        correlation_key=correlation_key,
        stage=stage,
        revise=revise,
        role=role,
        mode=mode,
        branch=branch,
        base_branch=base_branch,
        default_branch=default_branch,
        github_default_branch=github_default,
        configured_default_branch=configured_default_branch or "",
        issue_number=issue_number,
        issue_title=issue.title if issue else "",
        issue_body=issue.body if issue else "",
        comments=_comments(api, issue_number) if issue_number is not None else (),
        pr_number=pr.number if pr is not None else None,
        pr_title=pr.title if pr else "",
        pr_body=pr.body if pr else "",
        pr_url=pr.html_url if pr else None,
        review_threads=threads,
        trigger_label=trigger_label,
        model=model,
        reasoning=reasoning,
        actor=actor,
        # The comment lives where the trigger happened: the issue for a label, the PR for a review or need:reviewer.
        comment_number=comment_number(correlation_key, issue_number, pr_number),
        pull_ref=pull_ref,
        pull_ref_fallback=pull_ref is not None and own_head,
        discussion=discussion,
        issue_labels=issue.labels if issue else (),
        closed_pr_number=closed.number if closed is not None else None,
        closed_pr_merged=closed is not None and closed.merged,
    )


def closed_pull(ctx: StageContext) -> ClosedPull | None:
    """The runner's part of a branch whose PR was merged or closed: it starts again from the base branch."""
    if ctx.closed_pr_number is None:
        return None
    return ClosedPull(number=ctx.closed_pr_number, merged=ctx.closed_pr_merged)


def _closed_pull(api: RepoApi, branch: str) -> PullRequest | None:
    """The branch's newest merged or closed PR, when it has no open one: its work went into the base, or was turned
    down, and the next run must not build on it again."""
    raw = api.closed_pull_for_branch(branch)
    return PullRequest.parse(raw) if raw is not None else None
