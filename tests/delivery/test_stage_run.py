"""From a label to a pushed branch, a PR, a service comment, relabelled issue and an audit trail."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.agents.catalog import load_catalog
from codexk8s_pipelines.mcp.tokens import verify_token
from tests.helpers import git

from .conftest import REPO, Stage, github_pull_requests_sensor


def _issue(stage: Stage, title: str = "Checkout fails on an empty cart") -> int:
    number = stage.state.add_issue(REPO, title, body="Steps: open the cart, pay. Expected: no crash.")
    stage.trigger()  # the sensor's first look
    return number


def _service_comment(stage: Stage, number: int) -> str:
    bodies = [c["body"] for c in stage.state.comments(REPO, number) if "<!-- codexk8s:run " in c["body"]]
    assert len(bodies) == 1, bodies  # one comment per run, edited in place
    return bodies[0]


def test_run_dev_ends_with_a_pushed_branch_a_pr_a_comment_and_an_audit_trail(stage: Stage) -> None:
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    result = stage.execute(request)
    assert result.success

    branch = f"codex/issue-{number}"
    assert stage.branches() == sorted([branch, "main"])
    assert stage.log(branch)[0].startswith(f"dev: #{number}")

    comment = _service_comment(stage, number)
    assert "Run finished" in comment and "Empty carts no longer crash the checkout." in comment
    assert "`src/app.py`" in comment and "`run:dev:revise`" in comment and "`run:qa`" in comment
    labels = stage.state.labels(REPO, number)
    assert "run:dev" not in labels and "state:in-review" in labels

    key = request.run_key
    run = stage.store.get_run(key or "")
    assert run is not None and run["status"] == "succeeded" and run["dagster_run_id"] == result.run_id
    events = [e["event_type"] for e in stage.store.events(key or "")]
    for expected in (
        "run.requested", "run.started", "service_comment.upserted", "prompt.context.assembled",
        "run.agent.started", "run.agent.finished", "run.pr.created", "run.labels.changed", "run.succeeded",
    ):  # fmt: skip
        assert expected in events, (expected, events)
    pr_events = [e for e in stage.store.events(key or "") if e["event_type"] == "run.pr.created"]
    pr_number = pr_events[0]["payload"]["number"]
    pr = stage.state.issue(REPO, pr_number)
    assert f"Closes #{number}" in pr.body and "state:in-review" in stage.state.labels(REPO, pr_number)

    # The agent got a run-scoped MCP token for this run's issue, and nothing else.
    workdir = Path(result.output_for_node("render_prompt_op")["workdir"])
    scope = verify_token((workdir / ".codexk8s" / "mcp_token").read_text())
    assert (scope.run_key, scope.repository, scope.issue_number) == (key, REPO, number)
    # ... and the dev role's MCP tools, which the server enforces (the label tools are not among them).
    assert scope.role == "dev" and scope.tools == frozenset(load_catalog().for_role("dev").mcp_tools)

    prompt = result.output_for_node("render_prompt_op")["prompt_file"]
    outputs = [e for e in result.events_for_node("render_prompt_op") if e.event_type_value == "STEP_OUTPUT"]
    assert "Checkout fails on an empty cart" in outputs[0].event_specific_data.metadata["prompt"].value
    assert not Path(prompt).exists()  # issue text on disk does not outlive the agent step (issue 12)


def test_the_configured_stage_timeout_is_the_agent_steps_timeout(stage: Stage) -> None:
    from codexk8s_pipelines.config import load_config_from_environment

    config = Path(os.environ["CODEXK8S_CONFIG"])
    config.write_text(config.read_text() + "stages:\n  dev: {timeout_minutes: 300}\n")
    load_config_from_environment.cache_clear()
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    result = stage.execute(request)
    assert result.success
    assert result.output_for_node("render_prompt_op")["timeout_seconds"] == 300 * 60  # the domain's dev: 120 min


def test_a_markdown_only_stage_editing_code_fails_and_pushes_nothing(stage: Stage) -> None:
    number = _issue(stage, "Plan the refactoring")
    stage.state.label(REPO, number, "run:plan", actor="alice")
    (request,) = stage.trigger()
    result = stage.execute(request)
    assert not result.success
    assert stage.branches() == ["main"]
    comment = _service_comment(stage, number)
    assert "Run failed" in comment and "write_scope_violation" in comment and "`src/app.py`" in comment
    assert stage.store.get_run(request.run_key or "")["status"] == "failed"  # type: ignore[index]
    assert "run.failed.precondition" in [e["event_type"] for e in stage.store.events(request.run_key or "")]
    assert "run:plan" in stage.state.labels(REPO, number)  # nothing to review: the trigger label stays


def test_revise_reuses_the_pr_branch_and_reviewer_runs_change_nothing(stage: Stage) -> None:
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    branch = f"codex/issue-{number}"
    commits = len(stage.log(branch))

    stage.state.label(REPO, number, "run:dev:revise", actor="alice")
    (revise,) = stage.trigger()
    assert stage.execute(revise).success
    assert len(stage.log(branch)) == commits + 1  # on top of the same branch
    pulls = [e for e in stage.store.events(revise.run_key or "") if e["event_type"].startswith("run.pr.")]
    assert [e["event_type"] for e in pulls] == ["run.pr.updated"]
    pr_number = pulls[0]["payload"]["number"]

    stage.intake.tick(github_pull_requests_sensor)
    stage.state.label(REPO, pr_number, "need:reviewer", actor="alice")
    (review,) = stage.intake.tick(github_pull_requests_sensor).run_requests
    result = stage.execute(review)
    assert result.success
    assert len(stage.log(branch)) == commits + 1  # the reviewer pushed nothing
    comment = _service_comment(stage, pr_number)  # on the PR, where need:reviewer was put
    assert "Looks right; one nit" in comment
    assert "Changed: src/app.py." in comment  # the PR's changes, against the base branch beside its head


def test_revise_without_a_branch_fails_as_a_precondition(stage: Stage) -> None:
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev:revise", actor="alice")
    (request,) = stage.trigger()
    assert not stage.execute(request).success
    assert "branch_not_found" in _service_comment(stage, number)
    assert stage.branches() == ["main"]


def _revise_of(stage: Stage, number: int, pr_number: int) -> dg.ExecuteInProcessResult:
    """A `run:dev:revise` of issue `number` started for PR `pr_number` (as from the launchpad), executed."""
    stage.state.label(REPO, number, "run:dev:revise", actor="alice")
    (revise,) = stage.trigger()
    config = copy.deepcopy(revise.run_config)
    config["ops"]["prepare_context"]["config"]["pr_number"] = pr_number
    return stage.execute(
        dg.RunRequest(run_key=revise.run_key, job_name=revise.job_name, run_config=config, tags=revise.tags)
    )


def test_a_revise_of_a_forks_pull_request_never_pushes_to_this_repositorys_branch_of_that_name(stage: Stage) -> None:
    """A fork's PR whose head branch is named `main`: its `head.ref` names the fork's branch. A revise started for it
    (from the launchpad: the sensor refuses fork PRs) works on the issue's own branch, and this main stays as it was."""
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    main_before = stage.log("main")
    fork_pr = stage.state.add_pull(
        REPO, "typo", body=f"Fixes #{number}", head="main", user="mallory", head_fork="mallory/shop"
    )
    result = _revise_of(stage, number, fork_pr)
    assert stage.log("main") == main_before
    assert result.success and len(stage.log(f"codex/issue-{number}")) == len(main_before) + 2


