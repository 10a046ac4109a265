"""Access to the platform database. One short connection per call: sensors and ops run in many processes."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..domain.redaction import redact
from .migrations import apply_migrations, current_version

RUN_STATUSES = ("requested", "queued", "running", "succeeded", "failed", "canceled")
FINISHED = ("succeeded", "failed", "canceled")
ACTOR_TYPES = ("human", "agent", "system")
# Which approval states may follow which: a decided approval is never reopened.
APPROVAL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "approved": ("requested",),
    "denied": ("requested",),
    "expired": ("requested",),
    "applied": ("approved",),
    "withdrawn": ("requested",),  # its trigger label was taken off before the approval came
}


log = logging.getLogger(__name__)
_Connection = TypeVar("_Connection")


class StoreError(RuntimeError):
    pass


# How long a connection the server turned away for want of a free slot is tried again (`connect_when_admitted`): the
# end of a run whose agent already worked, pushed and spent needs two or three short connections, and a server at
# max_connections frees slots within seconds as other short connections end. Waits double from the first to the
# longest, each shortened at random by up to half, so processes refused together do not come back together.
ADMISSION_SECONDS = 30.0
FIRST_WAIT_SECONDS = 0.25
LONGEST_WAIT_SECONDS = 4.0
# What the server says when it turns a connection away for now. libpq gives the client a refused connection's
# message but not its SQLSTATE (psycopg's `sqlstate` is None for it), so its English words tell; a server set to
# another `lc_messages` says them in its language, which is not recognised here: such a refusal fails at once, as
# any other failure to connect does.
REFUSED_FOR_NOW = (
    "sorry, too many clients already",  # 53300 too_many_connections: max_connections reached
    "remaining connection slots are reserved",  # 53300: only the superuser's reserved slots are left
    "too many connections for role",  # 53300: the role's CONNECTION LIMIT
    "too many connections for database",  # 53300: the database's CONNECTION LIMIT
    "the database system is starting up",  # 57P03 cannot_connect_now
    "the database system is not yet accepting connections",  # 57P03: recovery not consistent yet
    "the database system is in recovery mode",  # 57P03: restarting after a backend crashed
)
REFUSED_STATES = ("53300", "57P03")


def refused_for_now(exc: psycopg.OperationalError) -> str | None:
    """Why the server refused this connection for now (its words), or None for any other failure: a wrong password,
    an unknown role or database, a server that is not there."""
    if exc.sqlstate in REFUSED_STATES:  # should a psycopg some day report it for a connection
        return exc.sqlstate
    text = str(exc)
    return next((words for words in REFUSED_FOR_NOW if words in text), None)


def connect_when_admitted(
    open_connection: Callable[[], _Connection], seconds: float = ADMISSION_SECONDS
) -> _Connection:
    """`open_connection()`, tried again while the server turns it away for want of a free slot, or while it starts
    (`refused_for_now`), for up to `seconds`; each wait is logged. Every other failure is raised at once: a wrong
    password, an unknown role or database and a malformed URL do not mend by waiting.

    Why: every store call opens its own short connection. At max_connections one refusal failed the call, and the
    end of a stage run failed after its agent had pushed and spent: its usage was never recorded and the run's
    failure gave its budget hold back, so the money left the budgets. Only opening is tried again, never a
    statement: the caller runs its statements once it has the connection, so nothing is ever done twice."""
    deadline = time.monotonic() + seconds
    wait = FIRST_WAIT_SECONDS
    while True:
        try:
            return open_connection()
        except psycopg.OperationalError as exc:
            reason = refused_for_now(exc)
            left = deadline - time.monotonic()
            if reason is None or left <= 0:
                raise
            pause = min(random.uniform(wait / 2, wait), left)
            log.warning(
                "the platform database turned the connection away (%s): trying again in %.2f s (%.1f s left to try)",
                reason,
                pause,
                left,
            )
            time.sleep(pause)
            wait = min(wait * 2, LONGEST_WAIT_SECONDS)


@dataclass(frozen=True)
class RunRecord:
    correlation_key: str
    repository: str
    role: str
    stage: str | None = None
    revise: bool = False
    issue_number: int | None = None
    pr_number: int | None = None
    # `mode:discussion`: the run only comments, so it never counts as the stage's work having been done.
    discussion: bool = False


@dataclass(frozen=True)
class EventRecord:
    """One audit row to write in bulk (`PlatformStore.append_events`); `at` None means now."""

    correlation_key: str
    event_type: str
    actor_type: str
    actor_id: str
    payload: Mapping[str, Any] | None = None
    at: datetime | None = None


def _check_actor_type(actor_type: str) -> None:
    if actor_type not in ACTOR_TYPES:
        raise StoreError(f"unknown actor type {actor_type!r}; expected one of {', '.join(ACTOR_TYPES)}")


def _insert_event(conn: psycopg.Connection[dict[str, Any]], e: EventRecord, *, once: bool = False) -> int | None:
    """The one INSERT of an audit row, redacted (`append_event`, `request_run`); its id. `once`: only when the key
    has no event of its type yet (None when it had one)."""
    values = (e.correlation_key, e.actor_type, e.actor_id, e.event_type, Jsonb(redact(dict(e.payload or {}))), e.at)
    unless = " WHERE NOT EXISTS (SELECT 1 FROM flow_events WHERE correlation_key = %s AND event_type = %s)"
    row = conn.execute(
        "INSERT INTO flow_events (correlation_key, actor_type, actor_id, event_type, payload, created_at)"
        f" SELECT %s, %s, %s, %s, %s, coalesce(%s, clock_timestamp()){unless if once else ''} RETURNING id",
        (*values, e.correlation_key, e.event_type) if once else values,
    ).fetchone()
    return int(row["id"]) if row is not None else None


def _insert_run(conn: psycopg.Connection[dict[str, Any]], run: RunRecord) -> bool:
    """The one INSERT of a run (`register_run`, `request_run`); False when its correlation key is already known."""
    row = conn.execute(
        "INSERT INTO runs (correlation_key, repository, issue_number, pr_number, stage, revise, role, discussion)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (correlation_key) DO NOTHING RETURNING id",
        (
            run.correlation_key,
            run.repository,
            run.issue_number,
            run.pr_number,
            run.stage,
            run.revise,
            run.role,
            run.discussion,
        ),
    ).fetchone()
    return row is not None


# The runs of one issue or PR (repository, issue number, issue number, PR number, PR number, limit). The repository is
# compared lower-cased: a run launched by hand from the Dagster UI keeps the repository as its run config spelled it,
# the sensors' runs are lower-cased. Indexed on lower(repository) with the issue and with the PR number (0021): the
# (repository, …) indexes serve no lower(repository), and at 100,000 runs a read without one took 3 to 10 ms.
RUNS_OF_ITEM_SQL = (
    "SELECT * FROM runs WHERE lower(repository) = lower(%s)"
    " AND ((%s::int IS NOT NULL AND issue_number = %s) OR (%s::int IS NOT NULL AND pr_number = %s))"
    " ORDER BY created_at DESC, id DESC LIMIT %s"
)


class PlatformStore:
    def __init__(self, url: str) -> None:
        if not url:
            raise StoreError("no platform database URL (set CODEXK8S_DATABASE_URL)")
        # psycopg takes libpq URLs; SQLAlchemy-style driver suffixes are for dagster-postgres only.
        self.url = url.replace("postgresql+psycopg2://", "postgresql://").replace(
            "postgresql+psycopg://", "postgresql://"
        )

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection of dict rows in UTC, waited for while the server has no free slot (`connect_when_admitted`)."""
        # `psycopg.connect` is `Connection.connect` bound to the default row type (tuples): name the dict rows.
        with connect_when_admitted(
            lambda: psycopg.Connection[dict[str, Any]].connect(self.url, row_factory=dict_row, connect_timeout=10)
        ) as conn:
            # Every time read back is UTC, whatever zone the server took at initdb (the embedded one takes the
            # machine's). The server reports its zone when the connection opens, so a UTC server costs nothing; a
            # SET, not a startup option, which PgBouncer refuses (it keeps the TimeZone a client SETs). Autocommit
            # for that one statement: the caller's transaction starts after it, as without it.
            if conn.info.parameter_status("TimeZone") not in ("UTC", "Etc/UTC"):
                conn.autocommit = True
                conn.execute("SET TIME ZONE 'UTC'")
                conn.autocommit = False
            yield conn

    # -- schema ----------------------------------------------------------------------------------------------
    def migrate(self, grant_to: str | None = None) -> list[int]:
        """Apply missing migrations (the migrator's URL); `grant_to` re-grants the application role its rights.

        With the application role's URL this only checks that the schema is current (it may create nothing)."""
        with connect_when_admitted(lambda: psycopg.connect(self.url, connect_timeout=10)) as conn:
            return apply_migrations(conn, grant_to)

    def wait_until_reachable(self, seconds: float, interval: float = 2.0) -> bool:
        """True once a connection succeeds; False after `seconds` of refused ones (a database still starting, as on a
        first install where the migration Job may start before the database)."""
        deadline = time.monotonic() + max(seconds, 0)
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=max(1, min(10, int(seconds) or 1))):
                    return True
            except psycopg.OperationalError:
                if time.monotonic() + interval > deadline:
                    return False
                time.sleep(interval)

    def schema_version(self) -> int:
        with connect_when_admitted(lambda: psycopg.connect(self.url, connect_timeout=10)) as conn:
            return current_version(conn)

    # -- runs ------------------------------------------------------------------------------------------------
    def register_run(self, run: RunRecord) -> bool:
        """Record a requested run; False when the correlation key is already known (one event, one run)."""
        with self.connect() as conn:
            return _insert_run(conn, run)

    def request_run(self, run: RunRecord, audit: EventRecord) -> bool:
        """Record a requested run and its audit row (`run.requested`) in one transaction: both or neither, so a
        database that fails in between never leaves an audit that names a run the runs table does not have. The
        audit row is written only when the key has no event of its type yet (a tick redone writes it once); False
        when the run was already recorded."""
        _check_actor_type(audit.actor_type)
        with self.connect() as conn, conn.transaction():
            recorded = _insert_run(conn, run)
            _insert_event(conn, audit, once=True)
            return recorded

    def get_run(self, correlation_key: str) -> dict[str, Any] | None:
        with self.connect() as conn:
            return conn.execute("SELECT * FROM runs WHERE correlation_key = %s", (correlation_key,)).fetchone()

    def set_run_status(self, correlation_key: str, status: str, dagster_run_id: str | None = None) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}")
        with self.connect() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = %s, updated_at = now(),"
                " dagster_run_id = coalesce(%s, dagster_run_id),"
                " started_at = CASE WHEN %s = 'running' THEN coalesce(started_at, now()) ELSE started_at END,"
                " finished_at = CASE WHEN %s = ANY(%s) THEN now() ELSE finished_at END"
                " WHERE correlation_key = %s",
                (status, dagster_run_id, status, status, list(FINISHED), correlation_key),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no run with correlation key {correlation_key!r}")

    def has_stage_run(
        self,
        repository: str,
        issue_number: int,
        stage: str,
        statuses: tuple[str, ...] = (),
        *,
        writing_only: bool = False,
    ) -> bool:
        """Whether the issue had a run of `stage` (in one of `statuses`, when given; not a discussion, which writes
        nothing, when `writing_only`)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM runs WHERE repository = %s AND issue_number = %s AND stage = %s"
                " AND (cardinality(%s::text[]) = 0 OR status = ANY(%s)) AND NOT (%s AND discussion) LIMIT 1",
                (repository, issue_number, stage, list(statuses), list(statuses), writing_only),
            ).fetchone()
            return row is not None

    def recent_stages(
        self, repository: str, issue_number: int | None = None, pr_number: int | None = None, limit: int = 50
    ) -> list[str]:
        """Stages of the latest runs of an issue or PR, newest first: the run history of revise resolution."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT stage FROM runs WHERE repository = %s AND stage IS NOT NULL"
                " AND ((%s::int IS NOT NULL AND issue_number = %s) OR (%s::int IS NOT NULL AND pr_number = %s))"
                " ORDER BY created_at DESC, id DESC LIMIT %s",
                (repository, issue_number, issue_number, pr_number, pr_number, limit),
            ).fetchall()
            return [r["stage"] for r in rows]

    def runs_of_item(
        self, repository: str, issue_number: int | None, pr_number: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """The latest runs of an issue or PR, newest first, whatever the case of the repository's name in each row (the
        MCP tools' run history): `RUNS_OF_ITEM_SQL`."""
        with self.connect() as conn:
            return conn.execute(
                RUNS_OF_ITEM_SQL, (repository, issue_number, issue_number, pr_number, pr_number, limit)
            ).fetchall()

    # -- audit -----------------------------------------------------------------------------------------------
    def append_event(
        self,
        correlation_key: str,
        event_type: str,
        actor_type: str,
        actor_id: str,
        payload: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> int:
        """One audit row; `at` is when it happened when the caller knows better than the clock (an imported
        history, a GitHub event's own time), else the database's clock."""
        _check_actor_type(actor_type)
        with self.connect() as conn:
            written = _insert_event(conn, EventRecord(correlation_key, event_type, actor_type, actor_id, payload, at))
            assert written is not None
            return written

    def append_events(self, events: Iterable[EventRecord]) -> int:
        """Many audit rows in one COPY (an imported history, a bench): the same checks and redaction as
        `append_event`, in the order given; returns how many were written."""
        written = 0
        with (
            self.connect() as conn,
            conn.cursor() as cur,
            cur.copy(
                "COPY flow_events (correlation_key, actor_type, actor_id, event_type, payload, created_at) FROM STDIN"
            ) as copy,
        ):
            for e in events:
                if e.actor_type not in ACTOR_TYPES:
                    raise StoreError(
                        f"event {written} ({e.event_type} of {e.correlation_key}): unknown actor type"
                        f" {e.actor_type!r}; expected one of {', '.join(ACTOR_TYPES)}"
                    )
                at = e.at or datetime.now(UTC)
                payload = Jsonb(redact(dict(e.payload or {})))
                copy.write_row((e.correlation_key, e.actor_type, e.actor_id, e.event_type, payload, at))
                written += 1
        return written

    def has_event(self, correlation_key: str, event_type: str) -> bool:
        """Whether the key already has an event of this type: the ledger that makes side effects happen once."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM flow_events WHERE correlation_key = %s AND event_type = %s LIMIT 1",
                (correlation_key, event_type),
            ).fetchone()
            return row is not None

    def events(self, correlation_key: str) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                "SELECT * FROM flow_events WHERE correlation_key = %s ORDER BY id", (correlation_key,)
            ).fetchall()

    # -- approvals -------------------------------------------------------------------------------------------
    def request_approval(
        self,
        correlation_key: str,
        repository: str,
        issue_number: int | None,
        stage: str,
        revise: bool,
        trigger_label: str,
        requested_by: str,
        ttl: timedelta,
        now: datetime,
        *,
        pr_number: int | None = None,
    ) -> bool:
        """Record a run waiting for its approver; `pr_number`: the PR it was asked for on (a review's revise), whose
        `state:approved` approves it too and whose branch the approved run revises. False when already recorded."""
        with self.connect() as conn:
            row = conn.execute(
                "INSERT INTO approvals (correlation_key, repository, issue_number, pr_number, stage, revise,"
                " trigger_label, requested_by, requested_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (correlation_key) DO NOTHING RETURNING id",
                (
                    correlation_key, repository, issue_number, pr_number, stage, revise, trigger_label, requested_by,
                    now, now + ttl,
                ),
            ).fetchone()  # fmt: skip
            return row is not None

    def get_approval(self, correlation_key: str) -> dict[str, Any] | None:
        with self.connect() as conn:
            return conn.execute("SELECT * FROM approvals WHERE correlation_key = %s", (correlation_key,)).fetchone()

    def approval_for_issue(
        self, repository: str, issue_number: int, status: str | None = None
    ) -> dict[str, Any] | None:
        """The newest approval request in `status`, or whatever its state (a late `state:approved` looks at an expired
        one), of the issue or PR `issue_number`: asked for on it, or for it (a review's revise waits for approval
        both on its PR and on the PR's linked issue). GitHub numbers issues and PRs in one sequence, so a number
        names one item."""
        with self.connect() as conn:
            return conn.execute(
                "SELECT * FROM approvals WHERE repository = %s AND (issue_number = %s OR pr_number = %s)"
                " AND (%s::text IS NULL OR status = %s) ORDER BY requested_at DESC, id DESC LIMIT 1",
                (repository, issue_number, issue_number, status, status),
            ).fetchone()

    def open_approval_for_issue(self, repository: str, issue_number: int) -> dict[str, Any] | None:
        return self.approval_for_issue(repository, issue_number, "requested")

    def transition_approval(
        self, correlation_key: str, status: str, now: datetime, approver: str | None = None
    ) -> dict[str, Any]:
        """Move an approval forward; a transition from a state that does not allow it is an error."""
        allowed_from = APPROVAL_TRANSITIONS.get(status)
        if allowed_from is None:
            raise StoreError(f"approval cannot move to {status!r}; expected one of {', '.join(APPROVAL_TRANSITIONS)}")
        time_column = "applied_at" if status == "applied" else "decided_at"
        with self.connect() as conn:
            row = conn.execute(
                f"UPDATE approvals SET status = %s, {time_column} = %s, approver = coalesce(%s, approver)"
                " WHERE correlation_key = %s AND status = ANY(%s) RETURNING *",
                (status, now, approver, correlation_key, list(allowed_from)),
            ).fetchone()
            if row is None:
                current = conn.execute(
                    "SELECT status FROM approvals WHERE correlation_key = %s", (correlation_key,)
                ).fetchone()
                state = current["status"] if current else "missing"
                raise StoreError(f"approval {correlation_key!r} is {state}; it cannot become {status}")
            return row

    def expire_approvals(self, now: datetime) -> list[str]:
        """Mark requested approvals past their expiry as expired; return their correlation keys."""
        with self.connect() as conn:
            rows = conn.execute(
                "UPDATE approvals SET status = 'expired', decided_at = %s"
                " WHERE status = 'requested' AND expires_at < %s RETURNING correlation_key",
                (now, now),
            ).fetchall()
            return sorted(r["correlation_key"] for r in rows)
