"""Runs of one branch never overlap: they share its working folder and push to it.

A `run:dev:revise` of an issue (tag `codexk8s/issue`) and a `need:reviewer` of the PR its dev run opened (tag
`codexk8s/pr`) were each alone under their own limit, so the queue started both at once in the same folder; the
reviewer's checkout emptied it in the middle of the dev agent's turn, and the dev run pushed what was left and said
"succeeded". Now both carry the branch's tag (one run per branch), and a run that still reaches a folder another run
holds stops before touching it.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._utils.tags import TagConcurrencyLimitsCounter

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.instance import local_instance_yaml

from .conftest import REPO, Stage, github_pull_requests_sensor
from .test_stage_run import _dev_run_with_pull, _service_comment


def _revise_and_review(stage: Stage) -> tuple[int, int, dg.RunRequest, dg.RunRequest]:
    """A dev run with its PR, then `run:dev:revise` on the issue and `need:reviewer` on the PR, requested together."""
    number, pr_number, _branch = _dev_run_with_pull(stage)
    stage.intake.tick(github_pull_requests_sensor)
    stage.state.label(REPO, number, "run:dev:revise", actor="alice")
    (revise,) = stage.trigger()
    stage.state.label(REPO, pr_number, "need:reviewer", actor="bob")
    (review,) = stage.intake.tick(github_pull_requests_sensor).run_requests
    return number, pr_number, revise, review


def test_an_issues_revise_and_a_review_of_its_pull_request_wait_for_each_other_in_the_run_queue(
    stage: Stage, tmp_path: Path
) -> None:
    number, _pr, revise, review = _revise_and_review(stage)
    branch_tag = f"{REPO}:codex/issue-{number}"
    assert revise.tags["codexk8s/branch"] == branch_tag
    assert review.tags["codexk8s/branch"] == branch_tag  # the PR's head branch, read by the sensor

    # The queue as the daemon runs it, from the generated dagster.yaml (the Helm values are held equal to it).
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(local_instance_yaml(load_config_from_environment()))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits  # type: ignore[union-attr]
    running = dg.DagsterRun(job_name=revise.job_name or "", tags=revise.tags)
    waiting = dg.DagsterRun(job_name=review.job_name or "", tags=review.tags)
    assert TagConcurrencyLimitsCounter(limits, [running]).is_blocked(waiting)
    assert TagConcurrencyLimitsCounter(limits, [waiting]).is_blocked(running)


def test_a_run_reaching_a_folder_another_run_of_its_branch_holds_stops_and_leaves_it_alone(stage: Stage) -> None:
    """As a run launched from the Launchpad without the queue's tags would: the folder is held by the revise in its
    agent's turn; the reviewer stops at once with `workdir_busy`, naming the folder and the run, and wipes nothing."""
    from codexk8s_pipelines.agents.workdir_lock import workdir_lock  # the revise's runner, holding its folder

    number, pr_number, revise, review = _revise_and_review(stage)
    first = stage.execute(revise)  # the revise's folder, with the agent's work in it
    assert first.success
    workdir = Path(first.output_for_node("render_prompt_op")["workdir"])
    work = workdir / "src" / "app.py"
    in_progress = work.read_text() + "# the agent is still at it\n"
    work.write_text(in_progress)

    with workdir_lock(workdir, f"codex/issue-{number}", "revise", run_id="the-revise-run"):
        result = stage.execute(review)

    assert not result.success
    assert work.read_text() == in_progress  # not emptied under the other run
    comment = _service_comment(stage, pr_number)
    assert "workdir_busy" in comment and "Dagster run the-revise-run" in comment, comment
    assert str(workdir) in comment
    (failed,) = [e for e in stage.store.events(review.run_key or "") if e["event_type"] == "run.failed.precondition"]
    assert failed["payload"]["reason"] == "workdir_busy"
