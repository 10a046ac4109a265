"""The local agent sandbox: bubblewrap (`bwrap`) namespaces, a process cap and a memory cap around the agent.

Why: the agent is untrusted code. Without a sandbox it can read the runner's environment through
`/proc/$PPID/environ`, leave a double-forked daemon that outlives the process-group kill and rewrites the
checkout after the runner verified it, and fork or allocate until the machine falls over. Inside the sandbox:

- own user, PID, mount, IPC, UTS and (when possible) cgroup namespaces; the agent is uid/gid 1000 inside, and its
  `/proc` shows only its own processes. bwrap's PID 1 ends when the agent's command ends, and the kernel then kills
  every process left in the namespace: nothing outlives the turn. `--die-with-parent` covers the runner dying;
- the file system: the host's top-level directories read-only, minus what is the platform's (the runner's home,
  the platform state directory with the run files and the embedded database, the runner's git directory, the run
  directory): those are empty tmpfs mounts. A private `/tmp` and `HOME`; the workspace is the one writable host
  path. Absolute paths on the agent's command line (its script, a prompt file) and its interpreter's installation
  are bound read-only so that it can start. Every tmpfs has a size (they live in the host's memory);
- a process cap (a pids cgroup, else RLIMIT_NPROC when the runner is not root; as root, where RLIMIT_NPROC does not
  apply, no cgroup means no sandbox) and a per-process data cap (RLIMIT_DATA);
- its own network namespace: only its own loopback. With `SandboxPlan.egress` (egress.py) the runner's relay socket
  is bound in read-only and a forwarder starts before the agent (`sandboxed_argv`), giving it an HTTP(S) proxy and
  its allow-listed loopback ports; nothing else of the host's network (the Dagster UI, other loopback services, the
  internet) is reachable.

Where the sandbox cannot be made, `SandboxUnavailable` says what is missing and the run is a `failed_precondition`.
`CODEXK8S_UNSAFE_NO_AGENT_SANDBOX=1` runs the agent bare (every boundary above gone); the runner logs it loudly.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..cgroups import CGROUP_ROOT, own_cgroups
from .egress import INSIDE_DIR as EGRESS_INSIDE_DIR
from .egress import EgressMount

BWRAP_ENV_VAR = settings.BWRAP_VAR
OPT_OUT_ENV_VAR = settings.UNSAFE_NO_AGENT_SANDBOX_VAR
AGENT_UID = 1000
AGENT_GID = 1000
AGENT_HOME = "/home/agent"
DEFAULT_MAX_PROCESSES = 512
# Every tmpfs of the sandbox is the agent's (uid 1000 owns it) and lives in the host's memory, outside the agent's
# per-process data cap. Unsized, each may take half the machine's memory: an agent filled `/tmp` with 12 GB here,
# and two such mounts are the whole 24 GB. Its scratch space (`/tmp`, an unbound HOME) holds at most half its memory
# cap each (SCRATCH_BYTES without one); `/dev/shm` (POSIX shared memory, browsers' renderers) at most SHM_BYTES of
# that; the mounts that only hide something, MASK_BYTES. bwrap's `/dev` cannot be sized: it is made read-only once
# its devices are in (writing to a device is not writing to the mount).
SCRATCH_BYTES = 1024**3
SHM_BYTES = 256 * 1024**2
MASK_BYTES = 64 * 1024
# Host top-level directories never shown to the agent (kernel views, other users' homes, runtime sockets).
_NEVER_BOUND = frozenset({"proc", "dev", "sys", "tmp", "run", "home", "root", "mnt", "media", "lost+found", "var"})
_TRUE = {"1", "true", "yes", "on"}


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made here; the message names what is missing (a `failed_precondition`)."""


def opted_out(environ: Mapping[str, str]) -> bool:
    return environ.get(OPT_OUT_ENV_VAR, "").strip().lower() in _TRUE


def bwrap_binary(environ: Mapping[str, str]) -> str | None:
    return environ.get(BWRAP_ENV_VAR) or shutil.which("bwrap")


