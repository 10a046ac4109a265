"""End to end, as `make run` does it: `codexk8s dev` starts the embedded database and the real Dagster
webserver on 127.0.0.1; the code location, the GitHub sensors' skip reasons and the asset checks of a
materialization launched as the UI launches it are read over GraphQL; `codexk8s env` points another terminal at
it; after a `kill -9` of `codexk8s dev` the next start leaves exactly one Dagster; Ctrl-C stops everything."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.helpers import free_port, git, shared_data_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
CODEXK8S = Path(sys.executable).with_name("codexk8s")
LOCATION = {"repositoryLocationName": "codexk8s_pipelines", "repositoryName": "__repository__"}
GITHUB_SENSORS = ("github_issue_labels_sensor", "github_pull_requests_sensor")

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
              sensors { name description sensorState { ticks(limit: 1) { status skipReason } } }
              schedules { name }
            }
          }
        }
      }
    }
  }
}
"""

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }
"""

CHECKS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks { name executionForLatestMaterialization { status evaluation { severity description } } }
        }
      }
    }
  }
}
"""

ADD_PARTITION = """
mutation($key: String!) {
  addDynamicPartition(
    partitionsDefName: "repositories", partitionKey: $key,
    repositorySelector: {repositoryLocationName: "codexk8s_pipelines", repositoryName: "__repository__"}
  ) { __typename }
}
"""


def _query(port: int, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}}, timeout=20
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def _wait(what: str, probe: Callable[[], Any], timeout: float, log: Path, proc: subprocess.Popen) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            found = probe()
        except (requests.RequestException, KeyError, IndexError, TypeError):
            found = None
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")


