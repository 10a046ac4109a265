"""Reads of the audit trail for delivery insight: a day's runs, approvals and merges, and one issue's story.

Every daily read starts from the day's rows through `flow_events_type_idx (event_type, created_at)` and widens
only to the keys (or issues) those rows name, through `flow_events_key_idx` and `flow_events_key_prefix_idx`: the
cost follows the day's rows, not the table's (see bench/insight.py). The metrics themselves are computed in
`domain/delivery_metrics.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, LiteralString, cast

from ..domain.correlation import correlation_key
from ..domain.delivery_metrics import (
    FINISH_EVENTS,
    HAND_EDITED_EVENT,
    MERGED_EVENT,
    AuditEvent,
    RunInfo,
)
from .database import PlatformStore
from .usage import RUN_ATTEMPTS_SQL

_COLUMNS = "e.id, e.correlation_key, e.event_type, e.actor_type, e.actor_id, e.payload, e.created_at"
APPROVAL_DAY_EVENTS = ("approval.approved", "approval.expired")
# An agent's MCP tool calls: most of an issue's rows, and no metric, trace step or History line is made of them
# (only `codexk8s trace --verbose` shows them).
MCP_PREFIX = "mcp."
# Every statement below walks from a few keys (or issue prefixes) into flow_events through an index, one lookup
# each. `OFFSET 0` keeps each lookup a separate subquery: flattened into a join, the planner may prefer one walk
# over the whole table in id order (measured: 4 s instead of 20 ms at 1,000,000 rows).
_DAY_KEYS_SQL = (
    "SELECT DISTINCT correlation_key FROM flow_events"
    " WHERE event_type = ANY(%s) AND created_at >= %s AND created_at < %s"
)
# One repository's keys: the range of keys starting with `<repo>#` (`repository_prefix`, `upper_bound`).
_IN_KEY_RANGE_SQL = " AND correlation_key ~>=~ %s AND correlation_key ~<~ %s"
_KEYS_EVENTS_SQL = (
    " JOIN LATERAL (SELECT * FROM flow_events f WHERE f.correlation_key = day.correlation_key"
    " AND f.event_type NOT LIKE 'mcp.%%' OFFSET 0) e ON TRUE"
)


def _events_of(keys_sql: LiteralString) -> LiteralString:
    """Every event of the keys `keys_sql` selects but an agent's MCP calls (`MCP_PREFIX`)."""
    return f"SELECT {_COLUMNS} FROM ({keys_sql}) day{_KEYS_EVENTS_SQL}"


DAY_KEYS_EVENTS_SQL = _events_of(_DAY_KEYS_SQL)
ISSUES_EVENTS_SQL = (
    f"SELECT {_COLUMNS} FROM unnest(%s::text[], %s::text[]) AS p(low, high)"
    " JOIN LATERAL (SELECT * FROM flow_events f"
    "   WHERE f.correlation_key ~>=~ p.low AND f.correlation_key ~<~ p.high"
    "   AND (%s::text IS NULL OR f.event_type NOT LIKE %s) OFFSET 0) e ON TRUE"
)


def _event(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=int(row["id"]),
        correlation_key=str(row["correlation_key"]),
        event_type=str(row["event_type"]),
        actor_type=str(row["actor_type"]),
        actor_id=str(row["actor_id"]),
        payload=row["payload"] or {},
        at=row["created_at"],
    )


def issue_prefix(repository: str, number: int) -> str:
    """Every correlation key of an issue (or PR) starts with this."""
    return f"{repository_prefix(repository)}{int(number)}:"


def repository_prefix(repository: str) -> str:
    """Every correlation key of a repository starts with this."""
    return f"{repository.strip().lower()}#"


