"""Self-improve cadence: when enough runs finished, one issue with the evidence and the self-improve label."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.autonomous.self_improve import self_improve_evidence
from codexk8s_pipelines.config import PlatformConfig
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.insight.evidence import apply, delivery_evidence
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from codexk8s_pipelines.store.evidence import RunEvidence, agent_status_lines, finished_runs_since, last_prepared
from schedules import all_schedules
from tests.github_server import GitHubServer, github_server  # noqa: F401  (fixture)

REPO = "acme/shop"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _run(store: PlatformStore, n: int, stage: str, status: str, minutes: float, *, revise: bool = False,
         reason: str | None = None, agent_status: str | None = None, repository: str = REPO,
         finished_now: bool = False) -> None:  # fmt: skip
    key = f"{repository}#{n}:run:{stage}:{n}"
    store.register_run(RunRecord(key, repository, stage, stage=stage, revise=revise, issue_number=n))
    start = T0 + timedelta(hours=n)
    with store.connect() as conn:
        conn.execute(
            "UPDATE runs SET status = %s, started_at = %s, finished_at = %s WHERE correlation_key = %s",
            (status, start, start + timedelta(minutes=minutes), key),
        )
    # The audit rows a run leaves (its start and its end), at the run's own times: the evidence's counts come
    # from them, as the delivery insight assets' do.
    store.append_event(key, "run.started", "system", "t", {"dagster_run_id": f"run-{n}"}, at=start)
    finished = datetime.now(UTC) if finished_now else start + timedelta(minutes=minutes)
    if reason:
        store.append_event(key, "run.failed", "system", "t", {"reason": reason, "message": "m"}, at=finished)
    else:
        store.append_event(key, f"run.{status}", "system", "t", {}, at=finished)
    if agent_status:
        store.append_event(key, "run.agent.status_reported", "agent", "t", {"status": agent_status})


def _history(store: PlatformStore) -> None:
    _run(store, 1, "dev", "succeeded", 30, agent_status="tests green, opening the PR")
    _run(store, 2, "dev", "failed", 50, reason="write_scope_violation")
    _run(store, 3, "dev", "failed", 10, reason="write_scope_violation")
    _run(store, 4, "qa", "failed", 5, reason="agent_timeout")
    _run(store, 5, "dev", "succeeded", 90, revise=True)
    _run(store, 6, "plan", "canceled", 2, revise=True)
    _run(store, 7, "other", "succeeded", 1, repository="acme/other")


def test_evidence_counts_failures_revises_and_slow_stages(store: PlatformStore) -> None:
    _history(store)
    now = datetime.now(UTC)
    # As the asset gathers it: the counts from the delivery metrics, the status lines from the audit trail.
    lines = agent_status_lines(store, REPO, None, now)
    delivery = delivery_evidence(store, PlatformConfig(), REPO, None, now)
    evidence = apply(RunEvidence(REPO, None, now, status_lines=lines), delivery)
    assert evidence.finished == 6
    assert evidence.by_status == {"succeeded": 2, "failed": 3, "canceled": 1}
    assert evidence.failures_by_reason == [("write_scope_violation", 2), ("agent_timeout", 1)]
    assert evidence.revise_by_stage == [("dev", 1), ("plan", 1)]
    slowest = evidence.slowest_stages[0]
    assert (slowest.stage, slowest.runs, slowest.median_seconds, slowest.max_seconds) == ("dev", 4, 40 * 60, 90 * 60)
    assert [row["text"] for row in evidence.status_lines] == ["tests green, opening the PR"]
    assert finished_runs_since(store, REPO, T0 + timedelta(hours=3, minutes=30)) == 3


@pytest.fixture
def cadence(github_server: GitHubServer, store: PlatformStore, tmp_path: Path,  # noqa: F811
            monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:  # fmt: skip
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"repositories:\n  - github: {REPO}\nperiodic:\n  self_improve: {{min_finished_runs: 5}}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", github_server.token)
    monkeypatch.setenv("CODEXK8S_GITHUB_API_URL", github_server.url)
    github_server.state.add_repo(REPO)
    resources = {"platform_db": PlatformDatabase(url=store.url), "platform_config": PlatformConfigResource(),
                 "github": GitHubResource()}  # fmt: skip
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))  # see conftest.py: not entered here
    instance.add_dynamic_partitions("repositories", [REPO])
    yield {"instance": instance, "resources": resources, "state": github_server.state}
    instance.dispose()


def _cadence_tick(env: dict) -> dg.ScheduleExecutionData:
    (schedule,) = [s for s in all_schedules() if s.name == "self_improve_cadence"]
    defs = dg.Definitions(assets=[self_improve_evidence], schedules=[schedule], resources=env["resources"])
    with dg.build_schedule_context(
        instance=env["instance"],
        resources=env["resources"],
        scheduled_execution_time=datetime.now(UTC),
        repository_def=defs.get_repository_def(),
    ) as context:  # as a context: it leaves no Dagster instance state behind
        return schedule.evaluate_tick(context)


def _materialize(env: dict) -> dict:
    result = dg.materialize(
        [self_improve_evidence], partition_key=REPO, instance=env["instance"], resources=env["resources"]
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_cadence_waits_for_enough_runs_then_opens_one_labelled_issue(cadence: dict, store: PlatformStore) -> None:
    _run(store, 1, "dev", "failed", 20, reason="agent_timeout")
    waiting = _cadence_tick(cadence)
    assert not waiting.run_requests and "acme/shop: 1 of 5 runs finished" in (waiting.skip_message or "")

    _history(store)  # five more on acme/shop (issue 1 is already there)
    (request,) = _cadence_tick(cadence).run_requests
    assert request.partition_key == REPO and request.run_key.startswith(f"self_improve:{REPO}:")

    first = _materialize(cadence)
    assert first["action"] == "opened" and first["finished_runs"] == 6
    issue = cadence["state"].issue(REPO, first["issue"])
    assert issue.labels == ["run:self-improve"]
    assert "| write_scope_violation | 2 |" in issue.body and "| dev | 1 |" in issue.body
    assert "tests green, opening the PR" in issue.body
    assert last_prepared(store, REPO) is not None

    # Evidence taken: the count starts again from zero, so the cadence waits.
    assert "0 of 5 runs finished" in (_cadence_tick(cadence).skip_message or "")
    for n in range(10, 15):
        _run(store, n, "qa", "failed", 3, reason="tests_failed", finished_now=True)
    with store.connect() as conn:  # those runs finished after the evidence was taken
        conn.execute("UPDATE runs SET finished_at = now() WHERE issue_number >= 10")
    assert len(_cadence_tick(cadence).run_requests) == 1
    second = _materialize(cadence)
    assert second["action"] == "updated" and second["issue"] == first["issue"]  # the open issue is refreshed
    body = cadence["state"].issue(REPO, first["issue"]).body
    assert "| tests_failed | 5 |" in body and "write_scope_violation" not in body

    cadence["state"].set_issue_state(REPO, first["issue"], "closed")
    for n in range(20, 25):
        _run(store, n, "dev", "succeeded", 3, finished_now=True)
    with store.connect() as conn:
        conn.execute("UPDATE runs SET finished_at = now() WHERE issue_number >= 20")
    third = _materialize(cadence)
    assert third["action"] == "opened" and third["issue"] != first["issue"]  # the closed one is not reused


def test_with_300_repositories_the_skip_reason_counts_them_and_shows_the_first_few(cadence: dict) -> None:
    """One clause per repository made the tick history's line 300 clauses long."""
    cadence["instance"].add_dynamic_partitions("repositories", [f"org/r{i:03}" for i in range(299)])
    reason = _cadence_tick(cadence).skip_message or ""
    assert reason == (
        "acme/shop: 0 of 5 runs finished since the last evidence issue; "
        "org/r000: 0 of 5 runs finished since the last evidence issue; "
        "org/r001: 0 of 5 runs finished since the last evidence issue; … and 297 more of 300"
    )


