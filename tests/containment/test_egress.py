"""The agent's network is an allow-list: real bubblewrap, a real relay, real sockets, scripted agents.

Inside the sandbox the agent has only its own loopback. It reaches its model endpoint and the MCP server (forwarded
at the same port number), and anything else on the allow-list through the HTTP proxy; a loopback service that is
not on the list (the Dagster UI's unauthenticated GraphQL, stood in for by an HTTP server) and any external host are
refused at once, with the relay's reason, and recorded. No traffic leaves loopback: the external destinations are
refused by the relay before it resolves or connects anything, which the in-process test proves with a spy.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codexk8s_pipelines import settings
from codexk8s_pipelines.agents import egress
from codexk8s_pipelines.agents import sandbox as sb
from codexk8s_pipelines.agents.agent_env import build_agent_env
from codexk8s_pipelines.agents.agent_setup import AgentSettings, ModelEndpoint, NetworkPolicy
from codexk8s_pipelines.agents.runner import AgentLaunch, launch_agent
from tests.agents_runner.test_git_workspace import make_remote
from tests.agents_runner.test_runner import REPO_ROOT, agent_processes, make_agent, make_spec, run_runner

BOUND_SECONDS = 5.0  # every refused attempt ends well within this: an error, never a hang


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        body = f"{self.server.name} saw {self.path}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    """Three loopback HTTP servers: the model endpoint, the MCP server, and the Dagster UI (never to be reached)."""
    found: dict[str, Any] = {}
    for name in ("model", "mcp", "dagster_ui"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        server.name, server.seen = name, []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        found[name] = server
    yield found
    for server in found.values():
        server.shutdown()
        server.server_close()


def port(server: Any) -> int:
    return int(server.server_address[1])


# The scripted agent's attempts, run inside the sandbox; TARGETS is prepended as JSON.
PROBE = """\
import json, os, socket, time, urllib.error, urllib.request

PROXY = os.environ.get("HTTPS_PROXY", "")

def timed(fn):
    started = time.monotonic()
    try:
        out = fn()
    except Exception as exc:
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, Exception):
            exc = exc.reason
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.monotonic() - started, 3)
    return out

def http(url, via_proxy):
    proxies = {"http": PROXY, "https": PROXY} if via_proxy else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        with opener.open(url, timeout=20) as response:
            return {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode()}

def tunnel(target):
    host, port = PROXY.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        return {"status": int(head.split()[1]), "body": body.decode()}

def raw(host, port):
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        return {"answer": sock.recv(100).decode()}

out = {"env_proxy": PROXY, "no_proxy": os.environ.pop("NO_PROXY", None)}
os.environ.pop("no_proxy", None)  # urllib would bypass the proxy for 127.0.0.1 even when asked to use it
out["model"] = timed(lambda: http(f"http://127.0.0.1:{TARGETS['model']}/v1/models", False))
out["mcp"] = timed(lambda: http(f"http://127.0.0.1:{TARGETS['mcp']}/mcp", False))
out["model_via_proxy"] = timed(lambda: http(f"http://127.0.0.1:{TARGETS['model']}/v1/proxied", True))
out["ui_direct"] = timed(lambda: http(f"http://127.0.0.1:{TARGETS['ui']}/graphql", False))
out["ui_localhost"] = timed(lambda: http(f"http://localhost:{TARGETS['ui']}/graphql", False))
out["ui_via_proxy"] = timed(lambda: http(f"http://127.0.0.1:{TARGETS['ui']}/graphql", True))
out["ui_tunnel"] = timed(lambda: tunnel(f"127.0.0.1:{TARGETS['ui']}"))
out["ui_raw"] = timed(lambda: raw("127.0.0.1", TARGETS["ui"]))
out["other_raw"] = timed(lambda: raw("127.0.0.1", TARGETS["other"]))
for name, target in TARGETS.get("external", {}).items():
    out[name] = timed(lambda: tunnel(target))
