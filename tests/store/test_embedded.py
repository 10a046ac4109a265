"""The embedded PostgreSQL of the local environment: pgvector with HNSW, a clean stop, a stale server stopped, a
SIGTERM to its owner stops it too."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from codexk8s_pipelines.store import EmbeddedPostgres, sigterm_as_interrupt
from codexk8s_pipelines.store.embedded import SETTINGS_FILE, server_settings


def test_pgvector_hnsw_index_answers_nearest_neighbour_queries(
    pg_server: EmbeddedPostgres, migrator_database_url: str
) -> None:
    with psycopg.connect(migrator_database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert version is not None and tuple(int(x) for x in version[0].split(".")[:2]) >= (0, 8)
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        conn.execute(
            "INSERT INTO items SELECT i, ARRAY[cos(i), sin(i), i / 500.0]::vector FROM generate_series(1, 500) i"
        )
        conn.execute("CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops)")
        conn.execute("SET enable_seqscan = off")
        target = "[0.5403, 0.8415, 0.002]"  # the vector of id 1
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT id FROM items ORDER BY embedding <=> %s::vector LIMIT 3", (target,)
            ).fetchall()
        )
        assert "items_hnsw" in plan
        nearest = conn.execute("SELECT id FROM items ORDER BY embedding <=> %s::vector LIMIT 1", (target,)).fetchone()
        assert nearest == (1,)
        setting = conn.execute("SHOW maintenance_work_mem").fetchone()
        assert setting == ("512MB",)


def test_stop_leaves_no_server_behind(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "data")
    url = pg.start()
    pid = int((tmp_path / "data" / "postmaster.pid").read_text().splitlines()[0])
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pg.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not pg.is_running()
    # Started again on the same data directory, the data is still there.
    with EmbeddedPostgres(tmp_path / "data") as again:
        assert again.url is not None
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'postgres'").fetchone() == (1,)
    assert not again.is_running()


def test_server_of_a_killed_owner_is_detected_and_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # An owner that starts the server and dies without stopping it, as a killed `make run` would.
    script = textwrap.dedent(
        f"""
        import os
        from codexk8s_pipelines.store import EmbeddedPostgres, sigterm_as_interrupt
        EmbeddedPostgres({str(data)!r}).start()
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    old_pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    assert psutil.pid_exists(old_pid)

    pg = EmbeddedPostgres(data)
    assert pg.stale_server_pid() == old_pid
    try:
        pg.start()
        new_pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        assert new_pid != old_pid
        deadline = time.monotonic() + 10
        while psutil.pid_exists(old_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not psutil.pid_exists(old_pid)
        assert pg.stale_server_pid() is None  # owned by this live process now
    finally:
        pg.stop()
    assert not pg.is_running()


def test_a_live_owners_server_is_adopted_not_stopped(pg_server: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(pg_server.data_dir)
    other.start()
    other.stop()  # not the owner: must leave the session's server running
    assert pg_server.is_running()
    assert pg_server.url is not None
    with psycopg.connect(pg_server.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_shared_buffers_follow_the_machines_memory() -> None:
    gib = 1 << 30
    assert server_settings(24 * gib) == {"shared_buffers": "1024MB"}  # capped: a 100,000-chunk index's hot pages
    assert server_settings(2 * gib) == {"shared_buffers": "512MB"}  # a quarter of memory
    assert server_settings(gib // 4) == {"shared_buffers": "128MB"}  # never below PostgreSQL's own default


def _shared_buffers(url: str) -> tuple[int, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT setting::bigint * 8192, sourcefile FROM pg_settings WHERE name = 'shared_buffers'"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def test_the_embedded_server_runs_with_the_platform_settings_and_an_operators_override_wins(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedPostgres(data) as pg:
        assert pg.url is not None
        size, source = _shared_buffers(pg.url)
        expected = server_settings(psutil.virtual_memory().total)["shared_buffers"]
        assert size == int(expected.removesuffix("MB")) << 20  # not PostgreSQL's 128 MB default
        assert source == str(data / SETTINGS_FILE)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_buffers = '200MB'")
    with EmbeddedPostgres(data) as again:  # a restart writes the settings again; ALTER SYSTEM still wins
        assert again.url is not None
        assert _shared_buffers(again.url) == (200 << 20, str(data / "postgresql.auto.conf"))
    includes = [line for line in (data / "postgresql.conf").read_text().splitlines() if SETTINGS_FILE in line]
    assert includes == [f"include_if_exists = '{SETTINGS_FILE}'"]


def _owner_killed_by_sigterm(data: Path, *, interrupt: bool, signals: int = 1) -> tuple[int, int]:
    """A bench-like owner: starts the server in `data` (inside `sigterm_as_interrupt()` when `interrupt`), says so,
    and works until SIGTERM. `signals` 2 sends a second one as the first unwinds into the server's stop, as
    `timeout` can (it signals the process, then its group). (exit code, the server's pid)."""
    body = (
        "with EmbeddedPostgres(data):\n    try:\n        print('ready', flush=True)\n        time.sleep(120)\n"
        "    finally:\n        print('unwinding', flush=True)\n"
    )
    if interrupt:
        body = "with sigterm_as_interrupt():\n" + textwrap.indent(body, "    ")
    script = (
        "import time\nfrom codexk8s_pipelines.store import EmbeddedPostgres, sigterm_as_interrupt\n"
        f"data = {str(data)!r}\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script + body], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", proc.stderr
        server = int((data / "postmaster.pid").read_text().splitlines()[0])
        proc.send_signal(signal.SIGTERM)
        if signals > 1 and proc.stdout.readline().strip() == b"unwinding":
            proc.send_signal(signal.SIGTERM)  # while the server is being stopped
        return proc.wait(timeout=60), server
    finally:
        if proc.poll() is None:
            proc.kill()


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_sigterm_to_the_owner_stops_its_server_inside_sigterm_as_interrupt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, server = _owner_killed_by_sigterm(data, interrupt=True, signals=2)
    assert code != 0  # interrupted, not finished
    assert _gone(server), "the owner unwound but its server still runs"
    assert not EmbeddedPostgres(data).is_running()
    assert not list(tmp_path.glob(".data.*pid"))  # the owner file went with the server


def test_without_it_a_sigterm_leaves_the_server_running_until_a_later_start(tmp_path: Path) -> None:
    """What `sigterm_as_interrupt` is for: Python's default SIGTERM skips every `with` block."""
    data = tmp_path / "data"
    code, server = _owner_killed_by_sigterm(data, interrupt=False)
    assert code == -signal.SIGTERM
    assert psutil.pid_exists(server)
    pg = EmbeddedPostgres(data)
    assert pg.stale_server_pid() == server
    with pg:  # a later start in the same directory finds it and stops it
        assert _gone(server)
    assert not pg.is_running()


def test_a_sigterm_well_after_the_first_ends_an_unwinding_that_hangs() -> None:
    script = textwrap.dedent(
        """
        import time
        from codexk8s_pipelines.store import embedded
        embedded.REPEATED_SIGTERM_GRACE = 0.5
        with embedded.sigterm_as_interrupt():
            try:
                print("ready", flush=True)
                time.sleep(60)
            finally:
                print("unwinding", flush=True)
                time.sleep(60)  # a teardown that never ends
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == b"unwinding"
        proc.send_signal(signal.SIGTERM)  # as `timeout` repeats it to the group: ignored
        time.sleep(0.3)
        assert proc.poll() is None
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # asked again later: it ends
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_as_interrupt_interrupts_once_restores_the_handler_and_keeps_anyone_elses() -> None:
    before = signal.getsignal(signal.SIGTERM)  # the session's own while pg_server runs
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with sigterm_as_interrupt():
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            with pytest.raises(KeyboardInterrupt):
                handler(signal.SIGTERM, None)
            assert handler(signal.SIGTERM, None) is None  # the next one, right after, must not break the unwinding
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        def own(signum: int, frame: object) -> None:
            pass

        signal.signal(signal.SIGTERM, own)
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is own  # a process that decided for itself keeps its handler
        assert signal.getsignal(signal.SIGTERM) is own
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        seen: list[object] = []

        def elsewhere() -> None:  # only the main thread may set a handler: elsewhere it changes nothing
            with sigterm_as_interrupt():
                seen.append(signal.getsignal(signal.SIGTERM))

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert seen == [signal.SIG_DFL]
    finally:
        signal.signal(signal.SIGTERM, before)