def test_fan_out_schedules_use_the_configured_cron_and_one_run_per_repository(cadence: dict, tmp_path: Path) -> None:
    from codexk8s_pipelines.config import load_config_from_environment

    (tmp_path / "codexk8s.yaml").write_text(
        f"repositories:\n  - github: {REPO}\nperiodic:\n  security: {{cron: '15 1 * * 2'}}\n"
    )
    load_config_from_environment.cache_clear()
    schedules = {s.name: s for s in all_schedules()}
    assert schedules["security_scan_schedule"].cron_schedule == "15 1 * * 2"
    assert schedules["dependency_freshness_schedule"].cron_schedule == "41 3 * * 1"  # the weekly default
    assert schedules["ops_drift_schedule"].cron_schedule == "7 * * * *"
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in schedules.values())
    cadence["instance"].add_dynamic_partitions("repositories", ["acme/other"])
    schedule = schedules["security_scan_schedule"]
    when = datetime(2026, 11, 24, 1, 15, tzinfo=UTC)
    from codexk8s_pipelines.autonomous.security import security_findings

    defs = dg.Definitions(assets=[security_findings], schedules=[schedule], resources=cadence["resources"])
    with dg.build_schedule_context(
        instance=cadence["instance"], scheduled_execution_time=when, repository_def=defs.get_repository_def()
    ) as context:
        data = schedule.evaluate_tick(context)
    assert sorted((r.partition_key, r.run_key) for r in data.run_requests) == [
        ("acme/other", "security_scan_schedule:acme/other:20261124T0115"),
        (REPO, f"security_scan_schedule:{REPO}:20261124T0115"),
    ]


def test_a_broken_config_file_leaves_default_crons_and_the_location_loads(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "codexk8s.yaml"
    config.write_text("periodic:\n  security: {cron: 'every night'}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    schedules = {s.name: s for s in all_schedules()}
    assert schedules["security_scan_schedule"].cron_schedule == "23 2 * * *"
