"""End to end, as `make run` does it: `codexk8s dev` starts the embedded database and the real Dagster
webserver on 127.0.0.1; the code location is read over GraphQL; Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.helpers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CODEXK8S = Path(sys.executable).with_name("codexk8s")

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              name
              jobs { name description }
              sensors { name }
              schedules { name }
            }
          }
        }
      }
    }
  }
}
"""


def _query(port: int, query: str) -> dict:
    response = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.mark.timeout(240)
def test_make_run_serves_the_code_location_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CODEXK8S_"))}
    env.update({"CODEXK8S_HOME": str(tmp_path / "state"), "LC_ALL": "C.UTF-8", "DAGSTER_DISABLE_TELEMETRY": "1"})
    log = (tmp_path / "dev.log").open("wb")
    # Its own session, default signal dispositions: this test plays the terminal that sends Ctrl-C.
    proc = subprocess.Popen(
        [str(CODEXK8S), "dev", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        restore_signals=True,
    )
    started: list[psutil.Process] = []
    try:
        data = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()
            try:
                data = _query(port, WORKSPACE_QUERY)
                entry = data["workspaceOrError"]["locationEntries"][0]
                if entry["locationOrLoadError"] is not None:
                    break
            except (requests.RequestException, KeyError, IndexError):
                pass
            time.sleep(1)
        assert data is not None, (tmp_path / "dev.log").read_text()

        entries = data["workspaceOrError"]["locationEntries"]
        assert [e["name"] for e in entries] == ["codexk8s_pipelines"]
        location = entries[0]["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        (repository,) = location["repositories"]
        jobs = {j["name"]: j["description"] for j in repository["jobs"]}
        assert "platform_migrate" in jobs and "schema up to date" in jobs["platform_migrate"]
        # Every sensor and schedule the code defines is served, the periodic checks' among them.
        from codexk8s_pipelines.definitions import build_definitions

        defs = build_definitions()
        assert sorted(s["name"] for s in repository["sensors"]) == sorted(s.name for s in defs.sensors or [])
        assert sorted(s["name"] for s in repository["schedules"]) == sorted(s.name for s in defs.schedules or [])
        periodic = {"security_scan_job", "dependency_freshness_job", "ops_drift_job", "osv_refresh", "self_improve_job"}
        assert periodic <= set(jobs)
        assert {"security_scan_schedule", "dependency_freshness_schedule", "ops_drift_schedule",
                "self_improve_cadence", "osv_refresh_schedule", "docs_index_hourly"} <= {
            s["name"] for s in repository["schedules"]
        }  # fmt: skip

        # The platform database that `make run` started is up and migrated.
        pgdata = tmp_path / "state" / "pgdata"
        postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        assert psutil.pid_exists(postmaster)

        root = psutil.Process(proc.pid)
        started = [root, *root.children(recursive=True), psutil.Process(postmaster)]
        assert any("dagster" in " ".join(p.cmdline()) for p in started[1:-1])

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert proc.wait(timeout=90) == 0, (tmp_path / "dev.log").read_text()
        _, alive = psutil.wait_procs(started, timeout=30)
        assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
        assert not (pgdata / "postmaster.pid").exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in started:
            if p.is_running():
                p.kill()
        log.close()
