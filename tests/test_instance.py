"""The run queue keeps one active run per issue, PR or branch and a per-repository limit, with the tags the sensors
set; a stage run goes before the periodic runs, which hold at most half of the slots."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._utils.tags import TagConcurrencyLimitsCounter

from codexk8s_pipelines.autonomous.registry import JOBS
from codexk8s_pipelines.config.loader import parse_config
from codexk8s_pipelines.delivery.stage_jobs import StageRunConfig, stage_run_tags
from codexk8s_pipelines.instance import local_instance_yaml, run_queue
from codexk8s_pipelines.local_stack import prepare_dagster_home


def _config(issue: int | None, repo: str = "acme/shop", pr: int | None = None) -> StageRunConfig:
    return StageRunConfig(
        repository=repo, correlation_key=f"{repo}#{issue or pr}:run:dev:1", issue_number=issue, pr_number=pr,
        stage="dev", role="dev", trigger_label="run:dev", model="m", reasoning="r",
    )  # fmt: skip


def _run(issue: int | None, repo: str = "acme/shop", pr: int | None = None) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="stage_dev", tags=stage_run_tags(_config(issue, repo, pr)))


def test_the_generated_instance_loads_and_limits_runs_like_the_queue_daemon(tmp_path: Path) -> None:
    config = parse_config("concurrency: {per_repository: 2, max_concurrent_runs: 5}\n", "c.yaml")
    (tmp_path / "dagster.yaml").write_text(local_instance_yaml(config))
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    queue = instance.run_coordinator.get_run_queue_config()  # type: ignore[union-attr]
    assert queue.max_concurrent_runs == 5

    running = [_run(1)]
    counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, running)
    assert counter.is_blocked(_run(1))  # a second run for the same issue waits
    assert not counter.is_blocked(_run(2))
    assert not counter.is_blocked(_run(1, repo="acme/other"))

    two = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [_run(1), _run(2)])
    assert two.is_blocked(_run(3))  # the repository has its 2
    assert not two.is_blocked(_run(3, repo="acme/other"))

    pr = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [_run(None, pr=9)])
    assert pr.is_blocked(_run(None, pr=9)) and not pr.is_blocked(_run(None, pr=10))


def test_runs_of_one_branch_wait_for_each_other_whatever_issue_or_pr_they_name(tmp_path: Path) -> None:
    """An issue's revise and a review of the PR its dev run opened work in one folder on one branch: under their
    issue and PR tags alone both ran at once, and the review's checkout emptied the folder under the revise."""
    (tmp_path / "dagster.yaml").write_text(local_instance_yaml(parse_config("{}\n", "c.yaml")))
    queue = dg.DagsterInstance.from_config(str(tmp_path)).run_coordinator.get_run_queue_config()  # type: ignore[union-attr]
    revise = _run(1)
    review = dg.DagsterRun(job_name="stage_reviewer", tags=stage_run_tags(_config(None, pr=2), "codex/issue-1"))
    assert revise.tags["codexk8s/branch"] == review.tags["codexk8s/branch"] == "acme/shop:codex/issue-1"
    assert TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [revise]).is_blocked(review)
    other = dg.DagsterRun(job_name="stage_reviewer", tags=stage_run_tags(_config(None, pr=3), "codex/issue-3"))
    assert not TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [revise]).is_blocked(other)
    spelled = dg.DagsterRun(
        job_name="stage_dev", tags=stage_run_tags(_config(None, repo="Acme/Shop", pr=4), "Codex/Issue-1")
    )
    assert TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [revise]).is_blocked(spelled)


def test_make_run_writes_the_instance_from_the_configuration(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "codexk8s.yaml"
    cfg.write_text("concurrency: {per_repository: 4}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(cfg))
    home = prepare_dagster_home(tmp_path / "state")
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    limits = {x["key"]: x["limit"] for x in written["run_coordinator"]["config"]["tag_concurrency_limits"]}
    assert limits == {
        "codexk8s/issue": 1, "codexk8s/pr": 1, "codexk8s/branch": 1, "codexk8s/repository": 4, "codexk8s/kind": 5,
    }  # fmt: skip
    assert written["telemetry"] == {"enabled": False}


# Where a queued run comes from (the queue daemon requires one): the code location, as the daemon sees it.
LOCATION = RemoteRepositoryOrigin(
    InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="codexk8s_pipelines.definitions")), "__repository__"
)


def _queued(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """A run as the queue holds it: QUEUED, with its origin, in submission order."""
    origin = LOCATION.get_job_origin(run.job_name)
    return instance.add_run(run._replace(status=DagsterRunStatus.QUEUED, remote_job_origin=origin))


def test_a_labels_stage_run_starts_before_hundreds_of_queued_periodic_runs(tmp_path: Path) -> None:
    """300 watched repositories: a schedule tick queues 300 periodic runs, then an issue gets `run:dev`. The queue
    daemon (Dagster's own, on the generated instance) starts the stage run at its next pass, not behind the 300,
    and gives periodic runs at most half of the slots."""
    config = parse_config("", "c.yaml")  # max_concurrent_runs 10
    (tmp_path / "dagster.yaml").write_text(local_instance_yaml(config))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        periodic_tags = JOBS["docs_index_job"].tags or {}
        for i in range(300):
            _queued(
                instance,
                dg.DagsterRun(job_name="docs_index_job", tags={**periodic_tags, "dagster/partition": f"org/r{i}"}),
            )
        stage = _queued(instance, _run(1))
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        started = daemon._get_runs_to_dequeue(
            instance, instance.get_concurrency_config(), None
        )  # the daemon's own choice of what to start
    assert started[0].run_id == stage.run_id
    assert [r.job_name for r in started].count("docs_index_job") == 5 and len(started) == 6


def test_the_periodic_share_of_the_queue_follows_max_concurrent_runs() -> None:
    def periodic_limit(text: str) -> int:
        limits = run_queue(parse_config(text, "c.yaml"))["config"]["tag_concurrency_limits"]
        (limit,) = [x for x in limits if x["key"] == "codexk8s/kind"]
        assert limit["value"] == "periodic"
        return limit["limit"]

    assert periodic_limit("") == 5
    assert periodic_limit("concurrency: {max_concurrent_runs: 3}\n") == 1
    assert periodic_limit("concurrency: {max_concurrent_runs: 1}\n") == 1  # never none: the checks still run
