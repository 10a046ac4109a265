"""`make run`: the embedded platform database plus `dagster dev`, stopped together.

`dagster dev` runs in its own session so that this process decides how it stops: a Ctrl-C (or SIGTERM)
here is forwarded to its whole process group, then, once the UI, daemon and code servers are gone, the
database is stopped. Nothing is left running.

A `kill -9` of this process leaves no chance to stop anything, so each start records itself in
`<state dir>/dev.json` (this process, the Dagster process group, the UI's URL, the database URL). The next start
reads it: a Dagster group whose owner has died is stopped (as a stale database is), a live owner means the
platform already runs and a second one is refused. `codexk8s env` and the CLI commands that need the database
read the same record (platform_record.py, which imports no Dagster) to find the running platform of this checkout.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from . import settings
from .config import load_config_from_environment
from .instance import local_instance_yaml
from .platform_record import RunningPlatform, is_dev_process, read_record, record_path, running_platform, write_record
from .store import EmbeddedPostgres, PlatformStore
from .store.rekey import rekey_summary
from .store.roles import APP_ROLE

log = logging.getLogger("codexk8s.dev")
# The platform's database on the embedded server (owned by the migrator role; `postgres` stays the admin's).
LOCAL_DATABASE = "codexk8s"


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def stop_orphaned_dagster(home: Path) -> int:
    """Stop the Dagster process group an earlier `codexk8s dev` of this state directory recorded and left behind
    (its owner killed with -9). Returns how many processes were stopped. Only a group that still holds a Dagster
    process is touched: a recycled group id of something else is left alone."""
    record = read_record(home)
    if record is None or is_dev_process(record.owner_pid):
        return 0
    members = _group_members(record.dagster_pgid)
    if not any("dagster" in " ".join(_cmdline(p)) for p in members):
        record_path(home).unlink(missing_ok=True)
        return 0
    log.warning(
        "stopping an orphaned Dagster (process group %s, %s processes) left by a killed codexk8s dev",
        record.dagster_pgid,
        len(members),
    )
    _signal_group(
        record.dagster_pgid,
        ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)),
        lambda wait: not psutil.wait_procs(members, timeout=wait)[1],
    )
    record_path(home).unlink(missing_ok=True)
    return len(members)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _dagster_env(env: dict[str, str]) -> dict[str, str]:
    """Quiet the start: Dagster's own notices about APIs this project chose on purpose (`dagster dev` rather than
    the `dg` CLI, beta parameters Dagster passes itself)."""
    # By message: PYTHONWARNINGS is read before site-packages can be imported, so Dagster's own warning classes
    # cannot be named here.
    quiet = [
        "ignore:Function `dev_command` is superseded",
        "ignore:Parameter `owners` of initializer",
    ]
    existing = env.get("PYTHONWARNINGS")
    env["PYTHONWARNINGS"] = ",".join([*([existing] if existing else []), *quiet])
    return env


def prepare_dagster_home(home: Path) -> Path:
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(local_instance_yaml(load_config_from_environment()))
    return dagster_home


def _signal_group(pgid: int, steps: Sequence[tuple[signal.Signals, float]], gone: Callable[[float], bool]) -> None:
    """Send the group each signal of `steps` in turn, until it is gone: `gone(wait)` waits up to `wait` seconds
    and says whether it ended. A group that no longer exists needs no further signal."""
    for sig, wait in steps:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if gone(wait):
            return


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGINT the group (dagster dev's own clean shutdown), then SIGTERM, then SIGKILL: by PID, not by hope."""

    def gone(wait: float) -> bool:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return True
            time.sleep(0.2)
        return False

    _signal_group(proc.pid, ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)), gone)


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
    if not os.environ.get("XDG_RUNTIME_DIR"):  # else platformdirs warns at every start, here and in Dagster
        (home / "run").mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(home / "run")
    already = running_platform(home)
    if already is not None:
        print(
            f"codexk8s dev: the platform of this checkout already runs (pid {already.owner_pid}, UI {already.ui_url});"
            " use it, or stop it with Ctrl-C in its terminal first",
            file=sys.stderr,
        )
        return 2
    stop_orphaned_dagster(home)
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
        # Stored rows of a local checkout follow its readable name (`local:.` → `main`) before Dagster starts.
        renamed = rekey_summary(PlatformStore(urls.migrator), load_config_from_environment().renamed_repositories())
        if renamed:
            log.info("%s", renamed)
        url = urls.app
        log.info(
            "platform database %s ready in %s (migrations applied now: %s; the platform connects as %s)",
            LOCAL_DATABASE,
            database.data_dir,
            applied or "none",
            APP_ROLE,
        )
        env = _dagster_env(dict(os.environ))
        env.update(
            {
                "DAGSTER_HOME": str(prepare_dagster_home(home)),
                settings.DATABASE_URL_VAR: url,
                settings.ENV_VAR: settings.Environment.LOCAL.value,
            }
        )
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]
        ui_url = f"http://{host}:{port}"
        log.info("starting the Dagster UI on %s (the first start takes a minute)", ui_url)
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        write_record(
            home,
            RunningPlatform(os.getpid(), proc.pid, ui_url, url, env["DAGSTER_HOME"], str(home)),
        )
        log.info("the UI: %s", ui_url)
        log.info('from another terminal, to use this platform: eval "$(.venv/bin/codexk8s env)"')
        while not stop_requested and proc.poll() is None:
            time.sleep(0.2)
        if proc.poll() is not None and not stop_requested:
            log.error("dagster dev exited with %s", proc.returncode)
        return 0 if stop_requested else (proc.returncode or 1)
    finally:
        if proc is not None:
            log.info("stopping the Dagster UI")
            _stop_group(proc)
            record_path(home).unlink(missing_ok=True)
        log.info("stopping the platform database")
        database.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
