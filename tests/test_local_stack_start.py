"""How `codexk8s dev` (`make run`) starts or refuses to: the UI's port taken, a webserver that never answers, two
starts at once. Each refusal is one line, and nothing it started is left running (no PostgreSQL, no Dagster)."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from codexk8s_pipelines import local_stack
from tests.helpers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CODEXK8S = Path(sys.executable).with_name("codexk8s")


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEXK8S_", "DAGSTER_"))}
    env.update({"CODEXK8S_HOME": str(state), "LC_ALL": "C.UTF-8", "DAGSTER_DISABLE_TELEMETRY": "1"})
    return env


def _dev(state: Path, port: int) -> subprocess.CompletedProcess[str]:
    """`codexk8s dev` expected to refuse at once. Should it start instead, Ctrl-C stops it and all it started (a
    kill would leave its Dagster and PostgreSQL running)."""
    proc = subprocess.Popen(
        [str(CODEXK8S), "dev", "--port", str(port)],
        cwd=REPO_ROOT,
        env=_env(state),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _started_anything(state: Path) -> list[str]:
    """PostgreSQL or Dagster processes of this state directory, and the files a start leaves while it runs."""
    left = [
        " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
        if str(state) in " ".join(p.info["cmdline"] or [])
    ]
    return left + [str(f) for f in (state / "pgdata" / "postmaster.pid", state / "dev.json") if f.exists()]


@pytest.fixture
def listener() -> Iterator[int]:
    """Someone else's service on a port of 127.0.0.1 (another checkout's UI, Grafana, a React dev server)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield int(server.getsockname()[1])


def test_a_taken_ui_port_is_refused_before_anything_starts(tmp_path: Path, listener: int) -> None:
    """`dagster dev` whose webserver could not bind kept running headless (daemon, sensors, runs), and the URL it
    printed, and `codexk8s env`'s CODEXK8S_DAGSTER_URL, led to the other service."""
    state = tmp_path / "state"
    result = _dev(state, listener)

    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("codexk8s")]
    assert re.fullmatch(
        rf"codexk8s dev: port {listener} is in use on 127\.0\.0\.1; run `make run PORT=(\d+)` \(or stop what "
        r"listens there\)",
        line,
    ), result.stderr
    suggested = int(re.findall(r"PORT=(\d+)", line)[0])
    assert suggested > listener and local_stack.port_problem("127.0.0.1", suggested) is None
    assert "Traceback" not in result.stderr
    assert not (state / "pgdata").exists()  # the database was never started
    assert _started_anything(state) == []


def test_the_port_check_sees_listeners_on_any_address_and_not_closing_connections() -> None:
    with socket.create_server(("0.0.0.0", 0)) as everywhere:
        port = int(everywhere.getsockname()[1])
        assert local_stack.port_problem("127.0.0.1", port) == f"port {port} is in use"
    # A UI just stopped leaves its connections closing (TIME_WAIT): the webserver binds over them, so may the start.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = int(server.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: its end waits in TIME_WAIT
        client.close()
    assert local_stack.port_problem("127.0.0.1", port) is None
    assert local_stack.port_problem("127.0.0.1", free_port()) is None


