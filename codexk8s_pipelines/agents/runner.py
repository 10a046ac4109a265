"""Run one coding agent in a checkout and hand back a verdict: the process both Dagster and a pod launch.

    python -m codexk8s_pipelines.agents.runner --spec spec.json [--result result.json]

Order of business: hold the working folder (`workdir_lock.py`: a second run of the branch stops with
`workdir_busy` instead of emptying it), prepare the checkout (the runner's git directory outside the worktree), run
the agent inside the sandbox (`sandbox.py`: own namespaces, an allow-listed environment, nothing outlives it), read
the result file it wrote, and once every agent process is gone build the commit itself, check the write scope on
that commit's tree diff against the start by content (`domain.write_scope.tree_violations`), and push exactly that
commit by SHA (`verified_push.py`). Nothing is pushed unless the agent exited 0 within its timeout, every change is
in scope, and no changed file's name or content holds a secret of the run (`SECRET_IN_FILE`: the agent's model key,
the token), and a file the repository stores through Git LFS stays an LFS pointer (`LFS_NOT_POINTER`).
The agent's secrets are redacted from everything reported (one `Scrubber` for the run).

Reporting goes through Dagster Pipes when Pipes launched us (status custom messages per phase and one final
`result` message), and to plain stdout otherwise; `--result` additionally writes the result JSON to a file.
Exit code: 0 succeeded, 2 failed_precondition, 1 anything else (failed, timed_out, cancelled).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import IO, Any

from .. import settings
from ..domain.stages import WriteScope
from ..domain.untrusted_data import UntrustedDataError, loads_json
from ..domain.write_scope import (
    MODE_EXECUTABLE,
    MODE_FILE,
    MODE_SYMLINK,
    SECRET_IN_FILE,
    Violation,
    lfs_violations,
    tree_violations,
)
from ..security.safe_files import UnsafeFile, read_untrusted_file
from . import egress
from . import sandbox as sb
from .agent_env import build_agent_env
from .agent_turn import AgentTurn
from .git_workspace import BranchPrecondition, Checkout, GitError, Scrubber
from .runner_spec import (
    AGENT_SECRET_PREFIX,
    TOKEN_ENV_VAR,
    RunnerResult,
    RunnerSpec,
    RunnerStatus,
    SpecError,
    load_spec,
)
from .verified_push import BranchMoved, RunnerRepository
from .workdir_lock import WorkdirBusy, workdir_lock

EXIT_CODES: dict[str, int] = {"succeeded": 0, "failed_precondition": 2}
KILL_GRACE_SECONDS = 5.0
OUTPUT_TAIL_LINES = 40
RESULT_FILE_MAX_BYTES = 1_000_000
PHASES = ("all", "prepare", "agent", "finish")
PR_SET_PDEATHSIG = 1  # prctl(2)
EGRESS_REFUSALS_REPORTED = 20  # destinations with a status line; the result lists every refused one


def exit_code_for(status: RunnerStatus | str) -> int:
    return EXIT_CODES.get(status, 1)


class Cancelled(BaseException):
    """SIGTERM/SIGINT arrived. A BaseException so no `except Exception` on the way swallows it."""


# ------------------------------------------------------------------------------------------------ reporting


class Reporter:
    """Status lines and the final result, through Dagster Pipes when it launched us, else plain stdout."""

    def __init__(self, pipes: Any | None, scrub: Scrubber) -> None:
        self._pipes = pipes
        self._scrub = scrub
        self._lock = threading.Lock()

    @property
    def scrub(self) -> Scrubber:
        """The redactor of every line, status and result: it learns the agent's secrets (`Scrubber.keep_out`)."""
        return self._scrub

    @classmethod
    def open(cls, scrub: Scrubber) -> Reporter:
        """Only open Pipes when launched by it: outside Pipes `open_dagster_pipes` warns and returns a mock."""
        from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

        pipes = open_dagster_pipes() if PipesEnvVarParamsLoader().is_dagster_pipes_process() else None
        return cls(pipes, scrub)

    @property
    def via_pipes(self) -> bool:
        return self._pipes is not None

    @property
    def run_id(self) -> str | None:
        """The Dagster run this runner works for, when Pipes launched it: named to a run that finds its folder held."""
        return str(self._pipes.run_id) if self._pipes is not None else None

    def line(self, text: str) -> None:
        """One line of output for people (agent output, runner notes); stdout in both modes."""
        with self._lock:
            sys.stdout.write(self._scrub(text.rstrip("\n")) + "\n")
            sys.stdout.flush()

    def status(self, phase: str, message: str, **details: Any) -> None:
        message = self._scrub(message)
        details = {key: _scrubbed(value, self._scrub) for key, value in details.items()}  # file names, hosts
        payload = {"type": "status", "phase": phase, "message": message, **details}
        if self._pipes is None:
            self.line(f"[runner] {phase}: {message}")
            return
        with self._lock:
            self._pipes.log.info(f"[runner] {phase}: {message}")
            self._pipes.report_custom_message(payload)

    def result(self, result: RunnerResult) -> None:
        payload = result.model_dump(mode="json")
        if self._pipes is None:
            self.line(f"[runner] result: {json.dumps(payload, sort_keys=True)}")
            return
        with self._lock:
            log = self._pipes.log.info if result.status == "succeeded" else self._pipes.log.error
            log(f"[runner] {result.status} ({result.reason}): {result.message}")
            self._pipes.report_custom_message({"type": "result", **payload})

    def close(self) -> None:
        if self._pipes is not None:
            self._pipes.close()


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` with every string in it (in lists and mappings too) through `scrub`: it leaves the process in logs,
    files and Dagster. A lone surrogate (a path that is not UTF-8, a `\udcff` escape in the agent's JSON) cannot be
    written as UTF-8, and the result file or the Pipes message would fail after a push: it is kept visible, escaped."""
    if isinstance(value, str):
        return scrub(value.encode("utf-8", "backslashreplace").decode("utf-8"))
    if isinstance(value, list | tuple):
        return [_scrubbed(v, scrub) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------------ signals


class CancelGuard:
    """Turns the first SIGTERM/SIGINT into `Cancelled` in the main thread; later ones are ignored.

    Raising (rather than setting a flag) also interrupts a git clone or fetch in progress, and the
    `finally` around the agent kills its process group on the way out.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.fired = False
        self._finalizing = False

    def install(self) -> CancelGuard:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def finalizing(self) -> None:
        """From here on the result is being written: a late signal must not interrupt that."""
        self._finalizing = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.fired or self._finalizing:
            return
        self.fired = True
        raise Cancelled(signal.Signals(signum).name)


# ------------------------------------------------------------------------------------------------ the agent


@dataclass
class AgentOutcome:
    exit_code: int | None
    timed_out: bool = False
    tail: list[str] = field(default_factory=list)


@dataclass
class AgentReport:
    """What the agent wrote into its result file; `problem` says why there is nothing usable."""

    summary: str | None = None
    status: str | None = None
    diagnosis: str | None = None
    next_step_hint: str | None = None
    problem: str | None = None


def kill_process_group(pgid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """TERM the whole group, give the leader a grace period, then KILL whatever of the group is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if proc is not None:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=KILL_GRACE_SECONDS)
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


def _pump(stream: IO[bytes], label: str, reporter: Reporter, tail: deque[str], turn: AgentTurn | None = None) -> None:
    for raw in iter(stream.readline, b""):
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        tail.append(text)
        try:
            shown = turn.line(text) if turn is not None else text  # JSON events in short form, the prompt not echoed
        except Exception as exc:  # a line no reader foresaw must not end the reading: the pipe would fill, unmetered
            shown = f"(a line of {len(text)} characters could not be read: {type(exc).__name__})"
        if shown is not None:
            reporter.line(f"[agent{label}] {shown}")
    stream.close()


@dataclass(frozen=True)
class AgentLaunch:
    """How the agent is started: bare (`bwrap` None, the loud opt-out) or inside bubblewrap with `plan`."""

    bwrap: str | None
    plan: sb.SandboxPlan | None
    cap: sb.ProcessCap | None = None


@dataclass
class AgentProcess:
    """The agent's process and the runner's ends of its output: `stdout` is a socket, not a pipe.

    Why a socket: the agent program's tool commands run as its user, and `/proc/<pid>/fd/1` of a pipe opens as that
    very pipe, for writing (a forged usage report) or for reading (a genuine report taken out before the runner
    reads it, and the run's cap with it). A socket cannot be opened through /proc (ENXIO): only a process that
    inherited the descriptor writes to it, and only the runner reads it. The agents report usage on stdout alone;
    stderr stays a pipe, so that a script's `echo ... > /dev/stderr` still works (`> /dev/stdout` by path does not:
    write to the descriptor, `>&1`). What a forger writes into stderr can only raise the count or end a capped run
    (`usage_meter`)."""

    proc: subprocess.Popen[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        """All of both outputs, once the agent has exited (as `Popen.communicate`), for a caller that does not
        stream them; both are read at once, so neither can fill while the other is waited for."""
        with ThreadPoolExecutor(2) as pool:
            outputs = [pool.submit(stream.read) for stream in (self.stdout, self.stderr)]
            self.proc.wait(timeout=timeout)
            out, err = (output.result(timeout=timeout) for output in outputs)
        for stream in (self.stdout, self.stderr):
            stream.close()
        return out, err


def launch_agent(
    command: Sequence[str], cwd: Path, env: Mapping[str, str], stdin: IO[bytes] | int, launch: AgentLaunch
) -> AgentProcess:
    """THE one place an agent command is started: in the sandbox (or bare, when opted out), in its own session.

    Every agent (scripted in tests, codex, claude, opencode, aider) goes through here, so the boundary is the same.
    """
    argv = list(command)
    found = sb.resolve_executable(argv[0], env.get("PATH", ""))
    if found is None or not os.access(found, os.X_OK):  # inside bwrap this would only be "exit 1"
        raise FileNotFoundError(argv[0])
    if launch.bwrap is not None and launch.plan is not None:
        path_env = env.get("PATH", "")
        argv = sb.sandboxed_argv(launch.bwrap, launch.plan, command, path_env)  # with the egress forwarder
    ours, theirs = socket.socketpair()
    for end in (ours, theirs):
        end.setblocking(True)  # whatever a default timeout says: the agent inherits its end as its stdout
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=launch.cap.preexec() if launch.cap is not None else None,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # the agent holds it now: the end of its output is when its side closes
    ours.shutdown(socket.SHUT_WR)  # the runner only reads
    assert proc.stderr is not None
    return AgentProcess(proc, os.fdopen(ours.detach(), "rb"), proc.stderr)


@contextmanager
def _agent_process(
    command: Sequence[str], cwd: Path, env: Mapping[str, str], stdin: IO[bytes] | int, launch: AgentLaunch
) -> Iterator[AgentProcess]:
    """The agent, killed with its whole session (and so its sandbox) whatever way we leave."""
    agent = launch_agent(command, cwd, env, stdin, launch)
    proc = agent.proc
    try:
        yield agent
    finally:
        kill_process_group(proc.pid, proc if proc.poll() is None else None)


def run_agent(
    spec: RunnerSpec,
    cwd: Path,
    env: Mapping[str, str],
    reporter: Reporter,
    launch: AgentLaunch,
    turn: AgentTurn | None = None,
) -> AgentOutcome:
    """Run the agent to completion or timeout, streaming its output; `Cancelled` passes through after the kill.

    `turn` (agent_turn.py) sees every line, and may stop an agent stuck on an unreachable model endpoint."""
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    with _stdin_for(spec) as stdin, _agent_process(spec.command, cwd, env, stdin, launch) as agent:
        proc = agent.proc
        if turn is not None:
            turn.started(lambda: kill_process_group(proc.pid))
        pumps = [
            threading.Thread(target=_pump, args=(agent.stdout, "", reporter, tail, turn), daemon=True),
            threading.Thread(target=_pump, args=(agent.stderr, ":stderr", reporter, tail, turn), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        try:
            exit_code: int | None = proc.wait(timeout=spec.timeout_seconds)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_process_group(proc.pid, proc)
            exit_code, timed_out = None, True
    for pump in pumps:  # a daemon that escaped the group may hold the pipes open: do not wait for it forever
        pump.join(timeout=KILL_GRACE_SECONDS)
    return AgentOutcome(exit_code, timed_out, list(tail))


@contextmanager
def _stdin_for(spec: RunnerSpec) -> Iterator[IO[bytes] | int]:
    if spec.prompt_via != "stdin":
        yield subprocess.DEVNULL
        return
    with open(spec.prompt_file, "rb") as handle:
        yield handle


def read_agent_report(root: Path, relative: str) -> AgentReport:
    """The agent's result file, tolerating its absence or garbage: a bad report is a diagnosis, not a crash."""
    try:
        raw = read_untrusted_file(root, relative, max_bytes=RESULT_FILE_MAX_BYTES)
    except FileNotFoundError:
        return AgentReport(problem=f"the agent wrote no result file ({PurePosixPath(relative).name} missing)")
    except (OSError, UnsafeFile) as exc:  # a link, a FIFO, a folder, too large: the agent made it so
        return AgentReport(problem=f"the agent's result file cannot be read: {exc}")
    try:
        data = loads_json(raw, "the agent's result file")
    except UntrustedDataError as exc:  # the agent wrote it: not JSON, not UTF-8, nested too deeply
        return AgentReport(problem=f"the agent's result file is not valid JSON: {exc.detail}")
    if not isinstance(data, dict):
        return AgentReport(problem="the agent's result file does not hold a JSON object")

    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    return AgentReport(text("summary"), text("status"), text("diagnosis"), text("next_step_hint"))


# ------------------------------------------------------------------------------------------------ one run


class AgentRun:
    """One spec from checkout to push; every exit path goes through `_finish` so results look alike."""

    def __init__(
        self,
        spec: RunnerSpec,
        reporter: Reporter,
        token: str | None,
        environ: Mapping[str, str] | None = None,
        private_dirs: Sequence[Path] = (),
    ) -> None:
        self.spec = spec
        self.private_dirs = tuple(private_dirs)  # e.g. where the spec file is: hidden from the agent
        self.reporter = reporter
        self.environ = dict(os.environ if environ is None else environ)
        self.started = time.monotonic()
        self.fields: dict[str, Any] = {}
        self.turn: AgentTurn | None = None  # the real agent program's side of the turn (agent_turn.py)
        self._report: AgentReport | None = None
        self.repo = RunnerRepository(
            spec.workdir,
            spec.remote_url,
            git_dir=spec.git_dir,
            token=token,
            timeout_seconds=spec.git_timeout_seconds,
            scrub=reporter.scrub,  # one redactor for the run: what it learns, the push's secret check knows too
        )
        # A pod's runner containers get the agent's secrets under AGENT_SECRET_PREFIX names (never passed on to an
        # agent): the finish step redacts them and refuses a push that holds one, as the local runner does.
        self._keep_out(v for k, v in self.environ.items() if k.startswith(AGENT_SECRET_PREFIX))

    def _keep_out(self, values: Iterable[str]) -> None:
        """Secrets of the agent (its model key): redacted from everything reported, and never pushed."""
        self.reporter.scrub.keep_out(values)

    def run(self, phase: str = "all") -> RunnerResult:
        """The whole run ("all"), or one of the three steps of a Kubernetes pod: "prepare" (the checkout container,
        with the token), "agent" (the agent's own container, without it), "finish" (verify and push)."""
        try:
            if phase == "prepare":
                return self._prepare_phase()
            if phase == "agent":
                return self._agent_phase()
            if phase == "finish":
                return self._finish_phase()
            return self._run()
        except Cancelled as exc:
            return self._finish("cancelled", "cancelled", f"the runner received {exc}; the agent was stopped")
        except sb.SandboxUnavailable as exc:
            return self._finish("failed_precondition", "sandbox_unavailable", str(exc))
        except WorkdirBusy as exc:
            return self._finish("failed_precondition", "workdir_busy", str(exc))
        except GitError as exc:
            return self._finish("failed", exc.reason, str(exc))
        except Exception as exc:  # the verdict must still be reported, whatever broke
            return self._finish("failed", "runner_error", f"{type(exc).__name__}: {exc}")

    def _run(self) -> RunnerResult:
        spec = self.spec
        if not Path(spec.prompt_file).is_file():
            return self._finish("failed_precondition", "prompt_not_found", f"prompt file {spec.prompt_file} missing")
        bwrap = self._sandbox_binary()
        # The working folder is this run's from before its checkout empties it until the verdict (workdir_lock.py).
        # Not in a pod's steps: there the folder is the pod's own volume, which no other run reaches.
        with workdir_lock(self.repo.worktree, spec.branch, spec.mode, self.reporter.run_id):
            checkout = self._prepare()
            if isinstance(checkout, RunnerResult):
                return checkout
            outcome = self._launch(checkout.path, bwrap)
            return self._judge(checkout, outcome)

    def _prepare(self) -> Checkout | RunnerResult:
        spec = self.spec
        closed = spec.closed_pull
        try:
            checkout = self.repo.prepare(
                spec.branch, spec.base_branch, spec.mode, spec.pull_ref, pull_ref_fallback=spec.pull_ref_fallback,
                closed_pull=closed.number if closed is not None else None,
            )  # fmt: skip
        except BranchPrecondition as exc:
            return self._finish("failed_precondition", exc.reason, str(exc))
        except GitError as exc:
            return self._finish("failed", "workspace_error", str(exc))
        self.reporter.status(
            "workspace_ready",
            f"{checkout.local_branch} at {checkout.start_commit[:12]} from {checkout.source_ref}",
            branch=checkout.local_branch,
            source_ref=checkout.source_ref,
            start_commit=checkout.start_commit,
        )
        if closed is not None and checkout.lease is not None:
            self.reporter.status(
                "branch_restarted",
                f"{closed.describe()}: {spec.branch} starts again from {checkout.source_ref}; its former head "
                f"{checkout.lease[:12]} stays at {closed.kept_at}",
                replaces=checkout.lease,
                kept_at=closed.kept_at,
            )
        return checkout

    def _judge(self, checkout: Checkout, outcome: AgentOutcome | None) -> RunnerResult:
        spec = self.spec
        if outcome is None:
            return self._finish(
                "failed",
                "agent_not_found",
                f"cannot start the agent command {spec.command[0]!r}: not on the runner's PATH, or not executable; "
                "locally `make agents` installs codex, claude, opencode and aider into .tools/bin, which `make run` "
                "puts first on its PATH (restart it); or set the agent's command in the catalog "
                f"(${settings.AGENT_CATALOG_VAR})",
            )
        self._take_report(checkout.path, outcome)
        stopped = self._stopped_by_meter(checkout)
        if stopped is not None:
            return stopped
        unreachable = self.turn is not None and self.turn.unreachable is not None
        if outcome.timed_out and not unreachable:
            return self._finish("timed_out", "agent_timeout", f"the agent ran over {spec.timeout_seconds}s")
        if self.turn is not None and self.turn.kind != "custom" and (unreachable or outcome.exit_code != 0):
            return self._verdict(outcome.exit_code, []) or self._finish("failed", "agent_exit_code", "")
        if outcome.exit_code != 0:
            last = " | ".join(outcome.tail[-5:])
            return self._finish("failed", "agent_exit_code", f"the agent exited {outcome.exit_code}; last: {last}")
        return self._verify_and_push(checkout)

    def _stopped_by_meter(self, checkout: Checkout) -> RunnerResult | None:
        """The run's cap passed (`budget_exceeded`) or a loop (`agent_loop`): the agent was ended, and nothing is
        pushed unless `budgets.push_partial_work` says so (then the partial work goes through the same checks)."""
        stop = self.turn.stop if self.turn is not None else None
        if stop is None:
            return None
        self.reporter.status("agent_stopped", f"{stop.reason}: {stop.detail}", reason=stop.reason)
        guard = self.spec.spend
        if stop.reason == "budget_exceeded" and guard is not None and guard.push_partial_work:
            partial = self._verify_and_push(checkout)
            what = f"partial work pushed ({(partial.commit or '')[:12]})" if partial.pushed else partial.message
            return self._finish("failed", stop.reason, f"{stop.detail}; the agent was stopped; {what}")
        return self._finish("failed", stop.reason, f"{stop.detail}; the agent was stopped and nothing was pushed")

    # ---------------------------------------------------------------- the three containers of a Kubernetes pod

    @property
    def _state_file(self) -> Path:
        return self.repo.git_dir / "codexk8s-state.json"  # the runner's volume: read-only for the agent

    @property
    def _outcome_file(self) -> Path:
        return self.repo.worktree.parent / "agent-outcome.json"  # the workspace volume, outside the checkout

    def _prepare_phase(self) -> RunnerResult:
        checkout = self._prepare()
        state: dict[str, Any] = {}
        if isinstance(checkout, RunnerResult):
            state["failed"] = checkout.model_dump(mode="json")
            result = checkout
        else:
            state["checkout"] = {
                "local_branch": checkout.local_branch,
                "source_ref": checkout.source_ref,
                "branch_on_remote": checkout.branch_on_remote,
                "start_commit": checkout.start_commit,
                "lease": checkout.lease,
            }
            result = self._finish("succeeded", "prepared", f"checkout at {checkout.start_commit[:12]}")
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps(state), encoding="utf-8")
        return result

    def _read_state(self) -> Checkout | RunnerResult:
        try:
            state = json.loads(self._state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return self._finish("failed", "workspace_error", f"the checkout step left no state: {exc}")
        if "failed" in state:
            return RunnerResult.model_validate(state["failed"])
        return Checkout(path=self.repo.worktree, **state["checkout"])

    def _agent_phase(self) -> RunnerResult:
        """In the agent's container: its own uid, no GitHub token, the container its boundary (nothing outlives it)."""
        checkout = self._read_state()
        if isinstance(checkout, RunnerResult):
            return checkout
        self._outcome_file.unlink(missing_ok=True)
        outcome = self._launch(checkout.path, None)
        record = None if outcome is None else {"exit_code": outcome.exit_code, "timed_out": outcome.timed_out,
                                               "tail": outcome.tail}  # fmt: skip
        if record is not None and self.turn is not None:  # the finish step reads the agent's own report
            record["lines"] = self.turn.handover_lines()  # the newest lines: the transcript and the diagnosis
            record["meter"] = self.turn.account().to_dict()  # the usage and stop of every line, not only those
        self._outcome_file.write_text(json.dumps({"outcome": record}), encoding="utf-8")
        return self._finish("succeeded", "agent_ran", "the agent's turn is over")

    def _finish_phase(self) -> RunnerResult:
        """In the runner's container, once the agent's container has ended: judge and push. The outcome file was
        written in the agent's container, so it is only believed about the agent's own failure."""
        checkout = self._read_state()
        if isinstance(checkout, RunnerResult):
            return checkout
        self.fields["sandboxed"] = True  # its own container, uid and process namespace
        try:
            handover = self._outcome_file
            raw = loads_json(
                read_untrusted_file(handover.parent, handover.name, max_bytes=1_000_000), "the agent's outcome file"
            )
            record = raw["outcome"]
            outcome = None if record is None else AgentOutcome(
                None if record["exit_code"] is None else int(record["exit_code"]), bool(record["timed_out"]),
                [str(line) for line in record["tail"]][-OUTPUT_TAIL_LINES:],
            )  # fmt: skip
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            OverflowError,
        ) as exc:  # the agent wrote it (UntrustedDataError)
            return self._finish("failed", "agent_no_outcome", f"the agent's container left no outcome: {exc}")
        if isinstance(record, dict) and self.spec.agent is not None:  # transcript and usage from its output
            self.turn = AgentTurn(self.spec.agent, self._bare_home())
            self.turn.lines = [str(line) for line in record.get("lines") or []]
            self.turn.metered(self.spec.spend)
            # The agent container's meter saw every line; the lines handed over are only the newest. Its account
            # (usage, stop) is taken, above a replay of the lines, which stays the fallback (agent_turn.take_over).
            self.turn.take_over(record.get("meter"))
            self.turn.finish()
            self.fields.update(self.turn.result_fields())
        return self._judge(checkout, outcome)

    # ---------------------------------------------------------------- the agent's turn

    def _sandbox_binary(self) -> str | None:
        """bwrap's path once it proved it works here; None only with the explicit, loudly logged opt-out."""
        if sb.opted_out(self.environ):
            warning = (
                f"{sb.OPT_OUT_ENV_VAR} is set: the agent runs WITHOUT a sandbox; it can read this runner's "
                "environment and files and leave processes behind. Never use this with untrusted input."
            )
            sys.stderr.write(f"[runner] WARNING: {warning}\n")
            self.reporter.status("sandbox_disabled", warning)
            self.fields["sandboxed"] = False
            return None
        bwrap = sb.bwrap_binary(self.environ)
        sb.probe(bwrap)
        self.fields["sandboxed"] = True
        return bwrap

    def _sandbox_plan(self, checkout: Path) -> sb.SandboxPlan:
        """What the agent may see: the checkout read-write, the prompt read-only; the platform's places hidden."""
        spec = self.spec
        hide = [self.repo.git_dir, settings.state_dir(), Path.home()]
        hide += [Path(self.environ[v]) for v in ("HOME", "DAGSTER_HOME") if self.environ.get(v)]
        hide += list(self.private_dirs)
        read_only = [Path(spec.prompt_file).resolve(), self.repo.git_dir / "objects"]
        return sb.SandboxPlan(
            workspace=checkout,
            home=self._bare_home(),
            hide=tuple(p.resolve() for p in hide),
            read_only=tuple(read_only),
            memory_bytes=spec.memory_bytes,
            max_processes=spec.max_processes,
        )

    # ---------------------------------------------------------------- egress (egress.py): the agent's network

    @contextmanager
    def _egress_relay(self, agent_env: Mapping[str, str]) -> Iterator[egress.EgressMount]:
        """The run's egress relay for the sandboxed agent, closed with its turn: the allow-list from the settings, a
        status line for each new refused destination (the first EGRESS_REFUSALS_REPORTED), and the refusals kept in
        the result by destination (`egress.refusals_listed`)."""
        allowed = egress.allow_list(self.spec.agent, agent_env, self.spec.egress_allow)
        shown = [str(e) for e in allowed.entries]
        self.reporter.status("egress", f"the agent may reach: {allowed.describe()}", allowed=shown)
        reported: set[str] = set()
        reporting = threading.Lock()  # the relay calls back from each connection's own thread

        def refused(refusal: egress.Refusal) -> None:
            # A status line for each new destination, not for each refusal: a flood of one junk destination must not
            # use up the lines before the attempt that matters.
            with reporting:
                if refusal.destination in reported or len(reported) > EGRESS_REFUSALS_REPORTED:
                    return
                reported.add(refusal.destination)
                if len(reported) > EGRESS_REFUSALS_REPORTED:
                    message = f"more than {EGRESS_REFUSALS_REPORTED} destinations refused; the result lists them"
                    self.reporter.status("egress_refused", message, destination="...")
                    return
                self.reporter.status("egress_refused", refusal.reason, destination=refusal.destination)

        with egress.open_relay(allowed, refused) as relay:
            try:
                yield relay.mount()
            finally:
                self.fields["egress_refusals"] = relay.refusals_listed()

    def _launch(self, checkout: Path, bwrap: str | None) -> AgentOutcome | None:
        """The agent's turn: in the sandbox (bwrap) or, with None, bare (its own container, or the opt-out)."""
        spec = self.spec
        self.turn = turn = AgentTurn(
            spec.agent, self._bare_home(), sb.AGENT_HOME if bwrap else None, nested=bwrap is not None
        )
        turn.metered(spec.spend)
        command, agent_vars = turn.prepare(spec.command, spec.env)
        spec = spec.model_copy(update={"command": command})
        # What the agent holds from the runner: what the spec passes on (its catalog secrets, the run's MCP token)
        # and its model key. Kept out of everything reported and pushed.
        held = [*spec.pass_env, *turn.declared]
        env = build_agent_env(
            self.environ,
            home=sb.AGENT_HOME if bwrap else str(self._bare_home()),
            declared=held,
            extra={**spec.env, **agent_vars, **self._agent_context(checkout)},
            aliases=turn.key_aliases,
        )
        self._keep_out(env[name] for name in held if env.get(name))
        for note in turn.notes:
            self.reporter.status("agent_setup", note)
        if turn.probe() is not None:  # a dead model endpoint: fail in seconds instead of a hang to the timeout
            self.fields.update(turn.result_fields())
            self.reporter.status("model_unreachable", turn.unreachable or "")
            return AgentOutcome(None)
        self.reporter.status("agent_started", f"{Path(spec.command[0]).name} in {checkout}", command=spec.command[0])
        try:
            if bwrap is None:
                outcome = run_agent(spec, checkout, env, self.reporter, AgentLaunch(None, None), turn)
            else:
                with sb.process_cap(spec.max_processes, spec.memory_bytes) as cap, self._egress_relay(env) as mount:
                    launch = AgentLaunch(bwrap, replace(self._sandbox_plan(checkout), egress=mount), cap)
                    outcome = run_agent(spec, checkout, env, self.reporter, launch, turn)
                    left = cap.kill_remaining()
                    if left:
                        self.reporter.status("agent_leftovers_killed", f"{len(left)} agent process(es) were left")
        except (FileNotFoundError, PermissionError):
            return None
        turn.finish()
        self.fields.update(turn.result_fields())
        if turn.usage is not None and turn.kind != "custom":
            self.reporter.status("agent_usage", turn.usage.summary(), usage=turn.usage.to_dict())
        self.reporter.status(
            "agent_finished",
            "timed out" if outcome.timed_out else f"exit code {outcome.exit_code}",
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
        )
        return outcome

    def _verdict(self, exit_code: int | None, changed: list[str]) -> RunnerResult | None:
        """The run's end when what the agent did says it failed or is blocked (outcome.py), else None."""
        report = self._report or AgentReport()
        turn = self.turn or AgentTurn(None, Path(self.spec.workdir))
        outcome = turn.judge(exit_code, changed, report.status, report.summary, report.diagnosis, report.problem)
        if outcome.verdict == "succeeded":
            return None
        self.fields["diagnosis"] = outcome.diagnosis
        self.reporter.status("agent_judged", f"{outcome.reason}: {outcome.message}", reason=outcome.reason)
        return self._finish("blocked" if outcome.verdict == "blocked" else "failed", outcome.reason, outcome.message)

    def _take_report(self, checkout: Path, outcome: AgentOutcome) -> None:
        report = read_agent_report(checkout, self.spec.result_file)
        self._report = report
        self.fields.update(
            agent_exit_code=outcome.exit_code,
            summary=report.summary,
            agent_status=report.status,
            diagnosis=report.diagnosis or report.problem,
            next_step_hint=report.next_step_hint,
        )

    def _bare_home(self) -> Path:
        """The agent's private HOME on the host, beside the checkout (never inside it, so never committed); inside
        the sandbox it is mounted at `sandbox.AGENT_HOME`. Agent setups write their configuration here."""
        home = self.repo.worktree.parent / f".{self.repo.worktree.name}.agent-home"
        if home.is_symlink():
            home.unlink()
        home.mkdir(mode=0o700, exist_ok=True)
        return home

    def _agent_context(self, checkout: Path) -> dict[str, str]:
        """Where things are, so an agent (or a wrapper script) need not be told twice."""
        return {
            "CODEXK8S_RESULT_FILE": str(checkout / self.spec.result_file),
            "CODEXK8S_PROMPT_FILE": str(Path(self.spec.prompt_file).resolve()),
            "CODEXK8S_BRANCH": self.spec.branch,
            "CODEXK8S_MODE": self.spec.mode,
            "CODEXK8S_WRITE_SCOPE": self.spec.write_scope.value,
        }

    # ---------------------------------------------------------------- the runner's turn: verify, then push

    def _verify_and_push(self, checkout: Checkout) -> RunnerResult:
        """Commit what is in the worktree now (no agent process is left), judge that commit, push exactly it (over
        the branch's old head only when the checkout leases it: a branch started again from the base)."""
        spec = self.spec
        start_commit = checkout.start_commit
        scope = spec.effective_scope
        try:
            _tree, commit = self.repo.build_commit(
                start_commit, spec.commit_message, spec.author_name, spec.author_email,
                exclude=[_result_dir(spec.result_file)],
            )  # fmt: skip
            changes = self.repo.tree_changes(start_commit, commit, spec.max_text_bytes)
            links = before = paths = None
            before_paths: list[str] = []
            if scope is not WriteScope.NONE and any(MODE_SYMLINK in (c.mode, c.old_mode) for c in changes):
                # Every entry of both trees, when the change touches a link (added, retargeted, removed, or made a
                # folder, which redirects the links through it: markdown-only may delete or replace a link with a
                # Markdown name). Otherwise both trees have the same links, and a folder that files make appear or
                # vanish sends none out that was let through before (only one refused already, by a `..` out of a
                # part the start tree did not have): the two listings of the whole tree are not needed.
                links, paths = self.repo.tree_entries(commit, spec.max_text_bytes)
                if links:
                    before, before_paths = self.repo.tree_entries(start_commit, spec.max_text_bytes)
            files = [c.path for c in changes if not c.deleted and c.mode in (MODE_FILE, MODE_EXECUTABLE)]
            lfs = self.repo.lfs_paths([start_commit, commit], files) if scope is not WriteScope.NONE else set()
        except GitError as exc:
            return self._finish("failed", "commit_failed", str(exc))
        changed = sorted({c.path for c in changes})
        violations = tree_violations(
            scope, changes, spec.allow_globs, spec.max_text_bytes, links, before, paths, before_paths
        )
        violations += lfs_violations(changes, lfs)  # a Git LFS file rewritten whole: no plain blob in its place
        try:  # under every scope: the agent holds its model key, and a pushed file is public on a public repository
            holding = self.repo.paths_holding(commit, changes)
        except GitError as exc:
            return self._finish("failed", "commit_failed", str(exc))
        violations += [Violation(path, SECRET_IN_FILE) for path in holding]
        self.fields.update(
            changed_files=changed,
            violations=sorted({v.path for v in violations}),
            violation_rules=[str(v) for v in violations],
        )
        self.reporter.status(
            "scope_checked",
            f"{len(changed)} changed, {len(violations)} outside {scope.value}",
            changed_files=changed,
            violations=[str(v) for v in violations],
        )
        if violations:
            listed = "; ".join(str(v) for v in violations[:5]) + ("; ..." if len(violations) > 5 else "")
            message = f"{len(violations)} change(s) outside the {scope.value} scope, nothing pushed: {listed}"
            return self._finish("failed_precondition", "write_scope_violation", message)
        refused = self._verdict(0, changed)
        if refused is not None:
            return refused
        if not changed:
            return self._finish("succeeded", "no_changes", "the agent changed nothing; nothing pushed")
        self.fields["commit"] = commit
        if not spec.push:
            return self._finish("succeeded", "committed", f"committed {commit[:12]}; push disabled")
        try:
            self.repo.push(commit, spec.branch, checkout.lease)
        except BranchMoved as exc:  # a human's push meanwhile: kept, and named; the run is to be started again
            return self._finish("failed", "branch_moved", str(exc))
        except GitError as exc:
            return self._finish("failed", "push_failed", str(exc))
        self.fields.update(pushed=True, replaced_head=checkout.lease)
        self.reporter.status("pushed", f"{commit[:12]} to {spec.branch}", commit=commit, branch=spec.branch)
        replaced = ""
        if checkout.lease is not None and spec.closed_pull is not None:
            kept = spec.closed_pull.kept_at
            replaced = f", in place of its former head {checkout.lease[:12]} (kept at {kept})"
        return self._finish("succeeded", "pushed", f"pushed {commit[:12]} to {spec.branch}{replaced}")

    def _finish(self, status: RunnerStatus, reason: str, message: str) -> RunnerResult:
        return RunnerResult(
            status=status,
            reason=reason,
            message=message,
            branch=self.spec.branch,
            duration_seconds=round(time.monotonic() - self.started, 3),
            **self.fields,
        )


def _result_dir(result_file: str) -> str:
    """The result file's directory (or the file itself at the top level): runner bookkeeping, never committed."""
    parent = PurePosixPath(result_file).parent
    return result_file if str(parent) == "." else str(parent)


# ------------------------------------------------------------------------------------------------ entry point


def scrub_result(result: RunnerResult, scrub: Callable[[str], str]) -> RunnerResult:
    """Every string of the result through the redactor (`_scrubbed`)."""
    return RunnerResult.model_validate(_scrubbed(result.model_dump(), scrub))


def write_result(path: Path, result: RunnerResult) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="codexk8s_pipelines.agents.runner", description=summary)
    parser.add_argument("--spec", required=True, help="runner spec JSON file")
    parser.add_argument("--result", help="also write the result JSON here")
    parser.add_argument(
        "--phase",
        choices=PHASES,
        default="all",
        help="all (local) or one container of a Kubernetes pod: prepare, agent, finish",
    )
    return parser.parse_args(argv)


def _execute(spec_path: str, reporter: Reporter, token: str | None, phase: str = "all") -> RunnerResult:
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        return RunnerResult(status="failed_precondition", reason="invalid_spec", message=str(exc), branch="")
    return AgentRun(spec, reporter, token, private_dirs=[Path(spec_path).resolve().parent]).run(phase)


def _term_when_parent_dies() -> None:
    """A runner whose Dagster step process died must not run on until its timeout with the agent: the parent's
    death sends us SIGTERM, which `CancelGuard` turns into a cancelled run (agent stopped, nothing pushed).
    Not for a pod's PID 1 (no parent to lose)."""
    parent = os.getppid()
    if not sys.platform.startswith("linux") or parent <= 1:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    token = os.environ.get(TOKEN_ENV_VAR) or None
    scrub = Scrubber(token)
    guard = CancelGuard().install()
    reporter = Reporter.open(scrub)
    try:
        try:
            _term_when_parent_dies()
            result = _execute(args.spec, reporter, token, args.phase)
        except Cancelled as exc:  # before the run had started, e.g. while loading the spec
            result = RunnerResult(status="cancelled", reason="cancelled", message=f"received {exc}", branch="")
        guard.finalizing()
        result = scrub_result(result, scrub)
        if args.result:
            write_result(Path(args.result), result)
        reporter.result(result)
    finally:
        reporter.close()
    if args.phase in ("prepare", "agent"):  # their verdict travels to the finish step, which reports it
        return 0
    return exit_code_for(result.status)


if __name__ == "__main__":
    sys.exit(main())
