"""Run usage and budget reservations in the platform database.

A launch reserves its hold under one advisory lock, after summing what its scopes already spent and hold, in the
same transaction: two sensors deciding at the same moment are serialised there, so a budget with room for one run
starts one. The hold is released when the run's usage is recorded, or when the run ends without a report.

A row of `run_usage` is one attempt of a run: one Dagster run of its correlation key. A run re-executed from the
Dagster UI (a new Dagster run, the same key) adds its attempt's usage to the first's instead of replacing it, so
every sum over time ranges (the budgets, the spend report) and the issue's running total count each attempt, and
their run counts are counts of attempts. `run_usage` and `usage_for_runs` give a run's attempts summed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..domain.spend import Amount, Breach, Budgets, Cost, Scope, TokenCounts, launch_breaches
from .database import PlatformStore

_BUDGET_LOCK = 0x62756467  # "budg": one lock for every budget decision (they are rare; exactness matters)


@dataclass(frozen=True)
class UsageRecord:
    """One run's usage as the runner parsed it, with its cost already computed from the price table.

    `dagster_run_id`: the attempt (the Dagster run) that used it; '' for usage recorded before attempts were kept
    apart, and for callers outside a Dagster run."""

    correlation_key: str
    repository: str
    agent: str
    tokens: TokenCounts
    cost: Cost
    issue_number: int | None = None
    stage: str | None = None
    model: str | None = None
    reasoning_tokens: int | None = None
    dagster_run_id: str = ""


def usage_figures(
    agent: str, model: str | None, tokens: TokenCounts, cost: Decimal | None, currency: str
) -> dict[str, Any]:
    """A run's usage as the audit and the MCP tools show it: `input`/`output` counts, the cost as text."""
    return {
        "agent": agent,
        "model": model,
        "input": tokens.input,
        "cached_input": tokens.cached_input,
        "output": tokens.output,
        "cost": None if cost is None else str(cost),
        "currency": currency,
    }


@dataclass(frozen=True)
class SpendRow:
    """Spend of one repository, agent and model over a period. `runs` counts attempts: a run re-executed from the
    Dagster UI spent twice and counts twice (so do `unknown_runs` and `unpriced_runs`)."""

    repository: str
    agent: str
    model: str
    runs: int
    unknown_runs: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost: Decimal
    currency: str
    # Runs with no money figure (no price for their model, no cost of the agent's own, or usage unknown, as
    # `Amount.unpriced` counts them); `cost` leaves them out.
    unpriced_runs: int = 0

    @property
    def without_price(self) -> int:
        """Runs whose usage is known but has no price: what the report says beside the cost."""
        return self.unpriced_runs - self.unknown_runs

    @property
    def amount(self) -> Amount:
        """The row as an `Amount`, to be said by `money_text` like every other total."""
        tokens = self.input_tokens + self.output_tokens
        return Amount(tokens, self.cost, self.runs, self.unknown_runs, self.unpriced_runs)


def day_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def record_usage(store: PlatformStore, usage: UsageRecord, at: datetime | None = None) -> None:
    """Write an attempt's usage and release its run's hold (if it still has one).

    One row per Dagster run of the key: the same attempt reporting again replaces its own row, another attempt (a
    re-execution from the Dagster UI, which reserved nothing) adds its own. Its hold was released by the first
    attempt's report (or by the run's end without one), so there is nothing left to release."""
    t = usage.tokens
    with store.connect() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO run_usage (correlation_key, dagster_run_id, repository, issue_number, stage, agent, model,"
            " input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost, currency, cost_source,"
            " recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))"
            " ON CONFLICT (correlation_key, dagster_run_id) DO UPDATE SET input_tokens = EXCLUDED.input_tokens,"
            " cached_input_tokens = EXCLUDED.cached_input_tokens, output_tokens = EXCLUDED.output_tokens,"
            " reasoning_tokens = EXCLUDED.reasoning_tokens, cost = EXCLUDED.cost, currency = EXCLUDED.currency,"
            " cost_source = EXCLUDED.cost_source, model = EXCLUDED.model",
            (
                usage.correlation_key,
                usage.dagster_run_id,
                usage.repository.lower(),
                usage.issue_number,
                usage.stage,
                usage.agent,
                usage.model,
                t.input,
                t.cached_input,
                t.output,
                usage.reasoning_tokens,
                usage.cost.amount,
                usage.cost.currency,
                usage.cost.source.value,
                at,
            ),
        )
        conn.execute(
            "UPDATE budget_reservations SET released_at = now() WHERE correlation_key = %s AND released_at IS NULL",
            (usage.correlation_key,),
        )


