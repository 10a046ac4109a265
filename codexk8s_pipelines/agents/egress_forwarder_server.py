"""Inside the agent's sandbox: the egress forwarder's server process (started by `egress_forwarder.py`).

    python3 -I -S server.py <relay socket> <fd:port,fd:-,...>

It serves the listeners its launcher opened and handed down (`fd:port`; port `-` is the HTTP proxy), on the
namespace's own loopback:
- an HTTP proxy (CONNECT for HTTPS, absolute-form requests for plain HTTP) for HTTPS_PROXY/HTTP_PROXY/ALL_PROXY;
- a plain TCP listener on each allow-listed loopback port, at the same number as outside.
Every connection asks the runner's relay (a Unix socket): `CONNECT host port`; a refusal becomes an HTTP 403 with
the relay's reason (or a closed connection for a raw forward), never a hang. It lives until the sandbox ends.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
from urllib.parse import urlsplit

RELAY_TIMEOUT_SECONDS = 30.0
HEAD_TIMEOUT_SECONDS = 30.0
MAX_HEAD_BYTES = 65536


def ask_relay(relay_path: str, host: str, port: int) -> tuple[socket.socket | None, str]:
    """A socket spliced to host:port by the relay, or None and the relay's reason."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(RELAY_TIMEOUT_SECONDS)
    try:
        sock.connect(relay_path)
        sock.sendall(f"CONNECT {host} {port}\n".encode())
        reply = read_line(sock, 4096)
    except OSError as exc:
        sock.close()
        return None, f"FAILED the egress relay is not reachable: {exc}"
    text = reply.decode("utf-8", "replace").strip()
    if text != "OK":
        sock.close()
        return None, text or "FAILED the egress relay closed the connection"
    sock.settimeout(None)
    return sock, "OK"


def read_line(sock: socket.socket, limit: int) -> bytes:
    """Bytes up to and including a newline (at most `limit`, less when the peer closes), read one at a time so that
    nothing after the line is consumed."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both sides are done (a half-close is passed on); poll, so any fd number works."""
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    poller = select.poll()
    for fd in peers:
        poller.register(fd, select.POLLIN)
    reading = set(peers)
    while reading:
        for fd, _events in poller.poll():
            if fd not in reading:
                continue
            src, dst = peers[fd]
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data:
                try:
                    dst.sendall(data)
                except OSError:
                    return
            else:
                reading.discard(fd)
                poller.unregister(fd)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)


def _respond(client: socket.socket, code: int, reason: str, text: str) -> None:
    body = (text + "\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Codexk8s-Egress: {reason}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        client.sendall(head.encode() + body)


def _refusal_response(client: socket.socket, reply: str) -> None:
    verdict, _, why = reply.partition(" ")
    if verdict == "REFUSED":
        _respond(client, 403, "Forbidden", f"codex-k8s egress: refused: {why}")
    else:
        _respond(client, 502, "Bad Gateway", f"codex-k8s egress: {why or reply}")


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    client.settimeout(HEAD_TIMEOUT_SECONDS)
    while b"\r\n\r\n" not in data and len(data) < MAX_HEAD_BYTES:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    client.settimeout(None)
    head, sep, rest = data.partition(b"\r\n\r\n")
    return (head, rest) if sep else (b"", b"")


def _origin_form_head(head: bytes, method: str, path: str, version: str) -> bytes:
    """The request line in origin form, proxy headers dropped, and one request per connection (so a keep-alive
    connection cannot carry a second request to another destination); an `Upgrade` (a websocket) keeps its
    `Connection` header, since after it no HTTP request follows on that connection anyway."""
    lines = head.split(b"\r\n")[1:]
    upgrade = any(line.lower().startswith(b"upgrade:") for line in lines)
    dropped = (b"proxy-connection:", b"proxy-authorization:") + (() if upgrade else (b"connection:",))
    kept = [line for line in lines if not line.lower().startswith(dropped)]
    first = f"{method} {path} {version}".encode()
    return b"\r\n".join([first, *kept, *([] if upgrade else [b"Connection: close"])]) + b"\r\n\r\n"


def serve_proxy(client: socket.socket, relay_path: str) -> None:
    head, rest = _read_head(client)
    words = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(words) != 3:
        _respond(client, 400, "Bad Request", "codex-k8s egress: not an HTTP proxy request")
        return
    method, target, version = words
    if method.upper() == "CONNECT":
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            _respond(client, 400, "Bad Request", f"codex-k8s egress: CONNECT needs host:port, got {target}")
            return
        upstream, reply = ask_relay(relay_path, host, int(port))
        if upstream is None:
            _refusal_response(client, reply)
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
    else:
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            _respond(client, 400, "Bad Request", f"codex-k8s egress: expected http://host/path, got {target[:200]}")
            return
        upstream, reply = ask_relay(relay_path, url.hostname, url.port or 80)
        if upstream is None:
            _refusal_response(client, reply)
            return
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        upstream.sendall(_origin_form_head(head, method, path, version) + rest)
    try:
        splice(client, upstream)
    finally:
        upstream.close()


def serve_forward(client: socket.socket, relay_path: str, port: int) -> None:
    upstream, _reply = ask_relay(relay_path, "127.0.0.1", port)
    if upstream is None:
        return  # the client sees the connection closed at once
    try:
        splice(client, upstream)
    finally:
        upstream.close()


def _handle(client: socket.socket, relay_path: str, port: int | None) -> None:
    try:
        if port is None:
            serve_proxy(client, relay_path)
        else:
            serve_forward(client, relay_path, port)
    except OSError:
        pass
    finally:
        client.close()


def _accept_loop(listener: socket.socket, relay_path: str, port: int | None) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_handle, args=(client, relay_path, port), daemon=True).start()


def serve(relay_path: str, spec: str) -> int:
    """Accept on the inherited listeners (`fd:port`, port `-` for the proxy) until the sandbox ends."""
    threads = []
    for item in spec.split(","):
        fd, _, port = item.partition(":")
        listener = socket.socket(fileno=int(fd))
        target = None if port == "-" else int(port)
        threads.append(threading.Thread(target=_accept_loop, args=(listener, relay_path, target), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2]))
