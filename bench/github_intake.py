"""GitHub intake figures against the local fake GitHub, measured side by side in one run.

- an idle repository: GitHub requests per tick and rate-limit units spent (goal: 0 — a 304 is free);
- an active repository (one new label): requests and rate-limit units per tick;
- tick time for 500 watched repositories with 30 ms of server latency per request, polled by 8 workers
  against 1 worker, and as a share of Dagster's 60 s tick.

Run: .venv/bin/python bench/github_intake.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexk8s_pipelines.domain.rules import DEFAULT_RULES
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore
from sensors.cursor import IntakeCursor
from sensors.intake import IntakeKind, TickContext, run_tick
from tests.github_server import GitHubServer

TICK = 60.0


def _setup(server: GitHubServer, n: int) -> list[str]:
    repos = [f"org/svc{i:03d}" for i in range(n)]
    for repo in repos:
        server.state.add_repo(repo, collaborators={"alice": "write"})
        server.state.add_issue(repo, "first")
    return repos


def _tick(server: GitHubServer, store: PlatformStore, repos: list[str], cursor: IntakeCursor, workers: int) -> float:
    connector = GitHubConnector(GitHubCredentials(api_url=server.url, token=server.token))
    ctx = TickContext(rules=DEFAULT_RULES, store=store, now=datetime.now(UTC))
    t = time.perf_counter()
    run_tick(
        IntakeKind.ISSUE_LABELS,
        repos,
        lambda name: RepoApi(connector.for_repository(name), name),
        cursor,
        ctx,
        budget_seconds=55,
        max_workers=workers,
    )
    return time.perf_counter() - t


def _cost(server: GitHubServer, fn) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    server.state.clear_requests()
    before = server.state.rate_limit_remaining
    fn()
    return len(server.state.requests), before - server.state.rate_limit_remaining


def bench_costs(store: PlatformStore) -> None:
    with GitHubServer() as server:
        repos = _setup(server, 20)
        cursor = IntakeCursor()
        for _ in range(3):  # first look, the boundary listing, then the ETag holds
            _tick(server, store, repos, cursor, 8)
        idle_requests, idle_units = _cost(server, lambda: _tick(server, store, repos, cursor, 8))
        server.state.label(repos[0], 1, "run:plan")
        active_requests, active_units = _cost(server, lambda: _tick(server, store, repos[:1], cursor, 1))
    print(
        f"idle repository      {idle_requests / len(repos):4.1f} requests/tick   "
        f"{idle_units / len(repos):4.1f} rate-limit units/tick   (goal 0 units)"
    )
    print(f"active repository    {active_requests:4d} requests/tick   {active_units:4d} rate-limit units/tick")


def bench_500(store: PlatformStore) -> None:
    timings = {}
    for workers in (1, 8):
        with GitHubServer() as server:
            repos = _setup(server, 500)
            cursor = IntakeCursor()
            for _ in range(3):
                _tick(server, store, repos, cursor, 32)
            server.state.latency = 0.03
            for i in range(0, 500, 10):  # 10% of the repositories have a new label this tick
                server.state.label(repos[i], 1, "run:plan")
            timings[workers] = _tick(server, store, repos, cursor, workers)
    one, eight = timings[1], timings[8]
    print(
        f"500 repositories, 30 ms latency, 10% active: 1 worker {one:6.2f} s   8 workers {eight:6.2f} s   "
        f"speed-up {one / eight:4.1f}x   8 workers use {eight / TICK:.0%} of a 60 s tick"
    )


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "data") as pg:
        store = PlatformStore(pg.url or "")
        store.migrate()
        bench_costs(store)
        bench_500(store)
