"""Small helpers several test packages (and bench/) share."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_http_server() -> Iterator[str]:
    """An http:// address on 127.0.0.1 that accepts connections and never answers: a hanging remote (a Git host
    behind a firewall that drops packets), for timeouts that must hold."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git, fail loudly, return its stripped output."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def kmock_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig pointing the real kubernetes client at a kmock emulator (a placeholder bearer token)."""
    import yaml

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_VAR = "CODEXK8S_SHARED_DATA"


def shared_data_dir() -> Path:
    """The offline reference data (OSV advisories, version vectors): `$CODEXK8S_SHARED_DATA`, else `shared/data`
    beside this checkout, else beside the repository this checkout was cloned from (a CI clone in a temporary
    directory). The path of the first candidate is returned when none exists, for the skip message to name."""
    candidates = []
    if os.environ.get(SHARED_DATA_VAR):
        candidates.append(Path(os.environ[SHARED_DATA_VAR]))
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    try:
        origin = subprocess.run(
            ["git", "config", "--get", "remote.origin.url"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and ":" not in origin.split("/", 1)[0] and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), candidates[0])


def folder_chain(top: Path, levels: int, *, bottom: str | None = None, at: dict[int, str] | None = None) -> None:
    """`levels` folders named `d`, one inside the other, under the folder `top`: what an agent or a repository makes
    to exhaust a walk that recurses per level. Each is made from the one above it (openat), so the chain may pass
    PATH_MAX. `bottom`: an empty file made in the last; `at`: {level: name} of empty files made on the way."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(levels):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
            if at and level in at:
                os.close(os.open(at[level], os.O_WRONLY | os.O_CREAT, dir_fd=fd))
        if bottom:
            os.close(os.open(bottom, os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)


def undo_migration_21(conn: Any) -> None:
    """The schema as migration 0020 left it (a psycopg connection of the schema's owner): 0021
    (store/migrations/0021_hot_reads_and_drained_bodies.sql) undone and the version forgotten, for an upgrade test
    that starts from an older release. `migrate` starts from the latest version applied: an older one undone alone
    is never applied again."""
    conn.execute(
        "DROP INDEX webhook_deliveries_received_idx, runs_lower_issue_idx, runs_lower_pr_idx, budget_holds_released_idx"
    )
    conn.execute("CREATE INDEX webhook_deliveries_repo_idx ON webhook_deliveries (repository, received_at)")
    conn.execute("ALTER TABLE webhook_deliveries ALTER COLUMN payload SET NOT NULL")
    conn.execute("DELETE FROM schema_migrations WHERE version = 21")
