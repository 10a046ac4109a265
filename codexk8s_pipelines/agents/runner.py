"""Run one coding agent in a checkout and hand back a verdict: the process both Dagster and a pod launch.

    python -m codexk8s_pipelines.agents.runner --spec spec.json [--result result.json]

Order of business: prepare the checkout, run the agent (prompt on stdin or named in its command), read the
result file it wrote, check the diff against the stage's write scope, then commit and push. Nothing is
committed or pushed unless the agent exited 0 within its timeout and every changed path is in scope.

Reporting goes through Dagster Pipes when Pipes launched us (status custom messages per phase and one final
`result` message), and to plain stdout otherwise; `--result` additionally writes the result JSON to a file.
Exit code: 0 succeeded, 2 failed_precondition, 1 anything else (failed, timed_out, cancelled).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import IO, Any

from ..domain.redaction import REDACTED, redact_text
from ..domain.write_scope import scope_violations
from .git_workspace import BranchNotFound, GitError, GitWorkspace, basic_auth_header
from .runner_spec import TOKEN_ENV_VAR, RunnerResult, RunnerSpec, RunnerStatus, SpecError, load_spec

EXIT_CODES: dict[str, int] = {"succeeded": 0, "failed_precondition": 2}
KILL_GRACE_SECONDS = 5.0
OUTPUT_TAIL_LINES = 40
_SECRET_ENV_NAME = re.compile(r"(_TOKEN|_PRIVATE_KEY)$", re.IGNORECASE)
_NEVER_TO_AGENT_PREFIXES = ("DAGSTER_PIPES_", "GIT_CONFIG_")


def exit_code_for(status: RunnerStatus | str) -> int:
    return EXIT_CODES.get(status, 1)


class Cancelled(BaseException):
    """SIGTERM/SIGINT arrived. A BaseException so no `except Exception` on the way swallows it."""


# ------------------------------------------------------------------------------------------------ secrets


def make_scrubber(token: str | None) -> Callable[[str], str]:
    """A redactor that also knows the literal token, whose shape `redact_text` may not recognise."""
    secrets = [token, basic_auth_header(token).rsplit(" ", 1)[1]] if token else []

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return redact_text(text)

    return scrub


def agent_env(base: Mapping[str, str], extra: Mapping[str, str], pass_env: Sequence[str] = ()) -> dict[str, str]:
    """The agent's environment: ours plus the spec's, minus anything it could leak or misuse.

    The GitHub token is for the runner's push only; other `*_TOKEN` / `*_PRIVATE_KEY` variables are dropped
    unless the spec names them in `pass_env`; the Pipes channel is ours, so the agent cannot forge messages.
    """
    allowed = set(pass_env) - {TOKEN_ENV_VAR}
    merged = {**base, **extra}
    return {
        k: v
        for k, v in merged.items()
        if k != TOKEN_ENV_VAR
        and not k.startswith(_NEVER_TO_AGENT_PREFIXES)
        and (k in allowed or not _SECRET_ENV_NAME.search(k))
    }


# ------------------------------------------------------------------------------------------------ reporting


class Reporter:
    """Status lines and the final result, through Dagster Pipes when it launched us, else plain stdout."""

    def __init__(self, pipes: Any | None, scrub: Callable[[str], str]) -> None:
        self._pipes = pipes
        self._scrub = scrub
        self._lock = threading.Lock()

    @classmethod
    def open(cls, scrub: Callable[[str], str]) -> Reporter:
        """Only open Pipes when launched by it: outside Pipes `open_dagster_pipes` warns and returns a mock."""
        from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

        pipes = open_dagster_pipes() if PipesEnvVarParamsLoader().is_dagster_pipes_process() else None
        return cls(pipes, scrub)

    @property
    def via_pipes(self) -> bool:
        return self._pipes is not None

    def line(self, text: str) -> None:
        """One line of output for people (agent output, runner notes); stdout in both modes."""
        with self._lock:
            sys.stdout.write(self._scrub(text.rstrip("\n")) + "\n")
            sys.stdout.flush()

    def status(self, phase: str, message: str, **details: Any) -> None:
        message = self._scrub(message)
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


def _pump(stream: IO[bytes], label: str, reporter: Reporter, tail: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        tail.append(text)
        reporter.line(f"[agent{label}] {text}")
    stream.close()


@contextmanager
def _agent_process(
    command: Sequence[str], cwd: Path, env: Mapping[str, str], stdin: IO[bytes] | int
) -> Iterator[subprocess.Popen[bytes]]:
    """The agent in its own session, so one killpg reaches everything it spawned, whatever way we leave."""
    proc = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        kill_process_group(proc.pid, proc if proc.poll() is None else None)


def run_agent(spec: RunnerSpec, cwd: Path, env: Mapping[str, str], reporter: Reporter) -> AgentOutcome:
    """Run the agent to completion or timeout, streaming its output; `Cancelled` passes through after the kill."""
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    with _stdin_for(spec) as stdin, _agent_process(spec.command, cwd, env, stdin) as proc:
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, "", reporter, tail), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, ":stderr", reporter, tail), daemon=True),
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


def read_agent_report(path: Path) -> AgentReport:
    """The agent's result file, tolerating its absence or garbage: a bad report is a diagnosis, not a crash."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AgentReport(problem=f"the agent wrote no result file ({path.name} missing)")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return AgentReport(problem=f"the agent's result file is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return AgentReport(problem="the agent's result file does not hold a JSON object")

    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    return AgentReport(text("summary"), text("status"), text("diagnosis"), text("next_step_hint"))