@dataclass(frozen=True)
class SandboxPlan:
    """What the agent may see and use; paths are absolute host paths, bound at the same place inside."""

    workspace: Path
    home: Path | None = None  # bound read-write at AGENT_HOME (agent config, kept sessions); None: an empty tmpfs
    hide: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    memory_bytes: int | None = None
    max_processes: int = DEFAULT_MAX_PROCESSES
    # False: its own network namespace, only its own loopback; what it may reach comes through `egress` (egress.py).
    share_net: bool = False
    egress: EgressMount | None = None


def resolve_executable(executable: str, path_env: str) -> str | None:
    """Where `executable` is: itself when it is a path, else its first match on `path_env` (None: not found)."""
    return executable if os.sep in executable else shutil.which(executable, path=path_env)


def _interpreter_prefix(found: str | None) -> Path | None:
    """`<prefix>` of the resolved `<prefix>/bin/<exe>`: an interpreter needs its library directory as well."""
    if not found:
        return None
    real = Path(found).resolve()
    return real.parent.parent if real.parent.name == "bin" else real.parent


def _shebang_interpreter(found: str | None) -> str | None:
    """The interpreter named on the `#!` line of the script at `found` (an absolute path), or None for a binary."""
    try:
        with open(found or "", "rb") as handle:
            first = handle.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return words[0] if words and words[0].startswith("/") else None


def command_paths(command: Sequence[str], path_env: str) -> list[Path]:
    """Host paths the agent needs to start: its interpreter's installation and absolute paths in its arguments."""
    paths: list[Path] = []
    found = resolve_executable(command[0], path_env)  # the one PATH lookup
    prefix = _interpreter_prefix(found)
    if prefix is not None:
        paths.append(prefix)
    if os.sep in command[0]:
        paths.append(Path(command[0]))  # the venv's symlink itself, besides where it points
    elif found is not None and Path(found).is_symlink():
        # Found through PATH as a link into its installation (`.tools/bin/codex` → node_modules): the directory
        # of links, so that the name resolves inside as outside (a checkout under /tmp is not shown otherwise).
        paths.append(Path(found).parent)
    real = Path(found).resolve() if found else None
    modules = next((p for p in real.parents if p.name == "node_modules"), None) if real is not None else None
    if modules is not None:
        paths.append(modules)  # an npm agent's launcher finds its platform binary in a package beside its own
    interpreter = _shebang_interpreter(found)  # a script agent (aider): its Python too
    if interpreter is not None:
        paths += [p for p in (_interpreter_prefix(interpreter), Path(interpreter)) if p is not None]
    for arg in command[1:]:
        candidate = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if candidate.startswith("/") and os.path.exists(candidate):
            paths.append(Path(candidate))
    return paths


def bwrap_args(plan: SandboxPlan, command: Sequence[str], path_env: str) -> list[str]:
    """The bwrap argument list (without the binary) that runs `command` under `plan`. Pure apart from listing `/`."""
    args = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(AGENT_UID),
        "--gid",
        str(AGENT_GID),
        "--hostname",
        "codexk8s-agent",
    ]
    if not plan.share_net:
        args.append("--unshare-net")
    extra_paths: list[Path] = []
    if plan.egress is not None:
        extra_paths.append(Path(plan.egress.python))
        prefix = _interpreter_prefix(resolve_executable(plan.egress.python, path_env))
        if prefix is not None:
            extra_paths.append(prefix)
        for name, value in plan.egress.proxy_env().items():
            args += ["--setenv", name, value]
    args += host_root_args(_NEVER_BOUND)
    scratch_bytes = plan.memory_bytes // 2 if plan.memory_bytes else SCRATCH_BYTES
    scratch = ["--size", str(scratch_bytes), "--tmpfs"]
    mask = ["--size", str(MASK_BYTES), "--tmpfs"]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(min(SHM_BYTES, scratch_bytes)), "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev", *scratch, "/tmp"]
    args += ["--bind", str(plan.home), AGENT_HOME] if plan.home is not None else [*scratch, AGENT_HOME]
    for private in _private_system_paths():
        args += [*mask, private] if os.path.isdir(private) else ["--ro-bind", "/dev/null", private]
    workspace = plan.workspace.resolve()
    hidden = [h for h in plan.hide if h.exists() and not _inside(h, workspace)]
    for path in hidden:
        args += [*mask, str(path)]
    bound: set[str] = set()
    wanted = [*plan.read_only, *command_paths(command, path_env), *extra_paths]
    for path in sorted(wanted, key=lambda p: len(p.parts)):  # a directory before what lies in it
        if not path.exists() or _inside(path, workspace) or any(path.is_relative_to(b) for b in bound):
            continue  # lies (as written, not resolved) in a directory bound already: no second mount can go there
        parts = path.parts
        shown = len(parts) > 1 and parts[1] not in _NEVER_BOUND and not any(path.is_relative_to(h) for h in hidden)
        if not shown:  # under a hidden or unbound directory: bring just this path back, read-only
            args += ["--ro-bind", str(path), str(path)]
            bound.add(str(path))
    args += ["--bind", str(workspace), str(workspace), "--chdir", str(workspace)]
    if plan.egress is not None:  # after every tmpfs: the relay's socket and the forwarder, read-only
        args += ["--ro-bind", str(plan.egress.host_dir), EGRESS_INSIDE_DIR]
    return args


