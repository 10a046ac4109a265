"""The record a running `make run` (`codexk8s dev`) keeps of itself in `<state dir>/dev.json`.

Why its own module: the CLI commands that read the platform database (`docs search`, `db`, `doctor`, ...) read
this record to find the checkout's running platform when CODEXK8S_DATABASE_URL is unset. `local_stack`, which
writes it, imports the Dagster code location (instance settings, stage jobs, dagster, kubernetes: ~1.8 s);
reading the record needs only json and psutil, so `codexk8s docs search` without the environment set answers as
fast as with it (issue 19: under 2 s cold).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from . import settings

RECORD_FILE = "dev.json"


@dataclass(frozen=True)
class RunningPlatform:
    """What a running `codexk8s dev` recorded about itself."""

    owner_pid: int  # the `codexk8s dev` process
    dagster_pgid: int  # the process group of `dagster dev` (webserver, daemon, code servers)
    ui_url: str
    database_url: str
    dagster_home: str
    state_dir: str

    def env_lines(self) -> list[str]:
        """Shell lines that point another terminal at this platform (`eval "$(codexk8s env)"`)."""
        import shlex

        values = {
            settings.DATABASE_URL_VAR: self.database_url,
            settings.HOME_VAR: self.state_dir,
            "DAGSTER_HOME": self.dagster_home,
            settings.DAGSTER_URL_VAR: self.ui_url,
        }
        return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def record_path(home: Path) -> Path:
    return home / RECORD_FILE


def read_record(home: Path | None = None) -> RunningPlatform | None:
    try:
        data = json.loads(record_path(home or settings.state_dir()).read_text())
        return RunningPlatform(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_record(home: Path, record: RunningPlatform) -> None:
    temp = record_path(home).with_suffix(".part")
    temp.write_text(json.dumps(asdict(record), indent=2))
    os.replace(temp, record_path(home))


def is_dev_process(pid: int) -> bool:
    """A live `codexk8s dev` (not a recycled pid of something else)."""
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return " dev" in cmdline and "codexk8s" in cmdline


def running_platform(home: Path | None = None) -> RunningPlatform | None:
    """The platform this checkout's `make run` runs now, None when none does."""
    record = read_record(home)
    if record is None or not is_dev_process(record.owner_pid):
        return None
    return record