def _dev_run_with_pull(stage: Stage) -> tuple[int, int, str]:
    """An issue, a `run:dev` run on it: (issue number, the PR the run opened, its branch)."""
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    created = [e for e in stage.store.events(first.run_key or "") if e["event_type"] == "run.pr.created"]
    return number, created[0]["payload"]["number"], f"codex/issue-{number}"


def _review(stage: Stage, pr_number: int) -> dg.ExecuteInProcessResult:
    """`need:reviewer` put on the PR, the run the PR sensor requests for it, executed."""
    stage.intake.tick(github_pull_requests_sensor)
    stage.state.label(REPO, pr_number, "need:reviewer", actor="alice")
    (review,) = stage.intake.tick(github_pull_requests_sensor).run_requests
    return stage.execute(review)


def test_a_reviewer_of_a_forks_pull_request_reads_the_pr_not_the_base(stage: Stage) -> None:
    """A fork's PR has no branch here (its head branch, `main`, is the fork's). The reviewer reads its head as GitHub
    keeps it in this repository, refs/pull/N/head; before, it read this repository's base branch and reviewed code
    that was not the PR's. Nothing is written: no branch appears, main does not move."""
    main_before = stage.log("main")
    fork_pr = stage.state.add_pull(REPO, "typo", head="main", user="mallory", head_fork="mallory/shop")
    fork = stage.remote.parent / "fork"
    git("clone", "--quiet", str(stage.remote), str(fork))
    (fork / "src" / "app.py").write_text("def checkout(cart):  # from the fork\n    return sum(cart or [])\n")
    git("-c", "user.name=m", "-c", "user.email=m@example.com", "commit", "-qam", "fork change", cwd=fork)
    git("push", "--quiet", "origin", f"HEAD:refs/pull/{fork_pr}/head", cwd=fork)

    result = _review(stage, fork_pr)
    assert result.success
    comment = _service_comment(stage, fork_pr)
    assert "which starts `def checkout(cart):  # from the fork`" in comment, comment
    assert "Changed: src/app.py." in comment
    assert stage.branches() == ["main"] and stage.log("main") == main_before


