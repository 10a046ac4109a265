"""GitHub intake figures against the local fake GitHub, measured side by side in one run.

- an idle repository: GitHub requests per tick and rate-limit units spent (goal: 0 — a 304 is free);
- an active repository (one new label): requests and rate-limit units per tick;
- tick time for 500 watched repositories with 30 ms of server latency per request, polled by 8 workers
  against 1 worker, and as a share of Dagster's 60 s tick;
- a bulk edit of 300 issues in one repository at 50 ms a request: the ticks it takes within a 5 s budget and the
  longest of them, against the one tick it would take without one (a tick that overruns Dagster's 60 s is discarded
  with its cursor, so at GitHub's latency an unbudgeted bulk edit of a few hundred issues would never get through);
- webhook against polling, through the real sensor evaluation (`sensors.github.evaluate`) and the real receiver
  (uvicorn, signed deliveries from the fake GitHub): latency from a label to its RunRequest, p50 and p95 over 100
  labels added at random moments, with the sensor ticking at its interval (5 s drain for webhooks, the 30 s
  polling interval otherwise); and GitHub requests and rate-limit units per idle repository and tick.

Run: .venv/bin/python bench/github_intake.py [--webhook-only]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexk8s_pipelines.domain.rules import DEFAULT_RULES
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore, sigterm_as_interrupt
from sensors.cursor import IntakeCursor
from sensors.intake import IntakeKind, TickContext, run_tick
from sensors.tick import TICK_SECONDS
from tests.github_server import GitHubServer


def _setup(server: GitHubServer, n: int, prefix: str = "org/svc") -> list[str]:
    repos = [f"{prefix}{i:03d}" for i in range(n)]
    for repo in repos:
        server.state.add_repo(repo, collaborators={"alice": "write"})
        server.state.add_issue(repo, "first")
    return repos


def _tick(
    server: GitHubServer,
    store: PlatformStore,
    repos: list[str],
    cursor: IntakeCursor,
    workers: int,
    budget: float = 55,
    now: datetime | None = None,
) -> float:
    connector = GitHubConnector(GitHubCredentials(api_url=server.url, token=server.token))
    ctx = TickContext(rules=DEFAULT_RULES, store=store, now=now or datetime.now(UTC))
    t = time.perf_counter()
    run_tick(
        IntakeKind.ISSUE_LABELS,
        repos,
        lambda name: RepoApi(connector.for_repository(name), name),
        cursor,
        ctx,
        budget_seconds=budget,
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
        f"speed-up {one / eight:4.1f}x   8 workers use {eight / TICK_SECONDS:.0%} of a 60 s tick"
    )


def bench_bulk_edit(store: PlatformStore, issues: int = 300, budget: float = 5.0) -> None:
    """The same bulk edit decided with the tick budget and without one (one tick), side by side."""
    ticks: dict[str, list[float]] = {}
    for label, limit in (("budget", budget), ("one tick", 3600.0)):
        with GitHubServer() as server:
            # A repository of its own per case: the store is shared, and the same keys would find the audit rows
            # and comments of the other case already there.
            (repo,) = _setup(server, 1, f"org/bulk-{'budget' if limit == budget else 'one'}-")
            numbers = [server.state.add_issue(repo, f"issue {i}") for i in range(issues)]
            cursor = IntakeCursor()
            now = datetime.now(UTC)
            _tick(server, store, [repo], cursor, 8, limit, now)
            with server.state.same_moment():
                for n in numbers:
                    server.state.label(repo, n, "run:plan")
            server.state.latency = 0.05
            ticks[label] = []
            while len(ticks[label]) < 50:
                now += timedelta(seconds=31)
                server.state.clear_requests()
                ticks[label].append(_tick(server, store, [repo], cursor, 8, limit, now))
                if not [r for r in server.state.requests if "/events" in r[1]]:
                    ticks[label].pop()  # nothing left to decide: this tick only listed
                    break
    budgeted, single = ticks["budget"], ticks["one tick"]
    print(
        f"bulk edit, {issues} issues at 50 ms a request: {len(budgeted)} ticks, the longest {max(budgeted):5.2f} s"
        f" against a {budget:g} s budget ({max(budgeted) / budget:4.2f} of it); without a budget one tick of"
        f" {single[0]:5.2f} s ({single[0] / budget:4.2f} × the budget)"
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _latency_run(store: PlatformStore, tmp: Path, webhook: bool, labels: int = 100, spread: float = 60.0) -> dict:
    """Labels at random moments over `spread` seconds; the sensor ticks at its interval; label → RunRequest."""
    import random
    import threading

    from codexk8s_pipelines.config import loader
    from codexk8s_pipelines.github.resource import GitHubResource
    from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
    from sensors.github import MINIMUM_INTERVAL_SECONDS, IntakeKind, evaluate
    from tests.webhook.conftest import SECRET, Receiver

    prefix = "hook" if webhook else "poll"
    repos = [f"{prefix}/svc{i}" for i in range(10)]
    interval = float(MINIMUM_INTERVAL_SECONDS if webhook else 30)
    config = tmp / f"{prefix}.yaml"
    config.write_text("repositories:\n" + "".join(f"  - github: {r}\n" for r in repos))
    with GitHubServer() as server, Receiver(store) as receiver:
        os.environ.update(
            CODEXK8S_CONFIG=str(config), CODEXK8S_GITHUB_TOKEN=server.token, CODEXK8S_GITHUB_API_URL=server.url,
            CODEXK8S_INTAKE_POLL_SECONDS="3600" if webhook else "0",  # 0: the tick's own 30 s interval decides
            CODEXK8S_INTAKE_RECONCILE_SECONDS="3600",
        )  # fmt: skip
        loader.load_config_from_environment.cache_clear()
        for repo in repos:
            server.state.add_repo(repo, collaborators={"alice": "write"})
            for n in range(labels // len(repos)):
                server.state.add_issue(repo, f"issue {n}")
        resources = (GitHubResource(), PlatformDatabase(url=store.url), PlatformConfigResource())
        cursor: list[str | None] = [None]

        def tick() -> list[str]:
            result = evaluate(IntakeKind.ISSUE_LABELS, cursor[0], *resources)
            cursor[0] = getattr(result, "cursor", cursor[0])
            return [r.run_key for r in getattr(result, "run_requests", None) or []]

        tick()  # the first look
        if webhook:
            server.state.add_webhook(receiver.url, SECRET)
        labelled: dict[str, float] = {}
        rng = random.Random(7)
        plan = sorted((rng.uniform(0, spread), repos[i % len(repos)], 1 + i // len(repos)) for i in range(labels))
        start = time.monotonic()

        def add_labels() -> None:
            for at, repo, number in plan:
                time.sleep(max(0.0, start + at - time.monotonic()))
                event = server.state.label(repo, number, "run:plan", actor="alice")
                labelled[f"{repo}#{number}:run:plan:{event}"] = time.monotonic()

        labeller = threading.Thread(target=add_labels, daemon=True)
        labeller.start()
        latencies: dict[str, float] = {}
        next_tick = start + rng.uniform(0, interval)  # the daemon's phase is unrelated to the labels
        while len(latencies) < labels and time.monotonic() < start + spread + 3 * interval:
            time.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += interval
            for key in tick():
                latencies.setdefault(key, time.monotonic() - labelled[key])
        labeller.join()
        tick()
        server.state.clear_requests()
        before = server.state.rate_limit_remaining
        idle_ticks = 3
        for _ in range(idle_ticks):
            tick()
        requests = len(server.state.requests) / idle_ticks / len(repos)
        units = (before - server.state.rate_limit_remaining) / idle_ticks / len(repos)
    values = list(latencies.values())
    return {
        "decided": len(values), "p50": _percentile(values, 0.5), "p95": _percentile(values, 0.95),
        "idle_requests": requests, "idle_units": units, "interval": interval,
    }  # fmt: skip


def bench_webhook_vs_polling(store: PlatformStore, tmp: Path) -> None:
    hook = _latency_run(store, tmp, webhook=True)
    poll = _latency_run(store, tmp, webhook=False)
    for name, r in (("webhook", hook), ("polling", poll)):
        print(
            f"{name:8s} label→RunRequest over {r['decided']:3d} labels: p50 {r['p50']:5.1f} s  p95 {r['p95']:5.1f} s"
            f"  (tick every {r['interval']:g} s)   idle repository: {r['idle_requests']:.1f} requests/tick, "
            f"{r['idle_units']:.1f} rate-limit units/tick"
        )
    print(
        f"webhook/polling p95 ratio {hook['p95'] / poll['p95']:.2f}  (goal: webhook p95 <= 5 s: "
        f"{'met' if hook['p95'] <= 5 else 'NOT met'}; 0 requests per idle repository by webhook: "
        f"{'met' if hook['idle_requests'] == 0 else 'NOT met'})"
    )


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "data") as pg:
        store = PlatformStore(pg.url or "")
        store.migrate()
        if "--webhook-only" not in sys.argv:
            bench_costs(store)
            bench_500(store)
            bench_bulk_edit(store)
        bench_webhook_vs_polling(store, Path(tmp))
