"""Where the agent runner runs: a local subprocess, or a Kubernetes pod, both through Dagster Pipes.

The op does not care which: it hands over a `RunnerSpec` and gets a `RunnerResult`. The runner reports its
phases and its result as Pipes messages; locally it also writes the result to a file, which survives a non-zero
exit (Pipes clients raise on those before returning the messages).

Run-scoped files that may hold a secret or issue text (the spec with the run's MCP token, the prompt) are created
mode 600 in a mode-700 run directory and removed when the run ends, whatever way it ends.
"""

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from .. import kube
from .catalog import AgentSpec
from .runner_spec import RunnerResult, RunnerSpec

RUNNER_MODULE = "codexk8s_pipelines.agents.runner"


def _read_result(path: Path, spec: RunnerSpec, fallback: str) -> RunnerResult:
    try:
        return RunnerResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return RunnerResult(status="failed", reason="runner_crashed", message=fallback, branch=spec.branch)


def _result_from_messages(messages: list[Any], spec: RunnerSpec, fallback: str) -> RunnerResult:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("type") == "result":
            payload = {k: v for k, v in message.items() if k != "type"}
            return RunnerResult.model_validate(payload)
    return RunnerResult(status="failed", reason="runner_crashed", message=fallback, branch=spec.branch)


def quantity_bytes(quantity: str) -> int | None:
    """A Kubernetes memory quantity ('2Gi', '512M', '1000000') in bytes; None for one that is not a quantity or
    comes to less than a byte."""
    size = kube.quantity(quantity.strip())
    return None if size is None or size < 1 else int(size)


def write_private_file(path: Path, text: str) -> None:
    """`text` into `path`, readable by its owner only from the first byte on (no window at the umask's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def remove_run_files(paths: Iterable[Path]) -> None:
    """Run-scoped secrets and prompts do not outlive the run."""
    for path in paths:
        path.unlink(missing_ok=True)


def with_agent_limits(spec: RunnerSpec, agent: AgentSpec | None) -> RunnerSpec:
    """The spec with what the catalog entry declares: its variables (passed from the runner's environment) and its
    memory as the sandbox's per-process cap."""
    if agent is None:
        return spec
    # A model endpoint's key variable (agent_kinds) is declared like a secret of the entry.
    key_env = [agent.endpoint.key_env] if agent.endpoint.key_env else []
    declared = list(dict.fromkeys([*spec.pass_env, *agent.env_from_secrets, *key_env]))
    memory = spec.memory_bytes or quantity_bytes(agent.memory)
    return spec.model_copy(update={"pass_env": declared, "memory_bytes": memory})


@dataclass(frozen=True)
class AgentCleanup:
    """What `AgentRuntime.end_run_agents` did for one ended run: pods as "namespace/name", errors in a few words
    (never a secret), `skipped` when the runtime has no agent of its own to end."""

    run_id: str
    namespaces: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()  # the pods of the run that were deleted now
    gone: tuple[str, ...] = ()  # found, then gone before their deletion (deleted by the run itself, or by hand)
    left: tuple[str, ...] = ()  # found, not deleted: see errors
    errors: tuple[str, ...] = ()
    skipped: str = ""

    def text(self) -> str:
        """One line for the sensor's log."""
        if self.skipped:
            return f"agents of run {self.run_id}: nothing deleted, {self.skipped}"
        where = ", ".join(self.namespaces) or "no namespace"
        parts = []
        if self.deleted:
            parts.append("deleted agent pod(s) " + ", ".join(self.deleted))
        if self.gone:
            parts.append("already gone " + ", ".join(self.gone))
        if self.left:
            parts.append("NOT deleted " + ", ".join(self.left))
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        if not parts:
            parts.append("no agent pod left")
        return f"agents of run {self.run_id} (in {where}): " + "; ".join(parts)


class AgentRuntime(dg.ConfigurableResource):
    """Where agents run; the environment switch picks the subclass (`definitions.py`)."""

    def run(
        self, context: dg.OpExecutionContext, spec: RunnerSpec, run_dir: Path, agent: AgentSpec | None = None
    ) -> RunnerResult:
        raise NotImplementedError

    def end_run_agents(self, run_id: str) -> AgentCleanup:
        """End whatever agent the Dagster run `run_id` started and left behind, once that run has ended outside its
        ops (its worker killed, its run cancelled): the run status sensors call it. Never raises for an unreachable
        or refusing backend: the result says what happened."""
        return AgentCleanup(run_id, skipped="this runtime starts no agent outside the run's own process")


class SubprocessAgentRuntime(AgentRuntime):
    """The local runtime: `python -m codexk8s_pipelines.agents.runner` under `PipesSubprocessClient`."""

    def end_run_agents(self, run_id: str) -> AgentCleanup:
        return AgentCleanup(
            run_id, skipped="agents run as local processes here, not Kubernetes pods: there is no pod to delete"
        )

    def run(
        self, context: dg.OpExecutionContext, spec: RunnerSpec, run_dir: Path, agent: AgentSpec | None = None
    ) -> RunnerResult:
        spec = with_agent_limits(spec, agent)
        spec_file, result_file = run_dir / "spec.json", run_dir / "result.json"
        write_private_file(spec_file, spec.model_dump_json(indent=2))  # holds the run's MCP token
        result_file.unlink(missing_ok=True)
        prompt = Path(spec.prompt_file)
        if prompt.is_file():
            os.chmod(prompt, 0o600)
        command = [sys.executable, "-m", RUNNER_MODULE, "--spec", str(spec_file), "--result", str(result_file)]
        client = dg.PipesSubprocessClient(termination_timeout_seconds=30)
        try:
            invocation = client.run(command=command, context=context, env={"PYTHONUNBUFFERED": "1"})
        except DagsterPipesExecutionError as exc:
            return _read_result(result_file, spec, f"the agent runner failed: {exc}")
        finally:
            remove_run_files([spec_file, *([prompt] if prompt.parent == run_dir else [])])
        messages = list(invocation.get_custom_messages())
        if result_file.exists():
            return _read_result(result_file, spec, "the agent runner wrote no result")
        return _result_from_messages(messages, spec, "the agent runner reported no result")