def release_reservation(store: PlatformStore, correlation_key: str) -> bool:
    """A run that ended without a usage report gives its hold back; True when there was one."""
    with store.connect() as conn:
        cur = conn.execute(
            "UPDATE budget_reservations SET released_at = now() WHERE correlation_key = %s AND released_at IS NULL",
            (correlation_key,),
        )
        return cur.rowcount > 0


_SPENT = """
WITH used AS (
    SELECT issue_number, agent, recorded_at AS at, coalesce(input_tokens, 0) + coalesce(output_tokens, 0) AS tokens,
           coalesce(cost, 0) AS cost, (input_tokens IS NULL AND output_tokens IS NULL AND cost IS NULL) AS unknown,
           repository
      FROM run_usage
     WHERE (repository = %(repo)s AND (recorded_at >= %(month)s OR issue_number = %(issue)s))
        OR (agent = %(agent)s AND recorded_at >= %(day)s)
    UNION ALL
    SELECT issue_number, agent, created_at, tokens, cost, false, repository
      FROM budget_reservations
     WHERE released_at IS NULL
       AND ((repository = %(repo)s AND (created_at >= %(month)s OR issue_number = %(issue)s))
            OR (agent = %(agent)s AND created_at >= %(day)s))
)
SELECT
  sum(tokens) FILTER (WHERE repository = %(repo)s AND issue_number = %(issue)s) AS issue_tokens,
  sum(cost) FILTER (WHERE repository = %(repo)s AND issue_number = %(issue)s) AS issue_cost,
  count(*) FILTER (WHERE repository = %(repo)s AND issue_number = %(issue)s) AS issue_runs,
  count(*) FILTER (WHERE repository = %(repo)s AND issue_number = %(issue)s AND unknown) AS issue_unknown,
  sum(tokens) FILTER (WHERE repository = %(repo)s AND at >= %(day)s) AS day_tokens,
  sum(cost) FILTER (WHERE repository = %(repo)s AND at >= %(day)s) AS day_cost,
  count(*) FILTER (WHERE repository = %(repo)s AND at >= %(day)s) AS day_runs,
  count(*) FILTER (WHERE repository = %(repo)s AND at >= %(day)s AND unknown) AS day_unknown,
  sum(tokens) FILTER (WHERE repository = %(repo)s AND at >= %(month)s) AS month_tokens,
  sum(cost) FILTER (WHERE repository = %(repo)s AND at >= %(month)s) AS month_cost,
  count(*) FILTER (WHERE repository = %(repo)s AND at >= %(month)s) AS month_runs,
  count(*) FILTER (WHERE repository = %(repo)s AND at >= %(month)s AND unknown) AS month_unknown,
  sum(tokens) FILTER (WHERE agent = %(agent)s AND at >= %(day)s) AS agent_tokens,
  sum(cost) FILTER (WHERE agent = %(agent)s AND at >= %(day)s) AS agent_cost,
  count(*) FILTER (WHERE agent = %(agent)s AND at >= %(day)s) AS agent_runs,
  count(*) FILTER (WHERE agent = %(agent)s AND at >= %(day)s AND unknown) AS agent_unknown
FROM used
"""


def _amount(row: Mapping[str, Any], prefix: str) -> Amount:
    return Amount(
        int(row[f"{prefix}_tokens"] or 0),
        Decimal(row[f"{prefix}_cost"] or 0),
        int(row[f"{prefix}_runs"] or 0),
        int(row[f"{prefix}_unknown"] or 0),
    )


def _spent(conn: Any, repository: str, issue_number: int | None, agent: str, now: datetime) -> dict[Scope, Amount]:
    row = conn.execute(
        _SPENT,
        {
            "repo": repository.lower(),
            "issue": issue_number,
            "agent": agent,
            "day": day_start(now),
            "month": month_start(now),
        },
    ).fetchone()
    amounts = {
        Scope.REPOSITORY_DAY: _amount(row, "day"),
        Scope.REPOSITORY_MONTH: _amount(row, "month"),
        Scope.AGENT_DAY: _amount(row, "agent"),
    }
    if issue_number is not None:
        amounts[Scope.ISSUE] = _amount(row, "issue")
    return amounts