def test_a_reviewer_of_a_pull_request_whose_branch_was_deleted_reads_the_pr_not_the_base(stage: Stage) -> None:
    """A PR of this repository whose branch is gone (merged and deleted, say): the reviewer reads its head as GitHub
    keeps it, refs/pull/N/head, as for a fork's PR. Before, the run started on main, with no origin/main beside it:
    the prompt's `git diff origin/main...HEAD` named nothing, and the reviewer reviewed main for the PR."""
    _number, pr_number, branch = _dev_run_with_pull(stage)
    head = git("--git-dir", str(stage.remote), "rev-parse", branch).strip()
    git("--git-dir", str(stage.remote), "update-ref", f"refs/pull/{pr_number}/head", head)  # as GitHub keeps it
    git("--git-dir", str(stage.remote), "update-ref", "-d", f"refs/heads/{branch}")
    refs_before = git("--git-dir", str(stage.remote), "for-each-ref")

    result = _review(stage, pr_number)
    assert result.success
    comment = _service_comment(stage, pr_number)
    assert "Changed: src/app.py." in comment, comment  # the PR's change against main, not main against itself
    (output,) = [e for e in result.events_for_node("render_prompt_op") if e.event_type_value == "STEP_OUTPUT"]
    assert "`git diff origin/main...HEAD`" in str(output.step_output_data.metadata["prompt"].value)  # now true
    assert git("--git-dir", str(stage.remote), "for-each-ref") == refs_before  # a reviewer writes nothing


def test_a_reviewer_diffs_a_pull_request_against_its_own_base_not_the_default_branch(stage: Stage) -> None:
    """A PR into `release` is reviewed against `release`: the prompt named `origin/main`, whatever the PR's base,
    and only the default branch was fetched beside the PR's head."""
    _number, pr_number, _branch = _dev_run_with_pull(stage)
    main = git("--git-dir", str(stage.remote), "rev-parse", "main").strip()
    git("--git-dir", str(stage.remote), "update-ref", "refs/heads/release", main)
    pull = stage.state.issue(REPO, pr_number).pull
    assert pull is not None
    pull.base = "release"  # retargeted on GitHub

    result = _review(stage, pr_number)
    assert result.success
    (output,) = [e for e in result.events_for_node("render_prompt_op") if e.event_type_value == "STEP_OUTPUT"]
    prompt = str(output.step_output_data.metadata["prompt"].value)
    assert "`git diff origin/release...HEAD`" in prompt and "origin/main" not in prompt
    assert "Changed: src/app.py." in _service_comment(stage, pr_number)  # the agent's diff against origin/release


def _a_revise_from_the_default_branch_is_refused(stage: Stage, number: int, default: str) -> None:
    """A PR of this repository from its default branch `default` into `release`, revised: the run fails, names the
    branch, and `default` is where it was."""
    before = stage.log(default)
    git("--git-dir", str(stage.remote), "branch", "release", default)
    pr = stage.state.add_pull(REPO, "release", body=f"Fixes #{number}", head=default, user="alice", base="release")
    result = _revise_of(stage, number, pr)
    assert not result.success
    assert stage.log(default) == before
    failure = result.failure_data_for_node("run_agent")
    assert failure is not None and failure.error is not None
    refused = f"'{default}' is the repository's default branch: an agent's work is never pushed to it"
    assert refused in str(failure.error)


