"""Where the agent runner runs: a local subprocess, or a Kubernetes pod, both through Dagster Pipes.

The op does not care which: it hands over a `RunnerSpec` and gets a `RunnerResult`. The runner reports its
phases and its result as Pipes messages; locally it also writes the result to a file, which survives a non-zero
exit (Pipes clients raise on those before returning the messages).
"""

import sys
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from .catalog import AgentSpec
from .runner_spec import RunnerResult, RunnerSpec

RUNNER_MODULE = "codexk8s_pipelines.agents.runner"


def _read_result(path: Path, spec: RunnerSpec, fallback: str) -> RunnerResult:
    try:
        return RunnerResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return RunnerResult(status="failed", reason="runner_crashed", message=fallback, branch=spec.branch)


def _result_from_messages(messages: list[dict], spec: RunnerSpec, fallback: str) -> RunnerResult:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("type") == "result":
            payload = {k: v for k, v in message.items() if k != "type"}
            return RunnerResult.model_validate(payload)
    return RunnerResult(status="failed", reason="runner_crashed", message=fallback, branch=spec.branch)


class AgentRuntime(dg.ConfigurableResource):
    """Where agents run; the environment switch picks the subclass (`definitions.py`)."""

    def run(
        self, context: dg.OpExecutionContext, spec: RunnerSpec, run_dir: Path, agent: AgentSpec | None = None
    ) -> RunnerResult:
        raise NotImplementedError


class SubprocessAgentRuntime(AgentRuntime):
    """The local runtime: `python -m codexk8s_pipelines.agents.runner` under `PipesSubprocessClient`."""

    def run(
        self, context: dg.OpExecutionContext, spec: RunnerSpec, run_dir: Path, agent: AgentSpec | None = None
    ) -> RunnerResult:
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_file, result_file = run_dir / "spec.json", run_dir / "result.json"
        result_file.unlink(missing_ok=True)
        spec_file.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
        command = [sys.executable, "-m", RUNNER_MODULE, "--spec", str(spec_file), "--result", str(result_file)]
        client = dg.PipesSubprocessClient(termination_timeout_seconds=30)
        try:
            invocation = client.run(command=command, context=context, env={"PYTHONUNBUFFERED": "1"})
        except DagsterPipesExecutionError as exc:
            return _read_result(result_file, spec, f"the agent runner failed: {exc}")
        messages = invocation.get_custom_messages()
        if result_file.exists():
            return _read_result(result_file, spec, "the agent runner wrote no result")
        return _result_from_messages(messages, spec, "the agent runner reported no result")
