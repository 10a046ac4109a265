"""`make run`: the embedded platform database plus `dagster dev`, stopped together.

`dagster dev` runs in its own session so that this process decides how it stops: a Ctrl-C (or SIGTERM)
here is forwarded to its whole process group, then, once the UI, daemon and code servers are gone, the
database is stopped. Nothing is left running.

A `kill -9` of this process leaves no chance to stop anything, so each start records itself in
`<state dir>/dev.json` (this process, the Dagster process group, the UI's URL, the database URL). The next start
reads it: a Dagster group whose owner has died is stopped (as a stale database is), a live owner means the
platform already runs and a second one is refused. `codexk8s env` and the CLI commands that need the database
read the same record (platform_record.py, which imports no Dagster) to find the running platform of this checkout.

Two starts within a second both found no record (it is written once the database is up): each `codexk8s dev` holds
an exclusive lock on `<state dir>/dev.lock` for its whole life, and a second start is refused at once. The UI's port
is checked before anything starts (`dagster dev` whose webserver cannot bind keeps running headless, and the URL it
printed led to someone else's service), and a webserver that does not answer `/server_info` within
UI_START_SECONDS is a failed start: everything started is stopped.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
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
LOCK_FILE = "dev.lock"
# How long the Dagster webserver may take to answer /server_info: a first start on a busy laptop takes a minute, and
# Dagster itself gives its code server 180 s; `CODEXK8S_UI_START_SECONDS` sets another.
UI_START_SECONDS = 600.0
UI_START_VAR = "CODEXK8S_UI_START_SECONDS"


def lock_state_dir(home: Path) -> int | None:
    """An exclusive lock on `<home>/dev.lock`, held while the returned descriptor is open (the life of `codexk8s dev`;
    the kernel drops it when the process ends, even by kill -9). None: another process holds it. The descriptor is
    not inherited, so neither Dagster nor PostgreSQL keeps the lock after their `codexk8s dev` is gone."""
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def port_problem(host: str, port: int) -> str | None:
    """Why the webserver could not listen on `host:port` now (None: it can), tried as uvicorn binds: SO_REUSEADDR,
    so the closing connections of a stopped UI do not count, and a listening socket, on any address, does."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"host {host!r} does not resolve: {exc.strerror}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is in use"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _free_port_after(host: str, port: int) -> int:
    """The first port above `port` free on `host` (to suggest; nothing holds it), else port + 1."""
    return next((p for p in range(port + 1, min(port + 100, 65536)) if port_problem(host, p) is None), port + 1)


def ui_url_of(host: str, port: int) -> str:
    """The UI's address for a browser and for the probe: a wildcard host is asked on loopback, IPv6 in brackets."""
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


# Straight to the webserver: an `http_proxy` of the user's shell would send the probe to the proxy, and the UI on this
# machine would never answer it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ui_answers(ui_url: str, timeout: float = 2.0) -> bool:
    """The Dagster webserver answers at `ui_url`: /server_info names its version."""
    try:
        with _DIRECT.open(f"{ui_url}/server_info", timeout=timeout) as response:
            return "dagster_webserver_version" in json.loads(response.read(65536) or b"{}")
    except (OSError, ValueError):
        return False


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


def platform_env(base: Mapping[str, str], home: Path, database_url: str, ui_url: str) -> dict[str, str]:
    """The environment of `dagster dev` and of every process it starts (code server, runs, runners).

    The UI's address goes with it (`$CODEXK8S_DAGSTER_URL`, unless the operator set one: a UI behind a proxy),
    since the service comment's "Dagster run" links are made from it in the run processes: without it they pointed
    at port 3000 whatever port the UI listened on (`make run PORT=3001`: every link dead)."""
    env = _dagster_env(dict(base))
    env.update(
        {
            "DAGSTER_HOME": str(prepare_dagster_home(home)),
            settings.DATABASE_URL_VAR: database_url,
            settings.ENV_VAR: settings.Environment.LOCAL.value,
            # Every process of the platform (code server, runs, runners) keeps its state here, whatever its cwd.
            settings.HOME_VAR: str(home),
        }
    )
    if not env.get(settings.DAGSTER_URL_VAR, "").strip():
        env[settings.DAGSTER_URL_VAR] = ui_url
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


def _already_runs(home: Path) -> int:
    record = running_platform(home)  # None while the other one starts (its record comes once its database is up)
    which = f"pid {record.owner_pid}, UI {record.ui_url}" if record is not None else "starting"
    print(
        f"codexk8s dev: the platform of this checkout already runs ({which}); use it, or stop it with Ctrl-C in its "
        "terminal first",
        file=sys.stderr,
    )
    return 2


def _dagster_command(workspace: Path, host: str, port: int) -> list[str]:
    dagster = Path(sys.executable).with_name("dagster")
    return [str(dagster), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def run_local_stack(host: str, port: int, workspace: Path, *, ui_start_seconds: float | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="codexk8s: %(message)s")
    if not workspace.exists():
        print(f"codexk8s dev: {workspace} not found (run from the project directory)", file=sys.stderr)
        return 2
    home = settings.state_dir()
    home.mkdir(parents=True, exist_ok=True)
    lock = lock_state_dir(home)
    if lock is None:
        return _already_runs(home)
    try:
        return _run_locked(home, host, port, workspace, ui_start_seconds or _ui_start_seconds())
    finally:
        os.close(lock)


def _ui_start_seconds() -> float:
    raw = os.environ.get(UI_START_VAR, "")
    try:
        return float(raw) if raw.strip() and float(raw) > 0 else UI_START_SECONDS
    except ValueError:
        log.warning("%s=%r is not a number of seconds: using %g", UI_START_VAR, raw, UI_START_SECONDS)
        return UI_START_SECONDS


def _run_locked(home: Path, host: str, port: int, workspace: Path, ui_start_seconds: float) -> int:
    if not os.environ.get("XDG_RUNTIME_DIR"):  # else platformdirs warns at every start, here and in Dagster
        (home / "run").mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(home / "run")
    if running_platform(home) is not None:
        return _already_runs(home)
    stop_orphaned_dagster(home)  # it may hold the port
    taken = port_problem(host, port)
    if taken is not None:
        print(
            f"codexk8s dev: {taken} on {host}; run `make run PORT={_free_port_after(host, port)}` (or stop what "
            "listens there)",
            file=sys.stderr,
        )
        return 2
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
        ui_url = ui_url_of(host, port)
        env = platform_env(os.environ, home, url, ui_url)
        log.info("starting the Dagster UI on %s (the first start takes a minute)", ui_url)
        proc = subprocess.Popen(_dagster_command(workspace, host, port), env=env, start_new_session=True)
        write_record(
            home,
            RunningPlatform(os.getpid(), proc.pid, ui_url, url, env["DAGSTER_HOME"], str(home)),
        )
        deadline, answered, asked = time.monotonic() + ui_start_seconds, False, 0.0
        while not stop_requested and proc.poll() is None:
            if not answered and time.monotonic() - asked >= 1.0:
                asked = time.monotonic()
                answered = ui_answers(ui_url)
                if answered:
                    log.info("the UI: %s", ui_url)
                    log.info('from another terminal, to use this platform: eval "$(.venv/bin/codexk8s env)"')
                elif asked > deadline:
                    log.error(
                        "the Dagster UI did not answer at %s within %g s (its webserver did not start; see its "
                        f"lines above; {UI_START_VAR} gives a slow machine longer): stopping",
                        ui_url,
                        ui_start_seconds,
                    )
                    return 1
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