def upper_bound(prefix: str) -> str:
    """The smallest string above every string starting with `prefix` (its last character is ':' or '#')."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _key_range(repository: str) -> tuple[str, str]:
    prefix = repository_prefix(repository)
    return prefix, upper_bound(prefix)


def _day_keys(
    event_types: Iterable[str], start: datetime, end: datetime, repository: str | None
) -> tuple[LiteralString, tuple[Any, ...]]:
    """SQL selecting the keys with an event of `event_types` in [start, end), of one repository's keys when given,
    and its parameters."""
    day = (list(event_types), start, end)
    if repository is None:
        return _DAY_KEYS_SQL, day
    return f"{_DAY_KEYS_SQL}{_IN_KEY_RANGE_SQL}", (*day, *_key_range(repository))


def events_of_keys_on_day(
    store: PlatformStore, event_types: Sequence[str], start: datetime, end: datetime, repository: str | None = None
) -> list[AuditEvent]:
    """Every event (but MCP calls) of the keys that have an event of `event_types` in [start, end) (of one
    repository's keys, when given)."""
    keys, params = _day_keys(event_types, start, end, repository)
    with store.connect() as conn:
        rows = conn.execute(f"{_events_of(keys)} ORDER BY e.id", params).fetchall()
    return [_event(r) for r in rows]


def finished_run_events(
    store: PlatformStore, start: datetime, end: datetime, repository: str | None = None
) -> list[AuditEvent]:
    """The events of every run with a finish event in [start, end) (of one repository, when given)."""
    return events_of_keys_on_day(store, tuple(FINISH_EVENTS), start, end, repository)


def approval_events(
    store: PlatformStore, start: datetime, end: datetime, repository: str | None = None
) -> list[AuditEvent]:
    """The events of every approval granted or expired in [start, end) (of one repository, when given)."""
    return events_of_keys_on_day(store, APPROVAL_DAY_EVENTS, start, end, repository)


def run_infos(store: PlatformStore, keys: Iterable[str]) -> dict[str, RunInfo]:
    """The run table's stage and numbers of these keys (authoritative for runs launched by hand), and their usage
    where it was recorded (`run_usage`: tokens as the agent reported them, the cost as priced), the attempts of a
    run re-executed from the Dagster UI summed (a figure no attempt reported stays unknown; the cost is that of
    the attempts with a price, as the spend report's)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    with store.connect() as conn:
        usage = conn.execute("SELECT to_regclass('run_usage') IS NOT NULL AS ok").fetchone()
        joined = (
            f" LEFT JOIN ({RUN_ATTEMPTS_SQL}) u ON u.correlation_key = k.key"
            if usage and usage["ok"]
            else " LEFT JOIN (SELECT NULL::text AS correlation_key, NULL::bigint AS input_tokens,"
            " NULL::bigint AS output_tokens, NULL::numeric AS cost, NULL::text AS currency) u ON FALSE"
        )
        rows = conn.execute(
            "SELECT k.key, r.stage, r.revise, r.issue_number, r.pr_number, u.input_tokens, u.output_tokens, u.cost,"
            " u.currency FROM unnest(%(keys)s::text[]) AS k(key) LEFT JOIN runs r ON r.correlation_key = k.key"
            f"{joined} WHERE r.correlation_key IS NOT NULL OR u.correlation_key IS NOT NULL",
            {"keys": wanted},
        ).fetchall()
    infos = {}
    for r in rows:
        counts = [r["input_tokens"], r["output_tokens"]]
        tokens = sum(int(x or 0) for x in counts) if any(x is not None for x in counts) else None
        cost = float(r["cost"]) if r["cost"] is not None else None
        infos[r["key"]] = RunInfo(
            r["stage"], r["revise"], r["issue_number"], r["pr_number"], tokens, cost, r["currency"]
        )
    return infos


def issues_events(
    store: PlatformStore, issues: Iterable[tuple[str, int]], without_prefix: str | None = None
) -> list[AuditEvent]:
    """Every event of these issues (keys `<repo>#<n>:…`) in one statement, one index range per issue;
    `without_prefix` leaves out event types starting with it (`mcp.`: an agent's tool calls)."""
    prefixes = sorted({issue_prefix(repo, n) for repo, n in issues})
    if not prefixes:
        return []
    with store.connect() as conn:
        rows = conn.execute(
            f"{ISSUES_EVENTS_SQL} ORDER BY e.id",
            (prefixes, [upper_bound(p) for p in prefixes], without_prefix, f"{without_prefix}%"),
        ).fetchall()
    return [_event(r) for r in rows]


def issues_finished_on_day(
    store: PlatformStore, start: datetime, end: datetime, repository: str | None = None
) -> list[tuple[str, int]]:
    """The issues (and PRs) with a run that finished in [start, end), from the keys of the day's finish rows (of
    one repository's keys, when given)."""
    keys, params = _day_keys(FINISH_EVENTS, start, end, repository)
    with store.connect() as conn:
        rows = conn.execute(keys, params).fetchall()
    return sorted({head for r in rows if (head := _key_head(str(r["correlation_key"]))) is not None})


PR_EVENTS = ("run.pr.created", "run.pr.updated", "pr.merged")


def _review_pull_requests(store: PlatformStore, issues: Sequence[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(repository, issue, PR) of the runs the run table links to these issues (review runs keyed by the PR)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT r.repository, r.issue_number, r.pr_number FROM runs r"
            " JOIN unnest(%s::text[], %s::int[]) AS w(repo, num) ON r.repository = w.repo AND r.issue_number = w.num"
            " WHERE r.pr_number IS NOT NULL",
            ([r for r, _ in issues], [n for _, n in issues]),
        ).fetchall()
    return [(r["repository"], int(r["issue_number"]), int(r["pr_number"])) for r in rows]


def _key_head(key: str) -> tuple[str, int] | None:
    repo, _, number = key.split(":", 1)[0].rpartition("#")
    return (repo, int(number)) if repo and number.isdigit() else None


def _head(event: AuditEvent) -> tuple[str, int] | None:
    return _key_head(event.correlation_key)


def issue_story_events(
    store: PlatformStore, repository: str, issue_number: int, verbose: bool = False
) -> list[AuditEvent]:
    """Everything the platform recorded about an issue and its PRs, in the order it was recorded; an agent's MCP
    calls only when `verbose` (an issue may hold 100,000 of them: read for nothing, they cost seconds)."""
    without = None if verbose else MCP_PREFIX
    return stories_events(store, [(repository, issue_number)], without)[(repository.strip().lower(), issue_number)]


def stories_events(
    store: PlatformStore, issues: Iterable[tuple[str, int]], without_prefix: str | None = MCP_PREFIX
) -> dict[tuple[str, int], list[AuditEvent]]:
    """`issue_story_events` of many issues at once: the issues' own rows, then the rows of the PRs those rows (and
    the run table) name; event types starting with `without_prefix` left out (the MCP calls, unless None). Each
    read is one index range per issue or PR (no scan by event type: at 1,000,000 rows one such scan per issue cost
    a second)."""
    wanted = sorted({(repo.strip().lower(), int(n)) for repo, n in issues})
    stories: dict[tuple[str, int], list[AuditEvent]] = {issue: [] for issue in wanted}
    if not wanted:
        return stories
    owner: dict[tuple[str, int], tuple[str, int]] = {}
    for event in issues_events(store, wanted, without_prefix):
        head = _head(event)
        if head in stories:
            stories[head].append(event)
            number: Any = event.payload.get("number")  # int() only after isdigit()
            if event.event_type in PR_EVENTS and str(number).isdigit() and int(number) != head[1]:
                owner.setdefault((head[0], int(number)), head)
    for repo, issue, pr in _review_pull_requests(store, wanted):
        if pr != issue:
            owner.setdefault((repo, pr), (repo, issue))
    for pr in wanted:
        owner.pop(pr, None)  # an issue number is never read twice
    for event in issues_events(store, owner, without_prefix):
        issue = owner.get(_head(event) or ("", -1))
        if issue is not None:
            stories[issue].append(event)
    for events in stories.values():
        events.sort(key=lambda e: e.id)
    return stories


def merged_issues(store: PlatformStore, start: datetime, end: datetime) -> list[tuple[str, int]]:
    """The issues whose PR merged in [start, end) (a `pr.merged` row is keyed by the issue it closes)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT correlation_key FROM flow_events WHERE event_type = %s AND created_at >= %s"
            " AND created_at < %s",
            (MERGED_EVENT, start, end),
        ).fetchall()
    return sorted({head for r in rows if (head := _key_head(str(r["correlation_key"]))) is not None})


def last_pushed_commit(store: PlatformStore, repository: str, numbers: Iterable[int]) -> str | None:
    """The last commit a run of the platform pushed for these issues/PRs (`run.agent.finished`), if any."""
    pushed = [
        e
        for e in issues_events(store, [(repository, n) for n in numbers], without_prefix=MCP_PREFIX)
        if e.event_type == "run.agent.finished" and e.payload.get("pushed") and e.payload.get("commit")
    ]
    return str(pushed[-1].payload["commit"]) if pushed else None


def record_merge(
    store: PlatformStore,
    repository: str,
    issue_number: int | None,
    pr_number: int,
    merged_by: str,
    at: datetime,
    head_sha: str | None = None,
) -> bool:
    """Audit a PR's merge once, keyed by the issue it works on (`<repo>#<issue>:pr:merged:<pr>`; the PR's own
    number when it names no issue): the end of the issue's lead time. When the merged head is not the last commit
    a run pushed, someone edited the PR by hand: `pr.hand_edited` first (a manual intervention of the policy
    bypass rate). False when the merge was already recorded."""
    number = issue_number if issue_number is not None else pr_number
    key = correlation_key(repository, number, "pr:merged", pr_number)
    if store.has_event(key, MERGED_EVENT):
        return False
    if head_sha:
        platform_commit = last_pushed_commit(store, repository, {number, pr_number})
        if platform_commit and platform_commit != head_sha:
            payload = {"number": pr_number, "head": head_sha, "platform_commit": platform_commit}
            hand_key = correlation_key(repository, number, "pr:hand_edited", pr_number)
            store.append_event(hand_key, HAND_EDITED_EVENT, "system", "github-sensor", payload, at=at)
    actor_type = "human" if merged_by and not merged_by.endswith("[bot]") else "system"
    payload = {"number": pr_number, "merged_by": merged_by}
    store.append_event(key, MERGED_EVENT, actor_type, merged_by or "github", payload, at=at)
    return True


def explain_plan(store: PlatformStore, sql: str, params: Sequence[Any]) -> str:
    """EXPLAIN ANALYZE of a statement: the bench shows which indexes the daily reads use, and how many rows."""
    with store.connect() as conn:
        # `sql` is one of this module's statements (the bench passes them), not input.
        rows = conn.execute(cast(LiteralString, "EXPLAIN (ANALYZE, BUFFERS) " + sql), params).fetchall()
    return "\n".join(str(next(iter(r.values()))) for r in rows)
