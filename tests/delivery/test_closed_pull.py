"""A later stage on an issue whose PR a human merged or closed: GitHub keeps the branch, the run does not build on it.

Before, the next `run:dev` started from the stale `codex/issue-N`: its new PR showed the merged changes again,
lacked main's newer work and conflicted with main; a PR closed to reject it came back with the rejected commits.
"""

from __future__ import annotations

import subprocess

import dagster as dg

from codexk8s_pipelines.github.service_comment import MARKER
from tests.delivery.conftest import REPO, Stage
from tests.delivery.test_stage_run import _issue
from tests.helpers import git

HUMAN = ["-c", "user.name=Human", "-c", "user.email=human@example.com"]


def _first_run(stage: Stage) -> tuple[int, str, int]:
    """`run:dev` on a new issue: (issue, its branch, the PR the run opened)."""
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    created = [e for e in stage.store.events(first.run_key or "") if e["event_type"] == "run.pr.created"]
    return number, f"codex/issue-{number}", int(created[0]["payload"]["number"])


def _comment_of(stage: Stage, number: int, run_key: str | None) -> str:
    """The service comment of one run (the issue has one per run)."""
    marker = MARKER.format(key=run_key)
    (body,) = [c["body"] for c in stage.state.comments(REPO, number) if c["body"].startswith(marker)]
    return body


def _gd(stage: Stage) -> list[str]:
    return ["--git-dir", str(stage.remote)]


def _close(stage: Stage, branch: str, pr: int, *, merged: bool) -> str:
    """A human merges (squash, GitHub's usual choice) or closes the PR; GitHub keeps its head at refs/pull/N/head,
    and the branch stays. Returns the branch's head."""
    head = git(*_gd(stage), "rev-parse", f"refs/heads/{branch}")
    git(*_gd(stage), "update-ref", f"refs/pull/{pr}/head", head)
    if merged:
        tree = git(*_gd(stage), "rev-parse", f"{branch}^{{tree}}")
        squash = git(*_gd(stage), *HUMAN, "commit-tree", tree, "-p", "main", "-m", f"Checkout fix (#{pr})")
        git(*_gd(stage), "update-ref", "refs/heads/main", squash)
    state = stage.state
    stage.state.set_issue_state(REPO, pr, "closed")
    if merged:
        with state.lock:
            record = state.issue(REPO, pr)
            assert record.pull is not None
            record.pull.merged_at = record.updated_at
    return head


def _commit_on(stage: Stage, branch: str, path: str, text: str, message: str) -> str:
    """Someone's commit on `branch` of the remote, adding `path`."""
    gd = _gd(stage)
    blob = (
        subprocess.run(
            ["git", *gd, "hash-object", "-w", "--stdin"], input=text.encode(), capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    listing = git(*gd, "ls-tree", branch) + f"\n100644 blob {blob}\t{path}\n"
    tree = subprocess.run(["git", *gd, "mktree"], input=listing, capture_output=True, text=True, check=True)
    commit = git(*gd, *HUMAN, "commit-tree", tree.stdout.strip(), "-p", branch, "-m", message)
    git(*gd, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def _run_again(stage: Stage, number: int) -> tuple[dg.RunRequest, dg.ExecuteInProcessResult]:
    stage.state.label(REPO, number, "run:dev", actor="alice")  # follow-up work on the same issue
    (second,) = stage.trigger()
    return second, stage.execute(second)


def test_a_stage_after_a_squash_merge_starts_again_from_main_and_opens_a_new_pr(stage: Stage) -> None:
    number, branch, pr = _first_run(stage)
    old_head = _close(stage, branch, pr, merged=True)
    _commit_on(stage, "main", "other.py", "x = 1\n", "other work")  # more work lands on main

    second, result = _run_again(stage, number)
    assert result.success
    gd = _gd(stage)
    # On top of main as it is now: its newer work, one commit of this run, no replay of the merged one.
    assert stage.log(branch) == [f"dev: #{number} Checkout fails on an empty cart", *stage.log("main")]
    assert "other.py" in git(*gd, "ls-tree", "--name-only", branch)
    diff = git(*gd, "diff", f"main...{branch}")
    assert diff.count("+# handled the empty cart") == 1
    subprocess.run(["git", *gd, "merge-tree", "--write-tree", "main", branch], check=True, capture_output=True)
    # The merged PR's commits are where GitHub keeps them; the new PR is a new one, into main.
    assert git(*gd, "rev-parse", f"refs/pull/{pr}/head") == old_head
    events = stage.store.events(second.run_key or "")
    (created,) = [e["payload"] for e in events if e["event_type"] == "run.pr.created"]
    assert created["number"] != pr and stage.state.issue(REPO, created["number"]).pull.base == "main"  # type: ignore[union-attr]
    (restarted,) = [e["payload"] for e in events if e["event_type"] == "run.branch.restarted"]
    assert restarted == {
        "branch": branch, "base": "main", "pr": pr, "merged": True, "replaced_head": old_head,
        "kept_at": f"refs/pull/{pr}/head",
    }  # fmt: skip
    comment = _comment_of(stage, number, second.run_key)
    assert "Run finished" in comment
    assert f"`{branch}` started again from `main`: #{pr} was merged; its former head `{old_head[:12]}`" in comment
    assert f"`refs/pull/{pr}/head`" in comment


def test_a_pull_request_closed_without_merging_does_not_come_back(stage: Stage) -> None:
    number, branch, pr = _first_run(stage)
    rejected = _close(stage, branch, pr, merged=False)

    second, result = _run_again(stage, number)
    assert result.success
    assert stage.log(branch) == [f"dev: #{number} Checkout fails on an empty cart", "seed"]
    gd = _gd(stage)
    assert subprocess.run(["git", *gd, "merge-base", "--is-ancestor", rejected, branch]).returncode == 1
    assert git(*gd, "diff", f"main...{branch}").count("+# handled the empty cart") == 1
    assert f"#{pr} was closed without merging" in _comment_of(stage, number, second.run_key)


def test_a_commit_pushed_to_the_branch_after_the_merge_is_never_overwritten(stage: Stage) -> None:
    number, branch, pr = _first_run(stage)
    _close(stage, branch, pr, merged=True)
    human = _commit_on(stage, branch, "notes.md", "after the merge\n", "follow-up by hand")

    second, result = _run_again(stage, number)
    assert not result.success
    assert git(*_gd(stage), "rev-parse", f"refs/heads/{branch}") == human  # kept
    comment = _comment_of(stage, number, second.run_key)
    assert "Run failed" in comment and "branch_moved_after_pr_closed" in comment
    assert human[:12] in comment and f"#{pr}" in comment and "open a pull request" in comment
    events = [e["event_type"] for e in stage.store.events(second.run_key or "")]
    assert "run.failed.precondition" in events and "run.pr.created" not in events


def test_a_revise_after_the_merge_says_there_is_nothing_open_to_revise(stage: Stage) -> None:
    number, branch, pr = _first_run(stage)
    old_head = _close(stage, branch, pr, merged=True)

    stage.state.label(REPO, number, "run:dev:revise", actor="alice")
    (revise,) = stage.trigger()
    assert not stage.execute(revise).success
    assert git(*_gd(stage), "rev-parse", f"refs/heads/{branch}") == old_head
    comment = _comment_of(stage, number, revise.run_key)
    assert "pull_request_closed" in comment and f"#{pr}" in comment and "without `:revise`" in comment
