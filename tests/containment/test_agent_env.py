"""The agent's environment is an allow-list; a catalog entry or a spec that asks for a platform secret is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codexk8s_pipelines.agents.agent_env import build_agent_env, platform_secret_reason
from codexk8s_pipelines.agents.catalog import CATALOG_ENV_VAR, load_catalog
from codexk8s_pipelines.agents.runner_spec import RunnerSpec
from codexk8s_pipelines.agents.runtime import quantity_bytes, with_agent_limits, write_private_file
from codexk8s_pipelines.config import ConfigError

PLATFORM_SECRETS = [
    "CODEXK8S_GITHUB_TOKEN",
    "CODEXK8S_GITHUB_APP_PRIVATE_KEY",
    "CODEXK8S_MCP_SECRET",
    "CODEXK8S_DATABASE_URL",
    "CODEXK8S_CONFIG",
    "CODEXK8S_GITHUB_APP_ID",
    "DATABASE_URL",
    "MY_DATABASE_URL",
    "PGPASSWORD",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "DAGSTER_PIPES_CONTEXT",
    "GIT_CONFIG_GLOBAL",
]


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV_VAR, raising=False)


@pytest.mark.parametrize("name", PLATFORM_SECRETS)
def test_a_catalog_entry_asking_for_a_platform_secret_is_refused_naming_entry_and_variable(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(f"agents:\n  dev:\n    env_from_secrets:\n      {name}: some-secret/key\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    (problem,) = info.value.problems
    assert problem.startswith("agents.dev.env_from_secrets: ") and f"{name} cannot be given to an agent" in problem
    assert str(info.value).startswith(f"{path}: agents.dev.env_from_secrets: {name}")


def test_model_keys_and_the_mcp_pair_may_be_declared(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(
        "agents:\n  dev:\n    env_from_secrets:\n      OPENAI_API_KEY: openai/api-key\n"
        "      ANTHROPIC_API_KEY: anthropic/key\n      OPENAI_BASE_URL: provider/url\n",
        encoding="utf-8",
    )
    agent = load_catalog(path).agent("dev")
    assert set(agent.env_from_secrets) == {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"}
    for name in ("CODEXK8S_MCP_TOKEN", "CODEXK8S_MCP_URL", "OPENAI_API_KEY"):
        assert platform_secret_reason(name) is None


@pytest.mark.parametrize("field", ["env", "pass_env"])
@pytest.mark.parametrize("name", ["CODEXK8S_MCP_SECRET", "CODEXK8S_DATABASE_URL", "CODEXK8S_GITHUB_TOKEN"])
def test_a_runner_spec_handing_a_platform_secret_to_the_agent_is_invalid(field: str, name: str) -> None:
    value: object = {name: "x"} if field == "env" else [name]
    with pytest.raises(ValueError, match=f"{name} is never given to the agent"):
        RunnerSpec.model_validate(
            {"remote_url": "r", "branch": "b", "workdir": "/w", "command": ["a"], "prompt_file": "p",
             "write_scope": "any-file", "commit_message": "m", "author_name": "n", "author_email": "a@b",
             field: value}
        )  # fmt: skip


def test_the_environment_is_built_from_the_allow_list_only() -> None:
    runner_env = {name: "secret" for name in PLATFORM_SECRETS} | {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_CTYPE": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "HOME": "/root",
        "SSH_AUTH_SOCK": "/run/agent.sock",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "app_private_key": "k",
        "UNRELATED": "u",
        "OPENAI_API_KEY": "sk-1",
    }
    env = build_agent_env(
        runner_env,
        home="/home/agent",
        declared=["OPENAI_API_KEY", "CODEXK8S_GITHUB_TOKEN", "CODEXK8S_MCP_SECRET"],
        extra={
            "CODEXK8S_MCP_TOKEN": "t",
            "CODEXK8S_MCP_URL": "http://127.0.0.1:9/mcp",
            "CODEXK8S_DATABASE_URL": "x",
            "CODEXK8S_BRANCH": "b",
        },
    )
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_CTYPE": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "HOME": "/home/agent",
        "OPENAI_API_KEY": "sk-1",
        "CODEXK8S_MCP_TOKEN": "t",
        "CODEXK8S_MCP_URL": "http://127.0.0.1:9/mcp",
        "CODEXK8S_BRANCH": "b",
    }


def test_catalog_limits_reach_the_spec() -> None:
    from codexk8s_pipelines.agents.catalog import AgentSpec
    from codexk8s_pipelines.domain.stages import Role

    spec = RunnerSpec.model_validate(
        {"remote_url": "r", "branch": "b", "workdir": "/w", "command": ["a"], "prompt_file": "p",
         "write_scope": "any-file", "commit_message": "m", "author_name": "n", "author_email": "a@b",
         "pass_env": ["CODEXK8S_MCP_TOKEN"]}
    )  # fmt: skip
    agent = AgentSpec(name="dev", role=Role.DEV, memory="3Gi", env_from_secrets={"OPENAI_API_KEY": "openai/key"})
    limited = with_agent_limits(spec, agent)
    assert limited.pass_env == ["CODEXK8S_MCP_TOKEN", "OPENAI_API_KEY"]
    assert limited.memory_bytes == 3 * 1024**3
    assert [quantity_bytes(q) for q in ("512Mi", "1G", "1000", "1.5Gi", "lots", "inf", "NaN", "sNaN", "0")] == [
        512 * 1024**2, 10**9, 1000, int(1.5 * 1024**3), None, None, None, None, None,
    ]  # fmt: skip


def test_run_scoped_files_are_private_from_the_first_byte(tmp_path: Path) -> None:
    os.umask(0o022)
    target = tmp_path / "run" / "spec.json"
    write_private_file(target, '{"token": "x"}')
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    target.chmod(0o644)
    write_private_file(target, "again")  # an existing file is replaced, not reused with its old mode
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "again"


def test_a_model_key_alias_is_read_from_the_runner_environment_never_from_a_platform_secret() -> None:
    env = build_agent_env(
        {"PATH": "/usr/bin", "MY_KEY": "sk-mine", "CODEXK8S_GITHUB_TOKEN": "ghs-runner"},
        home="/home/agent",
        aliases={"CODEX_API_KEY": "MY_KEY", "ANTHROPIC_API_KEY": "UNSET", "OPENAI_API_KEY": "CODEXK8S_GITHUB_TOKEN"},
    )
    assert env == {"PATH": "/usr/bin", "HOME": "/home/agent", "CODEX_API_KEY": "sk-mine", "ANTHROPIC_API_KEY": ""}