def spent(
    store: PlatformStore, repository: str, issue_number: int | None, agent: str, now: datetime | None = None
) -> dict[Scope, Amount]:
    """What each budget scope of a prospective run has spent and holds now."""
    with store.connect() as conn:
        return _spent(conn, repository, issue_number, agent, now or datetime.now(UTC))


def reserve(
    store: PlatformStore,
    budgets: Budgets,
    correlation_key: str,
    repository: str,
    issue_number: int | None,
    agent: str,
    now: datetime | None = None,
) -> list[Breach]:
    """Hold a launch's reservation if every budget has room; the breaches when one has not (nothing is held).

    Idempotent per run: a key that already holds (a sensor tick retried after a crash) keeps its hold."""
    now = now or datetime.now(UTC)
    with store.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUDGET_LOCK,))
        held = conn.execute(
            "SELECT 1 FROM budget_reservations WHERE correlation_key = %s", (correlation_key,)
        ).fetchone()
        if held is not None:
            return []
        breaches = launch_breaches(budgets, _spent(conn, repository, issue_number, agent, now))
        if breaches:
            return breaches
        hold = budgets.reservation()
        conn.execute(
            "INSERT INTO budget_reservations (correlation_key, repository, issue_number, agent, tokens, cost,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (correlation_key, repository.lower(), issue_number, agent, hold.tokens, hold.cost, now),
        )
        return []


def issue_runs(store: PlatformStore, repository: str, issue_number: int) -> list[Amount]:
    """Every recorded attempt of the issue's runs, oldest first: the service comment's running total (a run
    re-executed from the Dagster UI is two attempts, each counted with what it spent)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT input_tokens, output_tokens, cost FROM run_usage WHERE repository = %s AND issue_number = %s"
            " ORDER BY recorded_at, id",
            (repository.lower(), issue_number),
        ).fetchall()
    return [
        Amount.of(
            None
            if r["input_tokens"] is None and r["output_tokens"] is None
            else (r["input_tokens"] or 0) + (r["output_tokens"] or 0),
            r["cost"],
        )
        for r in rows
    ]


# A run's attempts summed: token counts and cost over the attempts that reported them (NULL, "unknown", when none
# did; never 0), how many attempts there were, reported nothing (`unknown_attempts`) or have no money figure
# (`unpriced_attempts`, as `Amount.unpriced` counts them: `cost` leaves them out), and the rest as the latest
# attempt recorded it.
RUN_ATTEMPTS_SQL = """
SELECT correlation_key,
       (array_agg(repository ORDER BY recorded_at DESC, id DESC))[1] AS repository,
       (array_agg(issue_number ORDER BY recorded_at DESC, id DESC))[1] AS issue_number,
       (array_agg(stage ORDER BY recorded_at DESC, id DESC))[1] AS stage,
       (array_agg(agent ORDER BY recorded_at DESC, id DESC))[1] AS agent,
       (array_agg(model ORDER BY recorded_at DESC, id DESC))[1] AS model,
       (array_agg(currency ORDER BY recorded_at DESC, id DESC))[1] AS currency,
       (array_agg(cost_source ORDER BY recorded_at DESC, id DESC))[1] AS cost_source,
       sum(input_tokens)::bigint AS input_tokens,
       sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(output_tokens)::bigint AS output_tokens,
       sum(reasoning_tokens)::bigint AS reasoning_tokens,
       sum(cost) AS cost,
       count(*) AS attempts,
       count(*) FILTER (WHERE input_tokens IS NULL AND output_tokens IS NULL AND cost IS NULL) AS unknown_attempts,
       count(*) FILTER (WHERE cost IS NULL) AS unpriced_attempts,
       array_agg(dagster_run_id ORDER BY recorded_at, id) AS dagster_run_ids,
       min(recorded_at) AS first_recorded_at,
       max(recorded_at) AS recorded_at
  FROM run_usage
 WHERE correlation_key = ANY(%(keys)s)
 GROUP BY correlation_key
