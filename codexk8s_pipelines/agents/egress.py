"""The agent's network: an explicit allow-list, enforced by a relay the runner owns.

Why: the agent is untrusted code. Sharing the host's network would let it reach every loopback service (the Dagster
webserver's GraphQL, which launches runs and wipes assets without authentication; the MCP server with any path;
the webhook receiver) and any host on the internet. So the sandbox gets its own network namespace (only its own
loopback), and everything it may reach goes through one door:

- **the relay** (`EgressRelay`, a thread of the runner, closed with the run): a Unix socket in a run-private host
  directory, bound read-only into the sandbox. A client sends `CONNECT <host> <port>`; the relay answers
  `REFUSED <why>` at once for anything not on the allow-list (and records it: what, where), or resolves and
  connects itself, answers `OK` and splices bytes. Nothing is resolved or sent for a refused destination;
- **the forwarder** (`egress_forwarder.py`, started by the sandbox before the agent, stdlib only): inside, an HTTP(S)
  proxy on 127.0.0.1 for `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`, and a plain TCP listener on each allow-listed
  loopback port at the same number, so an agent configured with `http://127.0.0.1:<p>` works unchanged.

The allow-list is a setting, not an accident of a sandbox flag (`allow_list`): the agent's model endpoint (its
catalog `endpoint.base_url`, else its program's default provider), the platform's MCP server (catalog
`network.mcp`), the package indexes only when catalog `network.package_indexes` is true, and the spec's
`egress_allow` entries.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .. import settings
from .egress_forwarder import SERVER_NAME  # one copy: the forwarder files are stdlib-only (they run in the sandbox)
from .egress_forwarder_server import read_line, splice

if TYPE_CHECKING:
    from .agent_setup import AgentSettings

log = logging.getLogger(__name__)
INSIDE_DIR = "/run/codexk8s-egress"  # where the relay's directory appears inside the sandbox
SOCKET_NAME = "egress.sock"
FORWARDER_NAME = "forwarder.py"
DEFAULT_PROXY_PORT = 3128
CONNECT_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_REQUEST_BYTES = 1024
MAX_CONNECTIONS = 256  # at once: an agent opening sockets in a loop must not spawn unbounded relay threads
ACCEPT_RETRY_SECONDS = 0.05
OVER_CAP = "(too many connections at once)"  # the destination a connection over MAX_CONNECTIONS is recorded as
# The loopback addresses a run's relay connects to the platform's MCP server from (127.0.0.0/8 is all loopback on
# Linux): one per run, so the server tells local runs apart by address, as it tells agent pods apart in Kubernetes
# (its per-address bounds, mcp/http.py). Only the MCP server: another local service an `egress_allow` names may admit
# 127.0.0.1 alone (pg_hba's `127.0.0.1/32`), so the rest is reached from 127.0.0.1 as before.
LOOPBACK_SOURCES = ipaddress.ip_network("127.128.0.0/9")
MCP_SERVER = "MCP server"  # the allow-list's reason for the platform's MCP server
# Refused destinations kept by name with their count; beyond, refusals are only counted. An agent could otherwise bury
# the one attempt that matters under a flood of refusals of one junk destination.
MAX_REFUSED_DESTINATIONS = 1000
# The programs' own providers, when the catalog sets no endpoint of its own.
DEFAULT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "codex": ("api.openai.com:443",),
    "claude-code": ("api.anthropic.com:443",),
    "opencode": ("api.openai.com:443",),
    "aider": ("api.openai.com:443",),
}
# Opened only with the catalog's `network.package_indexes: true`.
PACKAGE_INDEXES: tuple[str, ...] = (
    "pypi.org:443",
    "files.pythonhosted.org:443",
    "registry.npmjs.org:443",
    "proxy.golang.org:443",
    "sum.golang.org:443",
    "index.crates.io:443",
    "static.crates.io:443",
)
_FORWARDER_SOURCES = {
    FORWARDER_NAME: Path(__file__).with_name("egress_forwarder.py"),
    SERVER_NAME: Path(__file__).with_name("egress_forwarder_server.py"),
}


_HOST = re.compile(r"^[a-z0-9_.:%-]{1,253}$")  # a DNS name or an IP literal; nothing an agent could smuggle into logs


class EgressError(ValueError):
    """An allow-list entry that is not `host:port`."""


@dataclass(frozen=True, order=True)
class Endpoint:
    """One `host:port` the agent may reach; the host lower-cased, an IPv6 literal without brackets."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        value = text.strip()
        host, sep, port = value.rpartition(":")
        host = host.strip("[]").lower()
        if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise EgressError(f"{text!r} is not host:port (e.g. 'pypi.org:443', '127.0.0.1:8080')")
        return cls(host, int(port))

    @classmethod
    def from_url(cls, url: str) -> Endpoint | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            return None
        default = 443 if parts.scheme in ("https", "wss") else 80
        return cls(parts.hostname.lower(), parts.port or default)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` as an address (an IPv4-mapped IPv6 one as its IPv4 address, a zone left out), or None for a name."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """Whether connecting to `host` reaches this machine: loopback, the unspecified address (connecting to 0.0.0.0 or
    :: reaches the local host) and their IPv4-mapped IPv6 forms, which `is_loopback` does not see on Python 3.11."""
    if host.rstrip(".").lower() == "localhost":
        return True
    address = _address(host)
    return address is not None and (address.is_loopback or address.is_unspecified)


def is_link_local(host: str) -> bool:
    """169.254.0.0/16 and fe80::/10 (also IPv4-mapped): where clouds serve instance metadata and credentials."""
    address = _address(host)
    return address is not None and address.is_link_local


@dataclass(frozen=True)
class AllowList:
    """What the agent may reach, each with why (shown in the run's log)."""

    entries: dict[Endpoint, str] = field(default_factory=dict)

    def match(self, endpoint: Endpoint) -> Endpoint | None:
        """The allowed entry `endpoint` stands for, or None. Loopback names are one host: the forwarder asks for
        127.0.0.1:<p> whether the setting said `localhost`, `127.0.0.1` or `[::1]`."""
        if endpoint in self.entries:
            return endpoint
        if endpoint.loopback:
            return next((e for e in sorted(self.entries) if e.loopback and e.port == endpoint.port), None)
        return None

    def allows(self, endpoint: Endpoint) -> bool:
        return self.match(endpoint) is not None

    @property
    def loopback_ports(self) -> tuple[int, ...]:
        """Ports forwarded at the same number inside: a loopback endpoint, as the agent's config names it."""
        return tuple(sorted({e.port for e in self.entries if e.loopback}))

    def describe(self) -> str:
        return ", ".join(f"{e} ({why})" for e, why in sorted(self.entries.items())) or "nothing"


def allow_list(agent: AgentSettings | None, env: Mapping[str, str], extra: Iterable[str] = ()) -> AllowList:
    """The run's allow-list from its settings: model endpoint, MCP, package indexes if allowed, extra entries."""
    entries: dict[Endpoint, str] = {}
    if agent is not None and agent.kind != "custom":
        if agent.endpoint.base_url:
            found = Endpoint.from_url(agent.endpoint.base_url)
            if found is not None:
                entries[found] = "model endpoint"
        else:
            for text in DEFAULT_PROVIDERS.get(agent.kind, ()):
                entries[Endpoint.parse(text)] = f"{agent.kind}'s default model provider"
        if agent.network.package_indexes:
            for text in PACKAGE_INDEXES:
                entries.setdefault(Endpoint.parse(text), "package index")
    mcp_url = env.get(settings.MCP_URL_VAR) or ""
    if mcp_url and (agent is None or agent.network.mcp):
        found = Endpoint.from_url(mcp_url)
        if found is not None:
            entries.setdefault(found, MCP_SERVER)
    for text in extra:
        entries.setdefault(Endpoint.parse(text), "egress_allow setting")
    return AllowList(entries)


# ------------------------------------------------------------------------------------------------ the relay


@dataclass(frozen=True)
class EgressMount:
    """What the sandbox needs to start the forwarder: the host directory with the socket and the forwarder."""

    host_dir: Path
    python: str
    proxy_port: int
    forwards: tuple[int, ...]

    def forwarder_argv(self) -> list[str]:
        """The command that runs before the agent inside the sandbox (the agent's argv follows `--`)."""
        argv = [self.python, "-I", "-S", f"{INSIDE_DIR}/{FORWARDER_NAME}", f"{INSIDE_DIR}/{SOCKET_NAME}"]
        argv += [str(self.proxy_port), ",".join(str(p) for p in self.forwards)]
        return argv

    def proxy_env(self) -> dict[str, str]:
        proxy = f"http://127.0.0.1:{self.proxy_port}"
        no_proxy = "localhost,127.0.0.1,::1"
        names = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
        return {
            **{n: proxy for n in names},
            **{n.lower(): proxy for n in names},
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }


@dataclass(frozen=True)
class Refusal:
    destination: str
    reason: str
    at: float


def forwarder_python() -> str:
    """A python3 the sandbox shows read-only: the system's (no venv, no site), else this runner's interpreter."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return str(Path(sys.executable).resolve())


class _LoopbackRefused(OSError):
    """A remote name that resolves to the runner's own loopback (the way to the Dagster UI by DNS) or to a link-local
    address (a cloud's metadata service)."""


class EgressRelay:
    """The runner's side of the door: accept, check the allow-list, connect, splice; refusals recorded.

    Runs as daemon threads of the runner; `close()` (or leaving `open_relay`) stops them all and removes the socket.
    """

    def __init__(
        self,
        allowed: AllowList,
        on_refusal: Callable[[Refusal], None] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.allowed = allowed
        self.refused: dict[str, int] = {}  # destination → refusals, for the first MAX_REFUSED_DESTINATIONS
        self.refusals_total = 0  # every refusal, also of destinations beyond that
        self.connected: set[str] = set()  # destinations reached (each once)
        self._on_refusal = on_refusal
        self._connect_timeout = connect_timeout
        self.loopback_source = loopback_source()
        self._dir = Path(tempfile.mkdtemp(prefix="codexk8s-egress-"))
        os.chmod(self._dir, 0o700)
        self.socket_path = self._dir / SOCKET_NAME
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.socket_path))
        self._listener.listen(64)
        for name, source in _FORWARDER_SOURCES.items():
            shutil.copyfile(source, self._dir / name)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._slots = 0  # sockets the open connections hold or may hold (two each)
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="codexk8s-egress-accept", daemon=True)
        self._acceptor.start()

    @property
    def host_dir(self) -> Path:
        return self._dir

    def mount(self, proxy_port: int = DEFAULT_PROXY_PORT) -> EgressMount:
        forwards = self.allowed.loopback_ports
        while proxy_port in forwards:
            proxy_port += 1
        return EgressMount(self._dir, forwarder_python(), proxy_port, forwards)

    def _accept(self) -> None:
        starved = False
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError as exc:
                with self._lock:
                    if self._closed:
                        return
                # Out of descriptors (EMFILE, ENFILE) or memory: the relay must outlast it, not stop for the rest of
                # the run. Connections end within their timeouts and give their descriptors back. Said once per
                # episode: the agent decides how long it lasts, and must not fill the run's log with it.
                if not starved:
                    log.warning("egress relay: accept failed (%s); retrying until it works again", exc.strerror or exc)
                    starved = True
                time.sleep(ACCEPT_RETRY_SECONDS)
                continue
            if starved:
                log.warning("egress relay: accepting again")
                starved = False
            with self._lock:
                if self._closed:
                    client.close()
                    return
                # Each connection holds two sockets, the second from its connect on: both are counted from its
                # accept, so connections still connecting cannot take the runner past twice the cap.
                over = self._slots >= 2 * MAX_CONNECTIONS
                if not over:
                    self._slots += 2
                    self._open.add(client)
                    worker = threading.Thread(
                        target=self._serve, args=(client,), name="codexk8s-egress-conn", daemon=True
                    )
                    self._threads = [t for t in self._threads if t.is_alive()] + [worker]
            if over:  # recorded like a refusal: a flood of connections is the agent's doing, and shows in the result
                self._record(OVER_CAP, f"more than {MAX_CONNECTIONS} connections through the egress relay at once")
                with suppress(OSError):
                    client.sendall(b"FAILED too many connections through the egress relay at once\n")
                client.close()
                continue
            try:
                worker.start()
            except RuntimeError:  # no thread to be had: this connection is turned away, the relay goes on
                with self._lock:
                    self._slots -= 2
                    self._open.discard(client)
                client.close()

    def _record(self, destination: str, reason: str) -> None:
        """Count one refusal of `destination` and report it (`on_refusal`)."""
        refusal = Refusal(destination, reason, time.time())
        with self._lock:
            self.refusals_total += 1
            if destination in self.refused or len(self.refused) < MAX_REFUSED_DESTINATIONS:
                self.refused[destination] = self.refused.get(destination, 0) + 1
        if self._on_refusal is not None:
            with suppress(Exception):
                self._on_refusal(refusal)

    def _refuse(self, client: socket.socket, destination: str, reason: str) -> None:
        self._record(destination, reason)
        with suppress(OSError):
            client.sendall(f"REFUSED {reason}\n".encode())

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(REQUEST_TIMEOUT_SECONDS)
            line = read_line(client, MAX_REQUEST_BYTES).decode("ascii", "replace").strip()
            words = line.split()
            if not words:  # closed (or timed out) before asking for anything: no attempt to record
                return
            if len(words) != 3 or words[0] != "CONNECT":
                self._refuse(client, line[:80], "malformed request to the egress relay")
                return
            try:
                wanted = Endpoint.parse(f"{words[1]}:{words[2]}")
            except EgressError:
                self._refuse(client, line[:80], "not host:port")
                return
            entry = self.allowed.match(wanted)
            if entry is None:
                self._refuse(client, str(wanted), f"{wanted} is not on the agent's egress allow-list")
                return
            try:
                upstream = self._connect(entry)
            except _LoopbackRefused as exc:
                self._refuse(client, str(wanted), str(exc))
                return
            except OSError as exc:
                with suppress(OSError):
                    client.sendall(f"FAILED {wanted}: {exc.strerror or exc}\n".encode())
                return
            with self._lock:
                self._open.add(upstream)
                self.connected.add(str(entry))
            client.settimeout(None)
            client.sendall(b"OK\n")
            splice(client, upstream)
        except OSError:
            return
        finally:
            with self._lock:
                self._slots -= 2
                for sock in (client, upstream):
                    if sock is not None:
                        self._open.discard(sock)
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()

    def _connect(self, wanted: Endpoint) -> socket.socket:
        """Resolve and connect; a name allowed as a remote host must not lead back to this machine's loopback."""
        last: OSError = OSError(f"{wanted}: no address")
        for family, kind, proto, _, address in socket.getaddrinfo(wanted.host, wanted.port, type=socket.SOCK_STREAM):
            if not wanted.loopback and is_loopback(str(address[0])):
                raise _LoopbackRefused(f"{wanted} resolves to this machine's loopback ({address[0]}): refused")
            if is_link_local(str(address[0])) and not is_link_local(wanted.host):
                raise _LoopbackRefused(f"{wanted} resolves to a link-local address ({address[0]}): refused")
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self._connect_timeout)
            if self._own_source(wanted, family, str(address[0])):
                with suppress(OSError):  # a system with 127.0.0.1 alone (macOS): the connection comes from it
                    sock.bind((self.loopback_source, 0))
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            sock.settimeout(None)
            return sock
        raise last

    def _own_source(self, wanted: Endpoint, family: int, address: str) -> bool:
        """Whether this connection leaves from the run's own loopback address: to the MCP server, on 127.0.0.0/8 (a
        wildcard destination, 0.0.0.0, is reached from the source address itself, which nothing listens on)."""
        if family != socket.AF_INET or self.allowed.entries.get(wanted) != MCP_SERVER:
            return False
        return ipaddress.ip_address(address).is_loopback

    def close(self) -> None:
        """Stop accepting, cut every open connection, wait for the threads, remove the directory."""
        with self._lock:
            self._closed = True
            live = list(self._open)
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in live:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def refusals_listed(self) -> list[str]:
        """The refused destinations, sorted, and a last line for refusals of destinations beyond those kept; read
        under the relay's lock, as connections may still be refused while it is read."""
        with self._lock:
            listed = sorted(self.refused)
            unnamed = self.refusals_total - sum(self.refused.values())
        return [*listed, f"... and {unnamed} refusal(s) of further destinations, not named"] if unnamed else listed

    def threads_alive(self) -> list[threading.Thread]:
        return [t for t in [self._acceptor, *self._threads] if t.is_alive()]


def loopback_source() -> str:
    """A loopback address of its own for one run's connections to this machine (`LOOPBACK_SOURCES`)."""
    hosts = LOOPBACK_SOURCES.num_addresses - 2
    return str(LOOPBACK_SOURCES.network_address + 1 + secrets.randbelow(hosts))


@contextmanager
def open_relay(allowed: AllowList, on_refusal: Callable[[Refusal], None] | None = None) -> Iterator[EgressRelay]:
    relay = EgressRelay(allowed, on_refusal)
    try:
        yield relay
    finally:
        relay.close()


__all__ = [
    "AllowList",
    "EgressMount",
    "EgressRelay",
    "Endpoint",
    "Refusal",
    "allow_list",
    "open_relay",
]
