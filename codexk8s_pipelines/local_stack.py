"""`make run`: the embedded platform database plus `dagster dev`, stopped together.

`dagster dev` runs in its own session so that this process decides how it stops: a Ctrl-C (or SIGTERM)
here is forwarded to its whole process group, then, once the UI, daemon and code servers are gone, the
database is stopped. Nothing is left running.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import settings
from .config import load_config_from_environment
from .instance import local_instance_yaml
from .store import EmbeddedPostgres, PlatformStore
from .store.roles import APP_ROLE

log = logging.getLogger("codexk8s.dev")
# The platform's database on the embedded server (owned by the migrator role; `postgres` stays the admin's).
LOCAL_DATABASE = "codexk8s"


def prepare_dagster_home(home: Path) -> Path:
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(local_instance_yaml(load_config_from_environment()))
    return dagster_home


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGINT the group (dagster dev's own clean shutdown), then SIGTERM, then SIGKILL: by PID, not by hope."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_local_stack(host: str, port: int, workspace: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="codexk8s: %(message)s")
    if not workspace.exists():
        print(f"codexk8s dev: {workspace} not found (run from the project directory)", file=sys.stderr)
        return 2
    home = settings.state_dir()
    home.mkdir(parents=True, exist_ok=True)
    database = EmbeddedPostgres(home / "pgdata")
    stop_requested = False

    def _request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    proc: subprocess.Popen[bytes] | None = None
    try:
        database.start()
        # As in production: the migrator owns and migrates the schema, the platform runs as the application role.
        urls = database.prepare_database(LOCAL_DATABASE)
        applied = PlatformStore(urls.migrator).migrate(grant_to=APP_ROLE)
        url = urls.app
        log.info(
            "platform database %s ready in %s (migrations applied now: %s; the platform connects as %s)",
            LOCAL_DATABASE,
            database.data_dir,
            applied or "none",
            APP_ROLE,
        )
        env = dict(os.environ)
        env.update(
            {
                "DAGSTER_HOME": str(prepare_dagster_home(home)),
                settings.DATABASE_URL_VAR: url,
                settings.ENV_VAR: settings.Environment.LOCAL.value,
            }
        )
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]
        log.info("starting the Dagster UI on http://%s:%s", host, port)
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        while not stop_requested and proc.poll() is None:
            time.sleep(0.2)
        if proc.poll() is not None and not stop_requested:
            log.error("dagster dev exited with %s", proc.returncode)
        return 0 if stop_requested else (proc.returncode or 1)
    finally:
        if proc is not None:
            log.info("stopping the Dagster UI")
            _stop_group(proc)
        log.info("stopping the platform database")
        database.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