"""


def run_usage(store: PlatformStore, correlation_key: str) -> dict[str, Any] | None:
    """The recorded usage of one run, its attempts summed (`RUN_ATTEMPTS_SQL`); None when nothing is recorded."""
    return usage_for_runs(store, [correlation_key]).get(correlation_key)


def spend_by(store: PlatformStore, start: datetime, end: datetime, repository: str | None = None) -> list[SpendRow]:
    """Spend per repository, agent and model in [start, end), largest first."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT repository, agent, coalesce(model, '(unknown)') AS model, currency, count(*) AS runs,"
            " count(*) FILTER (WHERE input_tokens IS NULL AND output_tokens IS NULL AND cost IS NULL) AS unknown_runs,"
            " count(*) FILTER (WHERE cost IS NULL) AS unpriced_runs,"
            " coalesce(sum(input_tokens), 0) AS input_tokens,"
            " coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens,"
            " coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(cost), 0) AS cost"
            " FROM run_usage WHERE recorded_at >= %s AND recorded_at < %s"
            " AND (%s::text IS NULL OR repository = %s)"
            " GROUP BY repository, agent, coalesce(model, '(unknown)'), currency"
            " ORDER BY sum(cost) DESC NULLS LAST, repository, agent, 3",
            (start, end, repository and repository.lower(), repository and repository.lower()),
        ).fetchall()
    return [
        SpendRow(
            r["repository"],
            r["agent"],
            r["model"],
            int(r["runs"]),
            int(r["unknown_runs"]),
            int(r["input_tokens"]),
            int(r["cached_input_tokens"]),
            int(r["output_tokens"]),
            Decimal(r["cost"]),
            r["currency"],
            int(r["unpriced_runs"]),
        )
        for r in rows
    ]


def monthly_spend(store: PlatformStore, now: datetime, repositories: Sequence[str]) -> dict[str, Amount]:
    """Each repository's spend this month (UTC) up to `now`: the monthly budget check's figure. One index range
    per repository, so 100,000 runs of history cost what this month's rows cost."""
    start = month_start(now)
    out: dict[str, Amount] = {}
    with store.connect() as conn:
        for repo in repositories:
            row = conn.execute(
                "SELECT count(*) AS runs, coalesce(sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)), 0)"
                " AS tokens, coalesce(sum(cost), 0) AS cost,"
                " count(*) FILTER (WHERE input_tokens IS NULL AND output_tokens IS NULL AND cost IS NULL) AS unknown,"
                " count(*) FILTER (WHERE cost IS NULL) AS unpriced"
                " FROM run_usage WHERE repository = %s AND recorded_at >= %s AND recorded_at <= %s",
                (repo.lower(), start, now),
            ).fetchone()
            assert row is not None
            out[repo.lower()] = Amount(
                int(row["tokens"]), Decimal(row["cost"]), int(row["runs"]), int(row["unknown"]), int(row["unpriced"])
            )
    return out


def daily_cost(store: PlatformStore, start: datetime, end: datetime) -> dict[str, Decimal]:
    """Cost per UTC day (ISO date) in [start, end): the spend plot's series."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, coalesce(sum(cost), 0) AS cost"
            " FROM run_usage WHERE recorded_at >= %s AND recorded_at < %s GROUP BY 1 ORDER BY 1",
            (start, end),
        ).fetchall()
    return {r["day"]: Decimal(r["cost"]) for r in rows}


# -- runs the budgets refused ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetHold:
    correlation_key: str
    repository: str
    issue_number: int | None
    pr_number: int | None
    agent: str
    actor: str
    decision: Mapping[str, Any]
    held_at: datetime


def _hold(row: Mapping[str, Any]) -> BudgetHold:
    return BudgetHold(
        row["correlation_key"],
        row["repository"],
        row["issue_number"],
        row["pr_number"],
        row["agent"],
        row["actor"],
        row["decision"],
        row["held_at"],
    )


def hold_run(store: PlatformStore, hold: BudgetHold) -> bool:
    """Keep a refused run until the budget allows it or an approver overrides; False when it is already held."""
    from psycopg.types.json import Jsonb

    with store.connect() as conn:
        row = conn.execute(
            "INSERT INTO budget_holds (correlation_key, repository, issue_number, pr_number, agent, actor, decision,"
            " held_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (correlation_key) DO NOTHING RETURNING 1",
            (
                hold.correlation_key,
                hold.repository.lower(),
                hold.issue_number,
                hold.pr_number,
                hold.agent,
                hold.actor,
                Jsonb(dict(hold.decision)),
                hold.held_at,
            ),
        ).fetchone()
        return row is not None


def open_holds(
    store: PlatformStore, repository: str | None = None, issue_number: int | None = None
) -> list[BudgetHold]:
    """Held runs, oldest first (optionally of one repository or issue)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT * FROM budget_holds WHERE released_at IS NULL AND (%s::text IS NULL OR repository = %s)"
            " AND (%s::int IS NULL OR issue_number = %s) ORDER BY held_at, correlation_key",
            (repository and repository.lower(), repository and repository.lower(), issue_number, issue_number),
        ).fetchall()
    return [_hold(r) for r in rows]