# ------------------------------------------------------------------------------------------------ one run


class AgentRun:
    """One spec from checkout to push; every exit path goes through `_finish` so results look alike."""

    def __init__(self, spec: RunnerSpec, reporter: Reporter, token: str | None) -> None:
        self.spec = spec
        self.reporter = reporter
        self.started = time.monotonic()
        self.fields: dict[str, Any] = {}
        self.workspace = GitWorkspace(
            spec.workdir, spec.remote_url, token=token, timeout_seconds=spec.git_timeout_seconds
        )

    def run(self) -> RunnerResult:
        try:
            return self._run()
        except Cancelled as exc:
            return self._finish("cancelled", "cancelled", f"the runner received {exc}; the agent was stopped")
        except GitError as exc:
            return self._finish("failed", exc.reason, str(exc))
        except Exception as exc:  # the verdict must still be reported, whatever broke
            return self._finish("failed", "runner_error", f"{type(exc).__name__}: {exc}")

    def _run(self) -> RunnerResult:
        spec = self.spec
        if not Path(spec.prompt_file).is_file():
            return self._finish("failed_precondition", "prompt_not_found", f"prompt file {spec.prompt_file} missing")
        try:
            checkout = self.workspace.prepare(spec.branch, spec.base_branch, spec.mode)
        except BranchNotFound as exc:
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

        outcome = self._run_agent(checkout.path)
        if outcome is None:
            return self._finish("failed", "agent_not_found", f"cannot start the agent command {spec.command[0]!r}")
        if outcome.timed_out:
            return self._finish("timed_out", "agent_timeout", f"the agent ran over {spec.timeout_seconds}s")
        if outcome.exit_code != 0:
            last = " | ".join(outcome.tail[-5:])
            return self._finish("failed", "agent_exit_code", f"the agent exited {outcome.exit_code}; last: {last}")
        return self._check_and_push(checkout.start_commit)

    def _run_agent(self, checkout: Path) -> AgentOutcome | None:
        spec = self.spec
        result_path = checkout / spec.result_file
        env = agent_env(os.environ, {**spec.env, **self._agent_context(checkout)}, spec.pass_env)
        self.reporter.status("agent_started", f"{Path(spec.command[0]).name} in {checkout}", command=spec.command[0])
        try:
            outcome = run_agent(spec, checkout, env, self.reporter)
        except (FileNotFoundError, PermissionError):
            return None
        finally:
            self.workspace.restore_git_config()
        report = read_agent_report(result_path)
        self.fields.update(
            agent_exit_code=outcome.exit_code,
            summary=report.summary,
            agent_status=report.status,
            diagnosis=report.diagnosis or report.problem,
            next_step_hint=report.next_step_hint,
        )
        self.reporter.status(
            "agent_finished",
            "timed out" if outcome.timed_out else f"exit code {outcome.exit_code}",
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
        )
        return outcome

    def _agent_context(self, checkout: Path) -> dict[str, str]:
        """Where things are, so an agent (or a wrapper script) need not be told twice."""
        return {
            "CODEXK8S_RESULT_FILE": str(checkout / self.spec.result_file),
            "CODEXK8S_PROMPT_FILE": str(Path(self.spec.prompt_file).resolve()),
            "CODEXK8S_BRANCH": self.spec.branch,
            "CODEXK8S_MODE": self.spec.mode,
            "CODEXK8S_WRITE_SCOPE": self.spec.write_scope.value,
        }

    def _check_and_push(self, start_commit: str) -> RunnerResult:
        spec = self.spec
        changed = self.workspace.changed_files(start_commit, exclude=[_result_dir(spec.result_file)])
        violations = scope_violations(spec.effective_scope, changed, spec.allow_globs)
        self.fields.update(changed_files=changed, violations=violations)
        self.reporter.status(
            "scope_checked",
            f"{len(changed)} changed, {len(violations)} outside {spec.effective_scope.value}",
            changed_files=changed,
            violations=violations,
        )
        if violations:
            message = f"{len(violations)} path(s) outside the {spec.effective_scope.value} scope; nothing pushed"
            return self._finish("failed_precondition", "write_scope_violation", message)
        if not changed:
            return self._finish("succeeded", "no_changes", "the agent changed nothing; nothing pushed")
        try:
            commit = self.workspace.commit(start_commit, spec.commit_message, spec.author_name, spec.author_email)
        except GitError as exc:
            return self._finish("failed", "commit_failed", str(exc))
        self.fields["commit"] = commit
        if not spec.push:
            return self._finish("succeeded", "committed", f"committed {commit[:12]}; push disabled")
        try:
            self.workspace.push(spec.branch)
        except GitError as exc:
            return self._finish("failed", "push_failed", str(exc))
        self.fields["pushed"] = True
        self.reporter.status("pushed", f"{commit[:12]} to {spec.branch}", commit=commit, branch=spec.branch)
        return self._finish("succeeded", "pushed", f"pushed {commit[:12]} to {spec.branch}")

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
    """Every string of the result through the redactor: it leaves the process in logs, files and Dagster."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return RunnerResult.model_validate({k: clean(v) for k, v in result.model_dump().items()})


def write_result(path: Path, result: RunnerResult) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="codexk8s_pipelines.agents.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="runner spec JSON file")
    parser.add_argument("--result", help="also write the result JSON here")
    return parser.parse_args(argv)


def _execute(spec_path: str, reporter: Reporter, token: str | None) -> RunnerResult:
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        return RunnerResult(status="failed_precondition", reason="invalid_spec", message=str(exc), branch="")
    return AgentRun(spec, reporter, token).run()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    token = os.environ.get(TOKEN_ENV_VAR) or None
    scrub = make_scrubber(token)
    guard = CancelGuard().install()
    reporter = Reporter.open(scrub)
    try:
        try:
            result = _execute(args.spec, reporter, token)
        except Cancelled as exc:  # before the run had started, e.g. while loading the spec
            result = RunnerResult(status="cancelled", reason="cancelled", message=f"received {exc}", branch="")
        guard.finalizing()
        result = scrub_result(result, scrub)
        if args.result:
            write_result(Path(args.result), result)
        reporter.result(result)
    finally:
        reporter.close()
    return exit_code_for(result.status)


if __name__ == "__main__":
    sys.exit(main())