"""


def probe_script(targets: dict[str, Any]) -> str:
    return f"TARGETS = {json.dumps(targets)}\n" + PROBE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_contained(out: dict[str, Any], servers: dict[str, Any], ui_port: int) -> None:
    assert out["env_proxy"].startswith("http://127.0.0.1:"), out
    assert out["model"]["status"] == 200 and out["model"]["body"] == "model saw /v1/models", out["model"]
    assert out["mcp"]["status"] == 200 and out["mcp"]["body"] == "mcp saw /mcp", out["mcp"]
    assert out["model_via_proxy"]["status"] == 200, out["model_via_proxy"]
    assert out["model_via_proxy"]["body"] == "model saw /v1/proxied"
    # The Dagster UI stand-in: nothing listens on its port inside, and the relay refuses it by name.
    for attempt in ("ui_direct", "ui_localhost", "ui_raw"):
        assert "ConnectionRefusedError" in out[attempt].get("error", ""), (attempt, out[attempt])
    for attempt in ("ui_via_proxy", "ui_tunnel"):
        assert out[attempt]["status"] == 403, (attempt, out[attempt])
        assert f"127.0.0.1:{ui_port} is not on the agent's egress allow-list" in out[attempt]["body"], out[attempt]
    assert "ConnectionRefusedError" in out["other_raw"].get("error", ""), out["other_raw"]
    for name, attempt in out.items():
        if isinstance(attempt, dict):
            assert attempt["seconds"] < BOUND_SECONDS, (name, attempt)
    assert servers["dagster_ui"].seen == [], "the agent reached the Dagster UI stand-in"
    assert servers["model"].seen == ["/v1/models", "/v1/proxied"]
    assert servers["mcp"].seen == ["/mcp"]


# ------------------------------------------------------------------------------------------------ allow-list


def test_the_allow_list_comes_from_the_settings_not_from_the_sandbox() -> None:
    mcp_env = {"CODEXK8S_MCP_URL": "http://127.0.0.1:8765/mcp"}
    gateway = AgentSettings(kind="codex", endpoint=ModelEndpoint(base_url="http://127.0.0.1:4000/v1"))
    allowed = egress.allow_list(gateway, mcp_env)
    assert {str(e): why for e, why in allowed.entries.items()} == {
        "127.0.0.1:4000": "model endpoint",
        "127.0.0.1:8765": "MCP server",
    }
    assert allowed.loopback_ports == (4000, 8765)
    # No endpoint of its own: the program's provider. No MCP when the catalog says so. Indexes only when allowed.
    claude = AgentSettings(kind="claude-code", network=NetworkPolicy(mcp=False, package_indexes=True))
    names = {str(e) for e in egress.allow_list(claude, mcp_env).entries}
    assert "api.anthropic.com:443" in names and "pypi.org:443" in names and "127.0.0.1:8765" not in names
    assert not any("pypi" in str(e) for e in egress.allow_list(gateway, mcp_env).entries)
    # A custom command gets MCP and what the spec's `egress_allow` adds, nothing else.
    custom = egress.allow_list(None, mcp_env, ["gateway.internal:8443", "[::1]:9000"])
    assert sorted(str(e) for e in custom.entries) == ["127.0.0.1:8765", "[::1]:9000", "gateway.internal:8443"]
    for bad in ("no-port.example", "evil\x1b[2J.example:443", "host with space:80", "example.com:70000"):
        with pytest.raises(egress.EgressError):
            egress.Endpoint.parse(bad)
    # An MCP URL naming `localhost` is the forwarded 127.0.0.1 port inside; another port on loopback is not.
    by_name = egress.allow_list(None, {"CODEXK8S_MCP_URL": "http://localhost:8765/mcp"})
    assert by_name.match(egress.Endpoint("127.0.0.1", 8765)) == egress.Endpoint("localhost", 8765)
    assert not by_name.allows(egress.Endpoint("127.0.0.1", 3000))
    assert not by_name.allows(egress.Endpoint("example.com", 8765))


def test_the_sandbox_has_its_own_network_namespace_by_default(tmp_path: Path) -> None:
    args = sb.bwrap_args(sb.SandboxPlan(workspace=tmp_path), ["true"], "/usr/bin:/bin")
    assert "--unshare-net" in args


# ------------------------------------------------------------------------------------------------ the relay itself


def test_refused_destinations_are_never_resolved_nor_connected_and_the_relay_ends_with_the_run(
    tmp_path: Path, servers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process relay, real bwrap: an external name and a TEST-NET address are refused before any lookup or
    connect (the spy fails the test otherwise), and closing the relay leaves no thread and no socket behind."""
    lookups: list[tuple[str, int]] = []
    real_getaddrinfo = socket.getaddrinfo

    def spy(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append((str(host), int(port)))
        if not egress.is_loopback(str(host)):
            raise AssertionError(f"the relay tried to resolve {host}: traffic would leave loopback")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    bwrap = sb.bwrap_binary({})
    sb.probe(bwrap)
    assert bwrap is not None
    ui_port = port(servers["dagster_ui"])
    targets = {
        "model": port(servers["model"]),
        "mcp": port(servers["mcp"]),
        "ui": ui_port,
        "other": free_port(),
        "external": {"external_name": "blocked.invalid:443", "external_ip": "192.0.2.1:443"},
    }
    allowed = egress.allow_list(
        None, {"CODEXK8S_MCP_URL": f"http://127.0.0.1:{targets['mcp']}/mcp"}, [f"127.0.0.1:{targets['model']}"]
    )
    workspace = tmp_path / "checkout"
    workspace.mkdir()
    script = workspace.parent / "probe.py"
    script.write_text(probe_script(targets) + "\nprint(json.dumps(out))\n")
    env = build_agent_env({"PATH": "/usr/local/bin:/usr/bin:/bin"}, home=sb.AGENT_HOME)
    refused: list[egress.Refusal] = []
    relay = egress.EgressRelay(allowed, refused.append)
    try:
        with sb.process_cap(64, 2 * 1024**3) as cap:
            plan = sb.SandboxPlan(workspace=workspace, egress=relay.mount())
            command = [egress.forwarder_python(), str(script)]
            agent = launch_agent(command, workspace, env, subprocess.DEVNULL, AgentLaunch(bwrap, plan, cap))
            stdout, stderr = agent.communicate(timeout=60)
            proc = agent.proc
            # The forwarder's server lived in the sandbox: it is gone with the agent (the kernel ends the namespace).
            deadline = time.monotonic() + 5
            while cap.remaining() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert cap.cgroup is None or cap.remaining() == [], "a process of the sandbox outlived the agent"
        assert proc.returncode == 0, stderr.decode()
        out = json.loads(stdout.decode().strip().splitlines()[-1])
        assert_contained(out, servers, ui_port)
        for name, target in targets["external"].items():
            assert out[name]["status"] == 403, (name, out[name])
            assert f"{egress.Endpoint.parse(target)} is not on the agent's egress allow-list" in out[name]["body"]
        assert sorted({r.destination for r in refused}) == sorted(
            [f"127.0.0.1:{ui_port}", "blocked.invalid:443", "192.0.2.1:443"]
        )
        assert all(egress.is_loopback(host) for host, _ in lookups), lookups
        assert relay.connected == {f"127.0.0.1:{targets['model']}", f"127.0.0.1:{targets['mcp']}"}
    finally:
        relay.close()
    assert relay.threads_alive() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("codexk8s-egress")]
    assert not relay.host_dir.exists()
    assert agent_processes(str(script)) == []


