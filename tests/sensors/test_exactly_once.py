"""Exactly once under faults: 200 label events in 20 repositories, 20% of GitHub's answers failing (5xx,
timeouts, primary and secondary rate limits), the sensor re-created from its cursor alone before every tick,
and some ticks lost whole (the process died before the daemon stored the cursor)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from sensors.cursor import IntakeCursor
from sensors.intake import IntakeKind, TickContext, run_tick

from .conftest import Intake

REPOS = [f"org{i:02d}/svc{i:02d}" for i in range(20)]
STAGES = ("intake", "plan", "prd", "design", "arch")


@pytest.mark.timeout(600)
def test_200_label_events_give_exactly_200_run_requests(intake: Intake, tmp_path, monkeypatch) -> None:
    config = tmp_path / "many.yaml"
    config.write_text("repositories:\n" + "".join(f"  - github: {r}\n" for r in REPOS))
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    load_config_from_environment.cache_clear()
    rules = load_config_from_environment().rules()
    state = intake.state
    for repo in REPOS:
        state.add_repo(repo, collaborators={"alice": "write"})
        for n in range(2):
            state.add_issue(repo, f"issue {n}")

    credentials = GitHubCredentials(api_url=intake.server.url, token=intake.server.token, timeout_seconds=1)
    state.timeout_seconds = 1.5
    clock = [datetime.now(UTC)]
    launched: list[str] = []
    stored_cursor: list[str | None] = [None]

    def tick(lose_it: bool = False) -> int:
        connector = GitHubConnector(credentials)  # a new process: nothing but the stored cursor survives
        cursor = IntakeCursor.from_json(stored_cursor[0])
        ctx = TickContext(rules=rules, store=intake.store, now=clock[0])
        outcome = run_tick(
            IntakeKind.ISSUE_LABELS, REPOS, lambda name: RepoApi(connector.for_repository(name), name), cursor, ctx
        )
        clock[0] += timedelta(seconds=61)  # past any backoff (GitHub's resets are a minute ahead)
        if lose_it:
            return 0
        stored_cursor[0] = outcome.cursor.to_json()
        launched.extend(i.correlation_key for i in outcome.intents)
        return len(outcome.intents)

    for _ in range(3):  # every repository takes its first look before anything is labelled
        tick()
    assert all(r.since for r in IntakeCursor.from_json(stored_cursor[0]).repos.values())
    assert len(IntakeCursor.from_json(stored_cursor[0]).repos) == len(REPOS)

    expected: set[str] = set()
    for i in range(200):
        repo, number, stage = REPOS[i % 20], 1 + (i // 20) % 2, STAGES[(i // 40) % len(STAGES)]
        event_id = state.label(repo, number, f"run:{stage}", actor="alice")
        state.unlabel(repo, number, f"run:{stage}", actor="alice")
        expected.add(f"{repo}#{number}:run:{stage}:{event_id}")

    state.fail_rate(0.2, seed=7)
    ticks = 0
    while ticks < 60 and len(set(launched)) < 200:
        tick(lose_it=ticks % 4 == 3)
        ticks += 1
    state.clear_faults()
    for _ in range(2):
        tick()

    assert len(launched) == 200, f"{len(launched)} run requests after {ticks} ticks"
    assert len(set(launched)) == 200  # no duplicate run_key
    assert set(launched) == expected  # none lost, none invented
    faults = [r for r in state.requests if r[2] >= 400]
    assert len(faults) > 20  # the faults really happened
    with intake.store.connect() as conn:
        rows = conn.execute("SELECT count(*) AS n FROM runs").fetchone()
        audited = conn.execute("SELECT count(*) AS n FROM flow_events WHERE event_type = 'run.requested'").fetchone()
    assert rows["n"] == 200 and audited["n"] == 200