def sandboxed_argv(bwrap: str, plan: SandboxPlan, command: Sequence[str], path_env: str) -> list[str]:
    """The full argv that runs `command` in the sandbox: bwrap, its arguments, and with an egress relay the
    forwarder (egress_forwarder.py), which opens the agent's way out and then becomes the agent (`exec`)."""
    inner = list(command)
    if plan.egress is not None:
        inner = [*plan.egress.forwarder_argv(), "--", *inner]
    return [bwrap, *bwrap_args(plan, command, path_env), "--", *inner]


@functools.cache
def _private_system_paths(root: str = "/etc") -> tuple[str, ...]:
    """Files and directories under /etc that are not world-readable (`shadow`, ssh host keys, sudoers.d...).

    The agent may map to the runner's own uid outside (root, when the runner is root): what the system keeps from
    ordinary users is kept from the agent as well.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if not stat.S_ISLNK(st.st_mode) and (st.st_mode & 0o005) != 0o005:
                found.append(full)
                dirnames.remove(name)
        for name in filenames:
            full = os.path.join(dirpath, name)
            with suppress(OSError):
                st = os.lstat(full)
                if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH:
                    found.append(full)
    return tuple(sorted(found))


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ process cap


@dataclass
class ProcessCap:
    """A pids cgroup for one agent run (or RLIMIT_NPROC), plus the per-process memory cap."""

    max_processes: int
    memory_bytes: int | None
    cgroup: Path | None = None
    notes: list[str] = field(default_factory=list)

    def preexec(self) -> Callable[[], None]:
        cgroup_procs = None if self.cgroup is None else str(self.cgroup / "cgroup.procs")
        use_nproc = self.cgroup is None
        max_processes, memory = self.max_processes, self.memory_bytes

        def _apply() -> None:  # in the child, between fork and exec: no locks, no logging
            if cgroup_procs is not None:
                with open(cgroup_procs, "w") as handle:
                    handle.write("0")
            if use_nproc:
                resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
            if memory is not None:
                resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return _apply

    def remaining(self) -> list[int]:
        """PIDs still in the run's cgroup (none once the sandbox is gone); empty without a cgroup."""
        if self.cgroup is None:
            return []
        try:
            return [int(p) for p in (self.cgroup / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_remaining(self, wait_seconds: float = 5.0, settle_seconds: float = 0.5) -> list[int]:
        """SIGKILL whatever is left in the cgroup; returns what was found left (should be nothing).

        The namespace's other processes (the egress forwarder) are being torn down by the kernel as bwrap's PID 1
        ends: they get `settle_seconds` to leave the cgroup before they count as left behind."""
        settle = time.monotonic() + settle_seconds
        found = left = self.remaining()
        while left and time.monotonic() < settle:
            time.sleep(0.01)
            found = left = self.remaining()
        deadline = time.monotonic() + wait_seconds
        while left and time.monotonic() < deadline:
            for pid in left:
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, 9)
            time.sleep(0.01)
            left = self.remaining()
        return found


def host_root_args(skip: frozenset[str] | set[str]) -> list[str]:
    """bwrap arguments that show the host's top-level directories read-only in place (a symlink as the same symlink:
    /bin -> usr/bin), except those named in `skip`."""
    args: list[str] = []
    for entry in sorted(os.listdir("/")):
        host = Path("/") / entry
        if entry in skip:
            continue
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    return args


def _own_pids_cgroup() -> Path | None:
    """The pids-controller directory of this process's cgroup (v1 `pids` hierarchy, or v2 with pids enabled)."""
    groups = own_cgroups()
    if groups is None:
        return None
    for group in groups:
        if "pids" in group.controllers:
            base = CGROUP_ROOT / "pids" / group.path.lstrip("/")
            return base if base.is_dir() else None
    for group in groups:
        if group.unified:
            base = CGROUP_ROOT / group.path.lstrip("/")
            try:
                if "pids" in (CGROUP_ROOT / "cgroup.controllers").read_text().split():
                    return base
            except OSError:
                return None
    return None


@contextmanager
def process_cap(max_processes: int, memory_bytes: int | None) -> Iterator[ProcessCap]:
    """A fresh pids cgroup limited to `max_processes` for the duration, removed afterwards; RLIMIT_NPROC otherwise.

    Raises SandboxUnavailable as root without a usable pids cgroup: root is exempt from RLIMIT_NPROC, so a fork
    bomb would take the machine's whole PID space.
    """
    cap = ProcessCap(max_processes, memory_bytes)
    base = _own_pids_cgroup()
    group: Path | None = None
    if base is not None:
        candidate = base / f"codexk8s-agent-{uuid.uuid4().hex[:12]}"
        try:
            candidate.mkdir()
            (candidate / "pids.max").write_text(str(max_processes))
            group = candidate
        except OSError as exc:
            cap.notes.append(f"pids cgroup under {base} not usable: {exc.strerror or exc}")
            with suppress(OSError):
                candidate.rmdir()
    if group is None and os.geteuid() == 0:
        raise SandboxUnavailable(
            "cannot cap the agent's processes: running as root (exempt from RLIMIT_NPROC) and no writable pids "
            "cgroup under /sys/fs/cgroup" + (f" ({cap.notes[-1]})" if cap.notes else "")
        )
    cap.cgroup = group
    try:
        yield cap
    finally:
        if group is not None:
            cap.kill_remaining()
            for _ in range(400):  # the kernel empties the cgroup a moment after the namespace's last process
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.005)


