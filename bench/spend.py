"""Cost accounting figures, measured side by side in one run.

- usage accounting per agent turn: the runner's meter (parse the agent's event line, add its usage, price it,
  check the run cap and the loop rule) against a bare `json.loads` of the same line; goal under 1 ms a turn;
- the monthly spend of a repository and the launch-time budget sums over 100,000 recorded runs, with the
  indexes of migration 0009 against the same queries with index scans switched off; goal under 200 ms.

Run: .venv/bin/python bench/spend.py
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from codexk8s_pipelines.agents.usage_meter import UsageMeter
from codexk8s_pipelines.domain.spend import Budgets, Limit, Price, PriceTable
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore, sigterm_as_interrupt
from codexk8s_pipelines.store.usage import monthly_spend, spent

PRICES = PriceTable("USD", {"gpt-5.5": Price(Decimal("1.25"), Decimal("0.125"), Decimal(10))})
NOW = datetime(2026, 12, 20, 12, tzinfo=UTC)
RUNS = 100_000
REPOSITORIES = [f"org/repo-{i}" for i in range(50)]


def _codex_lines(turns: int) -> list[str]:
    lines = [json.dumps({"type": "thread.started", "thread_id": "t"})]
    for i in range(turns):
        item = {
            "id": f"i{i}",
            "type": "command_execution",
            "command": f"pytest -q tests/test_{i}.py",
            "aggregated_output": "x" * 400,
            "status": "completed",
            "exit_code": 0,
        }
        lines.append(json.dumps({"type": "item.completed", "item": item}))
        usage = {"input_tokens": 12_000, "cached_input_tokens": 8_000, "output_tokens": 400}
        lines.append(json.dumps({"type": "turn.completed", "usage": usage}))
    return lines


def bench_meter(turns: int = 2_000) -> None:
    lines = _codex_lines(turns)
    rounds_meter, rounds_bare = [], []
    for _ in range(5):
        meter = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(per_run=Limit(tokens=10**12)), loop_turns=8)
        t = time.perf_counter()
        for line in lines:
            meter.feed(line)
        rounds_meter.append(time.perf_counter() - t)
        t = time.perf_counter()
        for line in lines:
            json.loads(line)
        rounds_bare.append(time.perf_counter() - t)
    per_turn = statistics.median(rounds_meter) / turns * 1000
    bare = statistics.median(rounds_bare) / turns * 1000
    print(
        f"usage accounting     {per_turn:7.4f} ms/turn (meter)   {bare:7.4f} ms/turn (json.loads alone)"
        f"   goal 1 ms: {per_turn / 1.0:5.3f} of it"
    )


def _fill(store: PlatformStore) -> None:
    rnd = random.Random(7)
    start = NOW - timedelta(days=365)
    with store.connect() as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY run_usage (correlation_key, repository, issue_number, stage, agent, model, input_tokens,"
            " cached_input_tokens, output_tokens, cost, currency, cost_source, recorded_at) FROM STDIN"
        ) as copy:
            for i in range(RUNS):
                repo = rnd.choice(REPOSITORIES)
                at = start + timedelta(seconds=rnd.uniform(0, 365 * 86400))
                inp = rnd.randint(1_000, 400_000)
                copy.write_row(
                    (
                        f"{repo}#{i}:run:dev:{i}",
                        repo,
                        rnd.randint(1, 2000),
                        "dev",
                        rnd.choice(["codex", "claude-code"]),
                        "gpt-5.5",
                        inp,
                        inp // 2,
                        inp // 20,
                        Decimal(inp) / 100_000,
                        "USD",
                        "price table",
                        at,
                    )
                )
        conn.execute("ANALYZE run_usage")


def _median_ms(fn, n: int = 15) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bench_queries() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data")
        pg.start()
        try:
            store = PlatformStore(pg.url or "")
            store.migrate()
            _fill(store)
            repo = REPOSITORIES[3]
            indexed_month = _median_ms(lambda: monthly_spend(store, NOW, [repo]))
            indexed_launch = _median_ms(lambda: spent(store, repo, 17, "codex", now=NOW))
            all_month = _median_ms(lambda: monthly_spend(store, NOW, REPOSITORIES), n=5)
            with store.connect() as conn:
                plan = conn.execute(
                    "EXPLAIN SELECT count(*) FROM run_usage WHERE repository = %s AND recorded_at >= %s",
                    (repo, NOW.replace(day=1)),
                ).fetchall()
            print(f"monthly spend plan   {' / '.join(str(next(iter(r.values()))).strip() for r in plan[:2])}")
            # The same queries without the indexes' help: what the index buys.
            store_noidx = PlatformStore(
                (pg.url or "")
                + ("&" if "?" in (pg.url or "") else "?")
                + "options=-c%20enable_indexscan%3Doff%20-c%20enable_bitmapscan%3Doff%20-c%20enable_indexonlyscan%3Doff"
            )
            plain_month = _median_ms(lambda: monthly_spend(store_noidx, NOW, [repo]))
            plain_launch = _median_ms(lambda: spent(store_noidx, repo, 17, "codex", now=NOW))
        finally:
            pg.stop()
    print(
        f"monthly spend        {indexed_month:7.2f} ms (indexed)   {plain_month:7.2f} ms (no index)"
        f"   {plain_month / indexed_month:5.1f}x   goal 200 ms: {indexed_month / 200:5.3f} of it   ({RUNS:,} runs)"
    )
    print(
        f"launch budget sums   {indexed_launch:7.2f} ms (indexed)   {plain_launch:7.2f} ms (no index)"
        f"   {plain_launch / indexed_launch:5.1f}x"
    )
    print(f"monthly spend, all {len(REPOSITORIES)} repositories {all_month:7.2f} ms")


if __name__ == "__main__":
    with sigterm_as_interrupt():
        bench_meter()
        bench_queries()
