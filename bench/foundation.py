"""Foundation figures, measured side by side in one run on this machine.

- embedded PostgreSQL: a cold start (initdb + start) against a warm start of the same data directory, the
  cost `make run` pays the first time against every later time;
- migrations: the first application against the up-to-date check every process start pays;
- trigger decisions: how many label events one core decides inside one sensor tick (60 s).

Run: .venv/bin/python bench/foundation.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from codexk8s_pipelines.domain.decisions import IssueLabelEvent, decide_issue_label
from codexk8s_pipelines.domain.rules import DEFAULT_RULES, Actor
from codexk8s_pipelines.domain.stages import STAGE_NAMES, Permission
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore, sigterm_as_interrupt
from sensors.tick import TICK_SECONDS


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_database(rounds: int = 3) -> None:
    cold, warm, first, again = [], [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            pg = EmbeddedPostgres(Path(tmp) / "data")
            try:  # stopped however the bench ends (stop() leaves alone a server it did not start)
                cold.append(_timed(pg.start))
                store = PlatformStore(pg.url or "")
                first.append(_timed(store.migrate))
                again.append(statistics.median(_timed(store.migrate) for _ in range(5)))
            finally:
                pg.stop()
            pg2 = EmbeddedPostgres(Path(tmp) / "data")
            try:
                warm.append(_timed(pg2.start))
            finally:
                pg2.stop()
    c, w = statistics.median(cold), statistics.median(warm)
    f, a = statistics.median(first), statistics.median(again)
    print(f"embedded PostgreSQL  cold start {c:6.2f} s   warm start {w:6.2f} s   cold/warm {c / w:5.1f}x")
    print(f"migrations           first {f * 1000:8.1f} ms   up to date {a * 1000:6.1f} ms   first/again {f / a:5.1f}x")


def bench_decisions(n: int = 20000) -> None:
    actor = Actor("alice", permission=Permission.WRITE)
    events = [
        IssueLabelEvent(("bug", f"run:{s}", "[ai-model-gpt-5.4]"), f"run:{s}", actor, dev_run_exists=True)
        for s in STAGE_NAMES
    ]
    t = time.perf_counter()
    for i in range(n):
        decide_issue_label(events[i % len(events)], DEFAULT_RULES)
    per = (time.perf_counter() - t) / n
    print(
        f"trigger decisions    {per * 1e6:8.1f} µs each   per 60 s tick {TICK_SECONDS / per:,.0f}"
        f"   share of a tick for 1,000 events {1000 * per / TICK_SECONDS:.2e}"
    )


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    with sigterm_as_interrupt():
        bench_database()
        bench_decisions()