def _repository(port: int) -> dict | None:
    entry = _query(port, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"][0]
    location = entry["locationOrLoadError"]
    return location["repositories"][0] if location and location["__typename"] == "RepositoryLocation" else None


def _start(env: dict, port: int, log: Path) -> subprocess.Popen:
    # Its own session, default signal dispositions: this test plays the terminal that sends Ctrl-C.
    return subprocess.Popen(
        [str(CODEXK8S), "dev", "--port", str(port)], cwd=REPO_ROOT, env=env,
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True, restore_signals=True,
    )  # fmt: skip


def _recorded_group(state: Path) -> int:
    """The Dagster process group `codexk8s dev` recorded at start."""
    return int(json.loads((state / "dev.json").read_text())["dagster_pgid"])


def _command_line(proc: psutil.Process) -> str:
    """A process's command line; "" for one that is gone or a zombie (an exited child not yet reaped)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _dagster_processes(root: psutil.Process) -> list[psutil.Process]:
    return [p for p in root.children(recursive=True) if "dagster" in _command_line(p)]


def _materialize(port: int, asset: str, partition: str | None, log: Path, proc: subprocess.Popen) -> dict:
    """Launch a run of `__ASSET_JOB` the way an asset page's Materialize button does; wait for it to finish."""
    tags = [{"key": "dagster/partition", "value": partition}] if partition else []
    params = {
        "selector": {**LOCATION, "jobName": "__ASSET_JOB", "assetSelection": [{"path": [asset]}]},
        "executionMetadata": {"tags": tags},
    }
    launched = _query(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished() -> dict | None:
        run = _query(port, RUN, {"id": run_id})["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    run = _wait(f"run {run_id} of {asset}", finished, 240, log, proc)
    assert run["status"] == "SUCCESS", log.read_text()[-4000:]
    return {t["key"]: t["value"] for t in run["tags"]}


@pytest.mark.timeout(900)
def test_make_run_serves_checks_and_sensor_status_survives_a_kill_9_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    pypi = shared_data_dir() / "osv" / "PyPI" / "vulns" / "llama-index"
    if not pypi.is_dir():
        pytest.skip(f"the shared OSV data is not at {pypi}")
    export = tmp_path / "osv-export" / "PyPI"
    export.mkdir(parents=True)
    shutil.copy(pypi / "PYSEC-2023-148.yaml", export)  # CRITICAL 9.8
    checkout = tmp_path / "shop"
    checkout.mkdir()
    (checkout / "requirements.txt").write_text("llama-index==0.7.0\n")
    git("init", "-q", "-b", "main", str(checkout))
    git("add", ".", cwd=checkout)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init", cwd=checkout)
    config = tmp_path / "codexk8s.yaml"
    config.write_text(
        f"repositories:\n  - path: {checkout}\nperiodic:\n"
        f"  security: {{osv_db: {tmp_path / 'osv'}, osv_source: {export.parent}, max_age_days: 100000}}\n"
    )
    port = free_port()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CODEXK8S_"))}
    env.update({"CODEXK8S_HOME": str(state), "CODEXK8S_CONFIG": str(config), "LC_ALL": "C.UTF-8",
                "DAGSTER_DISABLE_TELEMETRY": "1"})  # fmt: skip
    log = tmp_path / "dev.log"
    proc = _start(env, port, log)
    second: subprocess.Popen | None = None
    started: list[psutil.Process] = []
    dagster_groups: list[int] = []
    try:
        repository = _wait("the code location", lambda: _repository(port), 240, log, proc)
        dagster_groups.append(_recorded_group(state))
        jobs = {j["name"]: j["description"] for j in repository["jobs"]}
        assert "platform_migrate" in jobs and "schema up to date" in jobs["platform_migrate"]
        assert "Needs GitHub credentials" in jobs["stage_dev"]
        from codexk8s_pipelines.definitions import build_definitions

        defs = build_definitions()
        assert sorted(s["name"] for s in repository["sensors"]) == sorted(s.name for s in defs.sensors or [])
        assert sorted(s["name"] for s in repository["schedules"]) == sorted(s.name for s in defs.schedules or [])
        assert {"security_scan_job", "dependency_freshness_job", "ops_drift_job", "osv_refresh",
                "self_improve_job", "docs_index_job"} <= set(jobs)  # fmt: skip

        # The GitHub sensors say why they skip in their description (the overview shows it) and in their ticks.
        sensors = {s["name"]: s for s in repository["sensors"]}
        for name in GITHUB_SENSORS:
            assert (
                "SKIPPING EVERY TICK: no GitHub credentials: set CODEXK8S_GITHUB_TOKEN" in sensors[name]["description"]
            )

        def skip_reasons() -> dict | None:
            repo = _repository(port)
            ticks = {s["name"]: s["sensorState"]["ticks"] for s in repo["sensors"] if s["name"] in GITHUB_SENSORS}
            # A tick still in progress says nothing yet.
            finished = all(t and t[0]["status"] != "STARTED" for t in ticks.values())
            return ticks if finished else None

        ticks = _wait("the GitHub sensors' first finished ticks", skip_reasons, 120, log, proc)
        for name in GITHUB_SENSORS:
            assert ticks[name][0]["status"] == "SKIPPED"
            assert ticks[name][0]["skipReason"].startswith("no GitHub credentials: set CODEXK8S_GITHUB_TOKEN")

        # `codexk8s env` from another terminal finds this platform; the CLI then reaches its database.
        other = {k: v for k, v in env.items() if k != "CODEXK8S_DATABASE_URL"}
        printed = subprocess.run([str(CODEXK8S), "env"], env=other, capture_output=True, text=True, timeout=60)
        assert printed.returncode == 0, printed.stderr
        assert f"export CODEXK8S_DAGSTER_URL=http://127.0.0.1:{port}" in printed.stdout.splitlines()
        migrate = subprocess.run([str(CODEXK8S), "db", "migrate"], env=other, capture_output=True, text=True,
                                 timeout=60, cwd=REPO_ROOT)  # fmt: skip
        assert migrate.returncode == 0 and "applied now: nothing" in migrate.stdout, migrate.stderr

        # An offline OSV source, materialized from the UI; then the scan; its checks are on the asset.
        assert _materialize(port, "osv_database", None, log, proc)["codexk8s/kind"] == "periodic"
        key = checkout.name  # a local checkout's partition key is its directory's name
        added = _query(port, ADD_PARTITION, {"key": key})["addDynamicPartition"]["__typename"]
        assert added in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError")  # the docs sensor may be first
        tags = _materialize(port, "security_findings", key, log, proc)
        assert tags["codexk8s/kind"] == "periodic" and tags["dagster/partition"] == key
        node = _query(port, CHECKS, {"path": ["security_findings"]})["assetNodeOrError"]
        checks = {c["name"]: c["executionForLatestMaterialization"] for c in node["assetChecksOrError"]["checks"]}
        assert checks["no_severe_findings"]["status"] == "FAILED"
        assert checks["no_severe_findings"]["evaluation"] == {
            "severity": "ERROR", "description": "1 open finding(s) at or above HIGH: 1 CRITICAL"
        }  # fmt: skip
        assert checks["osv_database_fresh"]["status"] == "SUCCEEDED"

        # kill -9 of `codexk8s dev`: its Dagster (own session) survives; the next start stops it, then runs one.
        root = psutil.Process(proc.pid)
        orphans = _dagster_processes(root)
        assert orphans
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert all(p.is_running() for p in orphans)  # what the old `make run` left behind
        second = _start(env, port, log)
        _, alive = psutil.wait_procs(orphans, timeout=90)  # stopped by the new start before it starts its own
        assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
        _wait("the code location after the restart", lambda: _repository(port), 240, log, second)
        dagster_groups.append(_recorded_group(state))
        running = _dagster_processes(psutil.Process(second.pid))
        assert len([p for p in running if " dev " in _command_line(p)]) == 1, [_command_line(p) for p in running]
        text = log.read_text()
        assert "address already in use" not in text.lower() and "still sending heartbeats" not in text
        # A quiet start: none of the notices `make run` used to print next to its own lines.
        for noise in ("BetaWarning", "SupersessionWarning", "XDG_RUNTIME_DIR", "Invalid -W option"):
            assert noise not in text, noise

        pgdata = state / "pgdata"
        postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        second_root = psutil.Process(second.pid)
        started = [second_root, *second_root.children(recursive=True), psutil.Process(postmaster)]
        os.killpg(second.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert second.wait(timeout=90) == 0, log.read_text()[-4000:]
        _, alive = psutil.wait_procs(started, timeout=30)
        assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
        assert not (pgdata / "postmaster.pid").exists() and not (state / "dev.json").exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5)
        gone = subprocess.run([str(CODEXK8S), "env"], env=other, capture_output=True, text=True, timeout=60)
        assert gone.returncode == 1 and "start it with `make run`" in gone.stderr
    finally:
        for p in (proc, second):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for pgid in dagster_groups:  # `dagster dev` runs in its own session: a failed test must not leave it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for p in started:
            if p.is_running():
                p.kill()
