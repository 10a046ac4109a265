"""The run queue keeps one active run per issue or PR and a per-repository limit, with the tags the sensors set."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml
from dagster._utils.tags import TagConcurrencyLimitsCounter

from codexk8s_pipelines.config.loader import parse_config
from codexk8s_pipelines.delivery.stage_jobs import StageRunConfig, stage_run_tags
from codexk8s_pipelines.instance import local_instance_yaml
from codexk8s_pipelines.local_stack import prepare_dagster_home


def _run(issue: int | None, repo: str = "acme/shop", pr: int | None = None) -> dg.DagsterRun:
    config = StageRunConfig(
        repository=repo, correlation_key=f"{repo}#{issue or pr}:run:dev:1", issue_number=issue, pr_number=pr,
        stage="dev", role="dev", trigger_label="run:dev", model="m", reasoning="r",
    )  # fmt: skip
    return dg.DagsterRun(job_name="stage_dev", tags=stage_run_tags(config))


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


def test_make_run_writes_the_instance_from_the_configuration(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "codexk8s.yaml"
    cfg.write_text("concurrency: {per_repository: 4}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(cfg))
    home = prepare_dagster_home(tmp_path / "state")
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    limits = {x["key"]: x["limit"] for x in written["run_coordinator"]["config"]["tag_concurrency_limits"]}
    assert limits == {"codexk8s/issue": 1, "codexk8s/pr": 1, "codexk8s/repository": 4}
    assert written["telemetry"] == {"enabled": False}
