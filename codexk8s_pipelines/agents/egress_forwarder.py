"""Inside the agent's sandbox: the only way out of its network namespace, started before the agent.

    python3 -I -S forwarder.py <relay socket> <proxy port> <port,port,...> -- <agent argv...>

Why this shape: it runs under the host's python3 inside bubblewrap, on the agent's start-up path, so it does as
little as it can there (no import beyond `os`, `sys` and `_socket`): it opens the listeners on the namespace's
loopback (the HTTP proxy, and each allow-listed loopback port at the same number as outside), double-forks the
server (`egress_forwarder_server.py`) with those listeners, and `exec`s the agent in its own place.
Once the listeners exist the agent can connect (the server accepts them when it is up), so there is no race; the
agent's exit code, stdin and stdout are untouched; the server's command line does not carry the agent's; and the
server dies with the sandbox (bubblewrap's PID 1 ends when the agent ends, and the kernel kills the rest).
"""

from __future__ import annotations

import os
import sys

SERVER_NAME = "server.py"  # beside this file, where the runner's relay directory is mounted


def _listen(port: int) -> list[int]:
    """Listening fds on 127.0.0.1:<port>, and [::1]:<port> where the namespace has IPv6 (`localhost` as ::1)."""
    import _socket

    found = []
    for family, address in ((_socket.AF_INET, "127.0.0.1"), (_socket.AF_INET6, "::1")):
        try:
            sock = _socket.socket(family, _socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if family == _socket.AF_INET6:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.listen(64)
        except OSError:
            sock.close()
            if family == _socket.AF_INET:
                raise
            continue
        found.append(sock.detach())
    return found


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 3 or len(argv) < 5:
        sys.stderr.write("usage: forwarder.py <relay socket> <proxy port> <ports,...> -- <command...>\n")
        return 127
    relay_path, proxy_port = argv[0], int(argv[1])
    forwards = [int(p) for p in argv[2].split(",") if p]
    command = argv[4:]
    listeners = [(fd, "-") for fd in _listen(proxy_port)]
    for port in forwards:
        listeners += [(fd, str(port)) for fd in _listen(port)]
    child = os.fork()
    if child == 0:  # forks again and ends: the server is bubblewrap's init's child, never one the agent may wait for
        if os.fork() == 0:  # the server, without the agent's std streams: the runner's pipes close with the agent
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            for fd, _ in listeners:
                os.set_inheritable(fd, True)
            server = os.path.join(os.path.dirname(os.path.abspath(__file__)), SERVER_NAME)
            spec = ",".join(f"{fd}:{port}" for fd, port in listeners)
            os.execv(sys.executable, [sys.executable, "-I", "-S", server, relay_path, spec])
        os._exit(0)
    os.waitpid(child, 0)
    for fd, _ in listeners:
        os.close(fd)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"codex-k8s egress forwarder: cannot start {command[0]}: {exc}\n")
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