# How far back a released hold whose run was never recorded (the database failed in between) is still started: the
# next ticks, not a release of long ago that a later change of mind may have made moot.
RESCUE_WINDOW = timedelta(hours=1)


# Holds released since a moment whose run was never recorded (since, how ×2, correlation key ×2, repository ×2, issue
# ×2): read by the budgets' release in every intake tick and for each decided item's holds. Indexed on released_at
# (0021): the table's only other index of it is the partial one of open holds (released_at IS NULL), so every read
# went through every hold ever held.
RELEASED_NOT_STARTED_SQL = (
    "SELECT * FROM budget_holds h WHERE released_at >= %s AND (%s::text IS NULL OR released_how = %s)"
    " AND (%s::text IS NULL OR correlation_key = %s) AND (%s::text IS NULL OR repository = %s)"
    " AND (%s::int IS NULL OR issue_number = %s)"
    " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.correlation_key = h.correlation_key)"
    " ORDER BY released_at, correlation_key"
)


def released_not_started(
    store: PlatformStore,
    since: datetime,
    how: str | None = None,
    correlation_key: str | None = None,
    repository: str | None = None,
    issue_number: int | None = None,
) -> list[BudgetHold]:
    """Holds released since `since` (by `how`, one key's, or one repository's or issue's, as `open_holds` filters)
    whose run was never recorded: the database failed between the release and the run's record (they are two
    transactions), so the run is still to be requested."""
    repo = repository and repository.lower()
    with store.connect() as conn:
        rows = conn.execute(
            RELEASED_NOT_STARTED_SQL,
            (since, how, how, correlation_key, correlation_key, repo, repo, issue_number, issue_number),
        ).fetchall()
    return [_hold(r) for r in rows]


def release_hold(
    store: PlatformStore,
    budgets: Budgets,
    hold: BudgetHold,
    how: str,
    by: str,
    now: datetime | None = None,
) -> list[Breach] | None:
    """Start a held run: `budget` when the budgets now have room (its reservation is made in the same
    transaction), `override` whatever they say (the reservation is recorded all the same, so later launches see
    it). The breaches when the budget still has no room; None when someone else released it first."""
    now = now or datetime.now(UTC)
    with store.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUDGET_LOCK,))
        still = conn.execute(
            "SELECT 1 FROM budget_holds WHERE correlation_key = %s AND released_at IS NULL FOR UPDATE",
            (hold.correlation_key,),
        ).fetchone()
        if still is None:
            return None
        if how == "budget":
            breaches = launch_breaches(budgets, _spent(conn, hold.repository, hold.issue_number, hold.agent, now))
            if breaches:
                return breaches
        reservation = budgets.reservation()
        conn.execute(
            "INSERT INTO budget_reservations (correlation_key, repository, issue_number, agent, tokens, cost,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (correlation_key) DO NOTHING",
            (
                hold.correlation_key,
                hold.repository,
                hold.issue_number,
                hold.agent,
                reservation.tokens,
                reservation.cost,
                now,
            ),
        )
        conn.execute(
            "UPDATE budget_holds SET released_at = %s, released_how = %s, released_by = %s WHERE correlation_key = %s",
            (now, how, by, hold.correlation_key),
        )
        return []


def usage_for_runs(store: PlatformStore, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The recorded usage of each of these runs, their attempts summed (`RUN_ATTEMPTS_SQL`; absent: not recorded yet,
    or the run is still going)."""
    if not keys:
        return {}
    with store.connect() as conn:
        rows = conn.execute(RUN_ATTEMPTS_SQL, {"keys": list(keys)}).fetchall()
    return {r["correlation_key"]: r for r in rows}