def test_a_revise_of_a_pull_request_from_main_into_release_never_pushes_to_main(stage: Stage) -> None:
    """A PR of this repository from `main` into `release`: its head branch is `main`. A revise works on the PR's head
    branch against the PR's base (`release`), so `main` is not the run's base: it is refused by name, as the
    repository's default branch (otherwise the agent's commit would land on `main` unreviewed)."""
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    _a_revise_from_the_default_branch_is_refused(stage, number, "main")


def _default_branch_renamed(stage: Stage, new: str) -> None:
    """The repository's default branch renamed on GitHub (main -> `new`): the old name is gone from the remote too."""
    git("--git-dir", str(stage.remote), "branch", "-m", "main", new)
    git("--git-dir", str(stage.remote), "symbolic-ref", "HEAD", f"refs/heads/{new}")
    stage.state.repo(REPO).default_branch = new


def _configure_default_branch(stage: Stage, branch: str) -> None:
    """`default_branch: <branch>` set for the repository in codexk8s.yaml (the stage fixture's file)."""
    from codexk8s_pipelines.config import loader

    config = Path(os.environ["CODEXK8S_CONFIG"])
    config.write_text(config.read_text() + f"    default_branch: {branch}\n")
    loader.load_config_from_environment.cache_clear()


def test_a_repository_whose_default_branch_is_master_runs_without_configuring_it(stage: Stage) -> None:
    """No `default_branch` in codexk8s.yaml, GitHub's is `master`: every run failed with `base_branch_not_found —
    base branch 'main' does not exist on the remote`. The run follows GitHub's default branch."""
    _default_branch_renamed(stage, "master")
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    assert stage.execute(request).success, _service_comment(stage, number)
    assert stage.branches() == sorted([f"codex/issue-{number}", "master"])
    created = [e for e in stage.store.events(request.run_key or "") if e["event_type"] == "run.pr.created"]
    pull = stage.state.issue(REPO, created[0]["payload"]["number"]).pull
    assert pull is not None and pull.base == "master"


def test_a_configured_default_branch_missing_from_the_remote_names_githubs_and_the_setting(stage: Stage) -> None:
    """`default_branch: main` set explicitly (an override), GitHub's is `master`: the run fails as before, but says
    which branch exists and which setting named the missing one."""
    _default_branch_renamed(stage, "master")
    _configure_default_branch(stage, "main")
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    assert not stage.execute(request).success
    comment = _service_comment(stage, number)
    assert "base_branch_not_found" in comment
    assert "GitHub's default branch is 'master'" in comment, comment
    assert f"'main' is repositories[].default_branch of {REPO} in codexk8s.yaml" in comment
    assert stage.branches() == ["master"]


@pytest.mark.parametrize("configured", [None, "main"], ids=["not-configured", "configured-before-the-rename"])
def test_a_revise_of_a_pull_request_from_the_renamed_default_branch_never_pushes_to_it(
    stage: Stage, configured: str | None
) -> None:
    """The default branch renamed on GitHub (main -> trunk), codexk8s.yaml left as it was: a PR of this repository
    from `trunk` into `release`. The guard compared the head branch with the configured name (`main`), and the revise
    pushed the agent's commit straight to `trunk`. It is refused by GitHub's name as by the configured one."""
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    _default_branch_renamed(stage, "trunk")
    if configured:
        _configure_default_branch(stage, configured)
    _a_revise_from_the_default_branch_is_refused(stage, number, "trunk")


def test_a_run_that_cannot_read_the_default_branch_from_github_stops_before_its_checkout(stage: Stage) -> None:
    """Without GitHub's answer the run cannot know which branch it must never push to; no guess from the
    configuration (its name may be the stale one): it stops, says why, and nothing is pushed."""
    number = _issue(stage)
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    stage.state.inject("502", "GET", rf"^/repos/{REPO}$", times=None)
    result = stage.execute(request)
    stage.state.clear_faults()
    assert not result.success
    failure = result.failure_data_for_node("prepare_context")
    assert failure is not None and failure.error is not None
    text = str(failure.error)
    assert f"cannot read the default branch of {REPO} from GitHub" in text and "changed nothing" in text, text
    assert stage.branches() == ["main"]