# ------------------------------------------------------------------------------------------------ through the runner


def test_through_the_runner_the_agent_reaches_its_model_and_mcp_and_nothing_else(
    tmp_path: Path, servers: dict[str, Any]
) -> None:
    ui_port = port(servers["dagster_ui"])
    targets = {"model": port(servers["model"]), "mcp": port(servers["mcp"]), "ui": ui_port, "other": free_port()}
    body = probe_script(targets) + 'write(".codexk8s/egress.json", json.dumps(out))\nresult(summary="probed")\n'
    command = make_agent(tmp_path, body, name="egress-agent.py")
    spec = make_spec(
        tmp_path,
        make_remote(tmp_path),
        command,
        env={"CODEXK8S_MCP_URL": f"http://127.0.0.1:{targets['mcp']}/mcp"},
        egress_allow=[f"127.0.0.1:{targets['model']}"],
    )
    started = time.monotonic()
    proc, result = run_runner(spec, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["status"] == "succeeded" and result["sandboxed"] is True, result
    out = json.loads((tmp_path / "workdir" / ".codexk8s" / "egress.json").read_text())
    assert_contained(out, servers, ui_port)
    # Audited: the allow-list at the start, each refusal with what and where, and the list in the result.
    assert f"127.0.0.1:{targets['model']} (egress_allow setting)" in proc.stdout
    assert f"127.0.0.1:{targets['mcp']} (MCP server)" in proc.stdout and "egress: the agent may reach:" in proc.stdout
    assert f"egress_refused: 127.0.0.1:{ui_port} is not on the agent's egress allow-list" in proc.stdout
    assert result["egress_refusals"] == [f"127.0.0.1:{ui_port}"]
    assert time.monotonic() - started < 60
    assert agent_processes(command[1]) == []


def test_an_agent_with_no_allowed_endpoint_has_no_network_at_all(tmp_path: Path, servers: dict[str, Any]) -> None:
    ui_port = port(servers["dagster_ui"])
    body = f"""\
import socket
outcome = {{}}
for name, port in (("ui", {ui_port}), ("model", {port(servers["model"])})):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        outcome[name] = "connected"
    except OSError as exc:
        outcome[name] = type(exc).__name__
result(summary=json.dumps(outcome))
"""
    proc, result = run_runner(make_spec(tmp_path, make_remote(tmp_path), make_agent(tmp_path, body)), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(result["summary"]) == {"ui": "ConnectionRefusedError", "model": "ConnectionRefusedError"}
    assert "egress: the agent may reach: nothing" in proc.stdout
    assert servers["dagster_ui"].seen == [] and servers["model"].seen == []


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


# ------------------------------------------------------------------------------------------------ the relay, attacked


@pytest.mark.parametrize(
    ("host", "here", "link_local"),
    [
        ("127.0.0.9", True, False),
        ("LOCALHOST.", True, False),
        ("0.0.0.0", True, False),
        ("::", True, False),
        ("::ffff:127.0.0.1", True, False),
        ("::ffff:7f00:1", True, False),
        ("169.254.169.254", False, True),
        ("::ffff:169.254.169.254", False, True),
        ("fe80::1", False, True),
        ("10.0.0.7", False, False),
        ("api.openai.com", False, False),
    ],
)
def test_addresses_that_reach_this_machine_or_the_metadata_service(host: str, here: bool, link_local: bool) -> None:
    assert (egress.is_loopback(host), egress.is_link_local(host)) == (here, link_local)


def _relay_request(relay: egress.EgressRelay, line: bytes) -> bytes:
    """What the agent's side of the relay socket reads after one request line (and an HTTP request behind it)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(BOUND_SECONDS)
        sock.connect(str(relay.socket_path))
        sock.sendall(line + b"GET /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
        return data


@pytest.mark.parametrize("answer", ["0.0.0.0", "::ffff:127.0.0.1", "::ffff:7f00:1", "169.254.169.254"])
def test_an_allowed_name_whose_dns_answer_is_this_machine_or_the_metadata_service_is_refused(
    servers: dict[str, Any], monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """An allowed remote name whose (attacker-influenced) DNS answer leads back to the runner's own loopback, where
    the Dagster UI listens, or to a cloud's metadata service, is refused and recorded, and nothing is connected."""
    ui_port = port(servers["dagster_ui"])
    real_getaddrinfo = socket.getaddrinfo
    connected: list[Any] = []

    def dns(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "gateway.example":
            return real_getaddrinfo(host, service, *args, **kwargs)
        if ":" in answer:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (answer, service, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, service))]

    real_connect = socket.socket.connect

    def spy(sock: socket.socket, address: Any) -> None:
        if sock.family != socket.AF_UNIX:
            connected.append(address)
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    monkeypatch.setattr(socket.socket, "connect", spy)
    refused: list[egress.Refusal] = []
    relay = egress.EgressRelay(egress.allow_list(None, {}, [f"gateway.example:{ui_port}"]), refused.append)
    try:
        reply = _relay_request(relay, f"CONNECT gateway.example {ui_port}\n".encode())
    finally:
        relay.close()
    assert reply.startswith(b"REFUSED gateway.example:"), reply[:200]
    assert connected == [] and servers["dagster_ui"].seen == []
    assert [r.destination for r in refused] == [f"gateway.example:{ui_port}"]
    assert relay.refused == {f"gateway.example:{ui_port}": 1}


def test_a_flood_of_one_refused_destination_cannot_hide_the_attempt_that_matters(
    tmp_path: Path, servers: dict[str, Any]
) -> None:
    """Only the first 1,000 refusals were kept and the first 20 reported: 1,000 refusals of a junk destination first,
    and the agent's attempt at the Dagster UI was in neither the status lines nor the result."""
    ui_port = port(servers["dagster_ui"])
    body = f"""\
import socket
def relay(line):
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/codexk8s-egress/egress.sock")
    s.sendall(line)
    answer = s.recv(200)
    s.close()
    return answer
for _ in range(1000):
    relay(b"CONNECT noise.invalid 1\\n")
answer = relay(b"CONNECT 127.0.0.1 {ui_port}\\n")
result(summary=answer.decode().strip())
"""
    command = make_agent(tmp_path, body, name="flood-agent.py")
    proc, result = run_runner(make_spec(tmp_path, make_remote(tmp_path), command), tmp_path)
    assert result["summary"].startswith("REFUSED"), result
    assert result["egress_refusals"] == [f"127.0.0.1:{ui_port}", "noise.invalid:1"]
    lines = [line for line in proc.stdout.splitlines() if "egress_refused" in line]
    assert len(lines) == 2 and any(f"127.0.0.1:{ui_port} is not on the agent's egress allow-list" in x for x in lines)
    assert servers["dagster_ui"].seen == []


RELAY_UNDER_A_LOW_FD_LIMIT = """\
import resource, sys, time
from codexk8s_pipelines.agents import egress
resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
relay = egress.EgressRelay(egress.allow_list(None, {}, []))
print(relay.socket_path, flush=True)
sys.stdin.readline()
relay.close()
"""


def test_the_relay_outlasts_running_out_of_descriptors(tmp_path: Path) -> None:
    """An agent opening connections until the runner has no descriptor left made `accept` fail once, and the relay
    took that for its close: it accepted nothing more for the rest of the run."""
    child = subprocess.Popen(
        [sys.executable, "-c", RELAY_UNDER_A_LOW_FD_LIMIT],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        path = child.stdout.readline().strip()
        held = []
        for _ in range(80):  # more than the relay's process has descriptors for
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            held.append(sock)
        time.sleep(0.5)
        for sock in held:
            sock.close()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(BOUND_SECONDS)
            sock.connect(path)
            sock.sendall(b"CONNECT blocked.invalid 443\n")
            assert sock.recv(200).startswith(b"REFUSED blocked.invalid:443 is not on the agent's egress allow-list")
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()


def test_connections_over_the_cap_are_turned_away_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections past MAX_CONNECTIONS at once were turned away without a trace: a flood is the agent's doing."""
    monkeypatch.setattr(egress, "MAX_CONNECTIONS", 2)
    refused: list[egress.Refusal] = []
    relay = egress.EgressRelay(egress.allow_list(None, {}, []), refused.append)
    held = []
    try:
        for _ in range(2):  # the cap: two connections that send nothing yet
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(relay.socket_path))
            held.append(sock)
        time.sleep(0.2)
        with socket.socket(socket.AF_UNIX) as third:
            third.settimeout(BOUND_SECONDS)
            third.connect(str(relay.socket_path))
            assert third.recv(200).startswith(b"FAILED too many connections")
    finally:
        for sock in held:
            sock.close()
        relay.close()
    assert relay.refused == {egress.OVER_CAP: 1}
    assert [r.destination for r in refused] == [egress.OVER_CAP] and "more than 2 connections" in refused[0].reason
    assert relay.refusals_listed() == [egress.OVER_CAP]


def test_each_runs_relay_reaches_the_mcp_server_from_an_address_of_its_own() -> None:
    """Local runs reach the MCP server through their relays; from 127.0.0.1 all alike, one run holding the server's
    per-address slots (mcp/http.py) starved every other local run's agent. Each relay has its own loopback source
    for the MCP server, and only for it: another local service (an `egress_allow` entry) may admit 127.0.0.1 alone."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(BOUND_SECONDS)
        target = listener.getsockname()[1]
        mcp_env = {settings.MCP_URL_VAR: f"http://127.0.0.1:{target}/mcp"}

        def peer(relay: egress.EgressRelay, line: str) -> str:
            with socket.socket(socket.AF_UNIX) as agent:
                agent.settimeout(BOUND_SECONDS)
                agent.connect(str(relay.socket_path))
                agent.sendall(line.encode())
                assert agent.recv(64).startswith(b"OK")
                conn, (host, _) = listener.accept()
                conn.close()
                return host

        relays = [egress.EgressRelay(egress.allow_list(None, mcp_env)) for _ in range(2)]
        plain = egress.EgressRelay(egress.allow_list(None, {}, [f"127.0.0.1:{target}"]))
        try:
            peers = [peer(relay, f"CONNECT 127.0.0.1 {target}\n") for relay in relays]
            elsewhere = peer(plain, f"CONNECT 127.0.0.1 {target}\n")
        finally:
            for relay in [*relays, plain]:
                relay.close()
    assert peers == [relay.loopback_source for relay in relays] and peers[0] != peers[1]
    assert all(ipaddress.ip_address(p) in egress.LOOPBACK_SOURCES for p in peers)
    assert elsewhere == "127.0.0.1"