def test_a_webserver_that_never_answers_is_a_failed_start_that_stops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The port was free at the check, then taken before the webserver bound it (or the webserver died): the start
    fails once the UI has not answered /server_info within its deadline, and everything started is stopped."""
    state = tmp_path / "state"
    pid_file = tmp_path / "dagster.pid"
    port = free_port()
    sleeper = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    monkeypatch.setattr(local_stack, "_dagster_command", lambda *_: [sys.executable, "-c", sleeper])
    for name in [k for k in os.environ if k.startswith(("CODEXK8S_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CODEXK8S_HOME", str(state))
    monkeypatch.chdir(REPO_ROOT)
    caplog.set_level(logging.INFO, logger="codexk8s.dev")

    code = local_stack.run_local_stack("127.0.0.1", port, Path("workspace.yaml"), ui_start_seconds=3)

    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"the Dagster UI did not answer at http://127.0.0.1:{port} within 3 s (its webserver did not start; see its "
        "lines above; CODEXK8S_UI_START_SECONDS gives a slow machine longer): stopping"
    ]
    assert not any(r.getMessage().startswith("the UI: ") for r in caplog.records)  # never announced
    fake_dagster = int(pid_file.read_text())
    assert not psutil.pid_exists(fake_dagster)
    assert _started_anything(state) == []


def test_the_run_links_of_the_service_comment_point_at_the_port_the_ui_listens_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run PORT=3001`: a run process made its "Dagster run" links with port 3000, so every one was dead. The
    stand-in for `dagster dev` makes a link as a run process does, with the environment `codexk8s dev` hands it."""
    state = tmp_path / "state"
    link = tmp_path / "link.txt"
    port = free_port()
    run_process = (
        "from codexk8s_pipelines.github.service_comment import run_url; "
        f"open({str(link)!r}, 'w').write(run_url('0b5e1d2c'))"
    )
    monkeypatch.setattr(local_stack, "_dagster_command", lambda *_: [sys.executable, "-c", run_process])
    for name in [k for k in os.environ if k.startswith(("CODEXK8S_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CODEXK8S_HOME", str(state))
    monkeypatch.chdir(REPO_ROOT)

    local_stack.run_local_stack("127.0.0.1", port, Path("workspace.yaml"), ui_start_seconds=120)

    assert link.read_text() == f"http://127.0.0.1:{port}/runs/0b5e1d2c"
    assert _started_anything(state) == []


def test_an_operators_own_dagster_url_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A UI behind a proxy: the address the operator gave is the one the links use."""
    monkeypatch.chdir(tmp_path)  # no codexk8s.yaml: the defaults
    given = {"CODEXK8S_DAGSTER_URL": "https://dagster.example.com"}
    env = local_stack.platform_env(given, tmp_path / "state", "postgresql://x@127.0.0.1/db", "http://127.0.0.1:3001")
    assert env["CODEXK8S_DAGSTER_URL"] == "https://dagster.example.com"
    unset = local_stack.platform_env({}, tmp_path / "state", "postgresql://x@127.0.0.1/db", "http://127.0.0.1:3001")
    assert unset["CODEXK8S_DAGSTER_URL"] == "http://127.0.0.1:3001"


def test_two_starts_at_once_one_holds_the_lock_the_other_is_refused(tmp_path: Path) -> None:
    """Both starts found no record (it is written once the database is up) and broke each other's database."""
    state = tmp_path / "state"
    state.mkdir()
    first = local_stack.lock_state_dir(state)
    assert first is not None
    try:
        assert local_stack.lock_state_dir(state) is None  # another open of the file: refused, even in this process
        refused = _dev(state, free_port())
        assert refused.returncode == 2
        assert refused.stderr.splitlines()[-1] == (
            "codexk8s dev: the platform of this checkout already runs (starting); use it, or stop it with Ctrl-C in "
            "its terminal first"
        )
        assert _started_anything(state) == []
    finally:
        os.close(first)
    again = local_stack.lock_state_dir(state)
    assert again is not None
    os.close(again)

    # Two processes at the same moment: exactly one holds it.
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom codexk8s_pipelines.local_stack import lock_state_dir\n"
        "fd = lock_state_dir(Path(sys.argv[1]))\nprint('held' if fd is not None else 'refused', flush=True)\n"
        "time.sleep(3)\n"
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        for _ in range(2)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in racers)
    assert outcomes == ["held", "refused"]
    # The kernel drops the lock with its process, kill -9 included: a start after a killed one is not refused.
    holder = subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    after = local_stack.lock_state_dir(state)
    assert after is not None
    os.close(after)


def test_the_ui_probe_goes_straight_to_the_webserver_whatever_the_shells_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `http_proxy` set (a corporate shell) the probe went to the proxy, never saw the UI, and the start was
    stopped at its deadline; a wildcard or IPv6 host made an address nothing answers at."""
    import http.server
    import threading

    class Dagster(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"dagster_webserver_version": "1.13.27"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dagster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # the discard port: nothing answers there
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        port = server.server_address[1]
        assert local_stack.ui_answers(local_stack.ui_url_of("0.0.0.0", port))
        assert local_stack.ui_url_of("::1", port) == f"http://[::1]:{port}"
    finally:
        server.shutdown()
        server.server_close()