# ------------------------------------------------------------------------------------------------ probing

_PROBED: dict[str, str | None] = {}


def probe(bwrap: str | None) -> None:
    """Raise SandboxUnavailable unless `bwrap` can create the namespaces here (checked once per process)."""
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: install the Debian package 'bubblewrap', or set "
            f"{BWRAP_ENV_VAR} to its path"
        )
    if bwrap not in _PROBED:
        args = [bwrap, "--unshare-user", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/"]
        args += ["--proc", "/proc", "--dev", "/dev", "--uid", str(AGENT_UID), "--", "true"]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
            _PROBED[bwrap] = None if proc.returncode == 0 else (proc.stderr.strip() or f"exit {proc.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            _PROBED[bwrap] = str(exc)
    problem = _PROBED[bwrap]
    if problem is not None:
        raise SandboxUnavailable(
            f"bubblewrap at {bwrap} cannot create user/PID/mount namespaces here: {problem} "
            "(unprivileged user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone / "
            "user.max_user_namespaces)"
        )


__all__ = [
    "AGENT_HOME",
    "OPT_OUT_ENV_VAR",
    "ProcessCap",
    "SandboxPlan",
    "SandboxUnavailable",
    "bwrap_args",
    "bwrap_binary",
    "opted_out",
    "probe",
    "process_cap",
    "sandboxed_argv",
]
