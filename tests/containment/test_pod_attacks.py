"""The agent as an attacker inside its Kubernetes pod: the real kubernetes client and dagster-k8s against the emulated
API server, and a fake kubelet that runs each container's own command as its node would (`behaviour = "real"`:
the pod's volumes at their mount paths, the image's working directory)."""

import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from codexk8s_pipelines.agents.k8s_runtime import CORRELATION_TAG, KubernetesAgentRuntime, default_agent
from codexk8s_pipelines.agents.runner_spec import RunnerSpec
from codexk8s_pipelines.domain.stages import WriteScope
from tests.agents_k8s.conftest import KubeApi, fake_secrets, kube_api  # noqa: F401 - fixtures kube_api needs
from tests.agents_runner.test_git_workspace import make_remote
from tests.helpers import REPO_ROOT, git

# The agent leaves Python modules in the shared workspace, which is the image's working directory: the finish
# container's `python -m codexk8s_pipelines.agents.runner` would import them instead of the runner (and the standard
# library's argparse), holding the GitHub token.
HIJACK = """\
import os
os.makedirs("/workspace/codexk8s_pipelines/agents", exist_ok=True)
payload = "import os\\nopen({marker!r}, 'a').write(repr(dict(os.environ)))\\nraise SystemExit(0)\\n"
for name in ("codexk8s_pipelines/__init__.py", "codexk8s_pipelines/agents/__init__.py",
             "codexk8s_pipelines/agents/runner.py", "argparse.py", "sitecustomize.py", "usercustomize.py"):
    with open(os.path.join("/workspace", name), "w") as handle:
        handle.write(payload)
with open("NOTES.md", "w") as handle:
    handle.write("# Notes\\n")
os.makedirs(".codexk8s", exist_ok=True)
with open(".codexk8s/result.json", "w") as handle:
    handle.write('{{"summary": "notes written", "status": "done"}}')
"""


@pytest.mark.timeout(120)
def test_modules_the_agent_leaves_in_the_workspace_never_run_in_the_token_holding_containers(
    kube_api: KubeApi,  # noqa: F811 - its GitHub token Secret is fake_secrets'
    tmp_path: Path,
) -> None:
    remote = make_remote(tmp_path)
    marker = tmp_path / "hijacked"
    script = tmp_path / "agent.py"
    script.write_text(HIJACK.format(marker=str(marker)))
    (tmp_path / "prompt.md").write_text("Write the notes.\n")
    spec = RunnerSpec(
        remote_url=str(remote),
        branch="codex/issue-7",
        workdir="/home/dagster/.codexk8s/work/acme-shop",
        command=[sys.executable, str(script)],
        prompt_file=str(tmp_path / "prompt.md"),
        write_scope=WriteScope.MARKDOWN_ONLY,
        commit_message="dev: #7",
        author_name="codex-k8s agent",
        author_email="codexk8s-agent@users.noreply.github.com",
    )
    runtime = kube_api.runtime()
    kube_api.run_pods_for_real([tmp_path], f"{REPO_ROOT / '.venv' / 'bin'}:/usr/bin:/bin")
    seen: dict[str, Any] = {}

    @dg.op
    def run_agent(context: dg.OpExecutionContext, agent_runtime: KubernetesAgentRuntime) -> None:
        seen["result"] = agent_runtime.run(context, spec, tmp_path / "run", default_agent())

    @dg.job
    def hijack_job() -> None:
        run_agent()

    hijack_job.execute_in_process(resources={"agent_runtime": runtime}, tags={CORRELATION_TAG: "acme/shop#7:hijack"})
    assert not marker.exists(), f"the agent's module ran in a runner container: {marker.read_text()[:300]}"
    result = seen["result"]
    assert (result.status, result.pushed, result.changed_files) == ("succeeded", True, ["NOTES.md"]), result
    assert git("show", f"{spec.branch}:NOTES.md", cwd=remote) == "# Notes"
