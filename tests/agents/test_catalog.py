"""The agent catalog: the packaged file covers every role, user files merge over it, every mistake is located."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.agents.catalog import (
    CATALOG_ENV_VAR,
    DEFAULT_COMMAND,
    AgentCatalog,
    AgentSpec,
    UnknownAgentError,
    load_catalog,
)
from codexk8s_pipelines.config import ConfigError
from codexk8s_pipelines.domain.stages import Role


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV_VAR, raising=False)


def _write(tmp_path: Path, text: str, name: str = "agents.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert info.value.path == str(path)
    assert all(line.startswith(f"{path}: ") for line in str(info.value).splitlines())
    return info.value.problems


def test_the_packaged_catalog_has_an_agent_for_every_role() -> None:
    catalog = load_catalog()
    for role in Role:
        spec = catalog.for_role(role)
        assert spec.role is role and spec.name == role.value
    dev = catalog.for_role("dev")
    assert dev.command == list(DEFAULT_COMMAND) and dev.prompt_via == "stdin"
    assert dev.timeout_minutes == 120 and dev.memory == "4Gi"
    assert catalog.for_role(Role.REVIEWER).mcp_tools  # every agent can at least search the docs


def test_user_entries_override_fields_by_name_and_add_custom_agents(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        agents:
          dev: {timeout_minutes: 90, env_from_secrets: {OPENAI_API_KEY: openai-credentials/api-key}}
          security-qa: {role: qa, image: "registry.local/qa:1", cpu: 500m, mcp_tools: [docs_search]}
        """,
    )
    catalog = load_catalog(path)
    dev = catalog.for_role(Role.DEV)
    assert dev.timeout_minutes == 90 and dev.memory == "4Gi"  # untouched fields keep the packaged value
    assert dev.env_from_secrets == {"OPENAI_API_KEY": "openai-credentials/api-key"}
    assert catalog.for_role(Role.QA).name == "qa"  # the role's own entry wins over a custom one
    custom = catalog.agent("security-qa")
    assert custom.role is Role.QA and custom.image == "registry.local/qa:1" and custom.cpu == "500m"
    assert custom.command == list(DEFAULT_COMMAND)


def test_the_environment_variable_names_the_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CATALOG_ENV_VAR, str(_write(tmp_path, "agents:\n  km: {timeout_minutes: 5}\n")))
    assert load_catalog().for_role("km").timeout_minutes == 5


def test_a_role_without_its_named_entry_uses_the_first_custom_agent_of_that_role() -> None:
    catalog = load_catalog()
    agents = {n: a for n, a in catalog.agents.items() if n != "sre"}
    agents["ops-bot"] = AgentSpec(name="ops-bot", role=Role.SRE)
    agents["ops-bot-2"] = AgentSpec(name="ops-bot-2", role=Role.SRE)
    assert AgentCatalog(agents=agents).for_role("sre").name == "ops-bot"


def test_an_unknown_role_or_agent_names_what_is_known() -> None:
    catalog = load_catalog()
    with pytest.raises(UnknownAgentError) as info:
        catalog.for_role("designer")
    assert "no agent for role 'designer'" in str(info.value) and "dev (dev)" in str(info.value)
    with pytest.raises(KeyError, match="agent 'nobody'"):
        catalog.agent("nobody")


def test_a_catalog_without_some_role_is_refused(tmp_path: Path) -> None:
    agents = {r.value: AgentSpec(name=r.value, role=r) for r in Role if r is not Role.KM}
    with pytest.raises(ValueError, match="no agent for role"):
        AgentCatalog(agents=agents)


def test_render_command_fills_every_placeholder() -> None:
    catalog = load_catalog()
    dev = catalog.for_role(Role.DEV)
    command = catalog.render_command(dev, "gpt-5.2", "extra-high", "/work/repo", None)
    assert command == [
        "codex",
        "exec",
        "--json",
        "--model",
        "gpt-5.2",
        "--config",
        "model_reasoning_effort=xhigh",  # the platform's label value, spelled the way the Codex CLI expects
        "--sandbox",
        "workspace-write",
        "--skip-git-repo-check",
        "--cd",
        "/work/repo",
        "-",
    ]
    assert catalog.render_command(dev, None, None, "/w", None)[4] == "gpt-5.5"  # the agent's defaults


def test_a_prompt_file_agent_gets_the_path_and_literal_braces_survive() -> None:
    spec = AgentSpec(
        name="file-agent",
        role=Role.DEV,
        command=["agent", "--prompt", "{prompt_file}", "--json={{}}", "--model={model}"],
        prompt_via="file",
    )
    assert spec.render_command("m", "low", "/w", Path("/tmp/p.md")) == [
        "agent",
        "--prompt",
        "/tmp/p.md",
        "--json={}",
        "--model=m",
    ]
    with pytest.raises(ValueError, match="no prompt file was given"):
        spec.render_command("m", "low", "/w", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "agents:\n  dev: {timeout_minutes: 0}\n",
            "agents.dev.timeout_minutes: Input should be greater than 0 (got 0)",
        ),
        (
            "agents:\n  dev: {command: [codex, '--model={modle}']}\n",
            "agents.dev.command.1: unknown placeholder {modle}; expected one of: {model}, {reasoning}",
        ),
        ("agents:\n  dev: {command: [codex, '--x={']}\n", "agents.dev.command.1: not a valid command template"),
        ("agents:\n  dev: {command: ['{model!r}']}\n", "agents.dev.command.0: placeholder {model} takes no format"),
        ("agents:\n  dev: {command: []}\n", "agents.dev.command: List should have at least 1 item"),
        ("agents:\n  dev: {prompt_via: file}\n", "agents.dev: prompt_via is 'file' but the command has no"),
        ("agents:\n  dev: {prompt_via: pipe}\n", "agents.dev.prompt_via: Input should be 'stdin' or 'file'"),
        ("agents:\n  dev: {memory: lots}\n", "agents.dev.memory: expected a positive Kubernetes quantity"),
        ("agents:\n  dev: {cpu: 0}\n", "agents.dev.cpu: expected a positive Kubernetes quantity"),
        ("agents:\n  dev: {mcp_tools: [shell]}\n", "agents.dev.mcp_tools.0: Input should be 'docs_search'"),
        (  # the line too: a typo deep in a long catalog was named by its key path alone
            "agents:\n  dev: {imgae: x}\n",
            "line 2: agents.dev.imgae: unknown key 'imgae'; expected one of: name, role, image",
        ),
        ("agents:\n  dev: {name: developer}\n", "agents.dev.name: must equal its key 'dev'"),
        ("agents:\n  dev: {role: qa}\n", "agents.dev.role: an agent named after role 'dev' must have that role"),
        ("agents:\n  helper: {image: x}\n", "agents.helper.role: required key is missing"),
        ("agents:\n  helper: {role: boss}\n", "agents.helper.role: Input should be 'pm', 'sa'"),
        (
            "agents:\n  dev: {env_from_secrets: {'1BAD': s/k}}\n",
            "agents.dev.env_from_secrets.1BAD: '1BAD' is not an environment variable name",
        ),
        ("agentz: {}\n", "line 1: agentz: unknown key 'agentz'; expected one of: agents"),
        ("agents: [dev]\n", "agents: Input should be a valid dictionary"),
        ("- dev\n", "(top level): expected a mapping with 'agents', got list"),
        ("agents: {dev: [\n", "line 2, column 1: not valid YAML"),
        # yaml.safe_load raised RecursionError here ("maximum recursion depth exceeded", no file, no place).
        ("agents: {dev: {env: " + "[" * 1000 + "]" * 1000 + "}}\n", "line 1, column 82: nested deeper than 64 levels"),
    ],
)
def test_every_mistake_names_the_file_and_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    problems = _problems(tmp_path, text)
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    "value",
    [
        "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789",
        "sk-live-abcdef0123456789",
        "my-secret/ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789",
        "Upper/key",
        "just-a-name",
    ],
)
def test_a_literal_secret_value_is_refused_and_never_echoed(tmp_path: Path, value: str) -> None:
    problems = _problems(tmp_path, f"agents:\n  dev:\n    env_from_secrets: {{GITHUB_TOKEN: '{value}'}}\n")
    assert problems == [
        "agents.dev.env_from_secrets.GITHUB_TOKEN: expected a Kubernetes secret reference 'secret-name/key', "
        "not a literal value; secrets are read from Kubernetes secrets or the environment, never from this file"
    ]
    assert value not in "\n".join(problems)


def test_a_secret_looking_key_points_to_the_environment(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "agents:\n  dev: {api_key: abc}\n")
    assert problems[0].startswith("line 2: agents.dev.api_key: unknown key 'api_key'")
    assert problems[0].endswith("secrets are read from the environment only (see README), never from this file")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    assert len(_problems(tmp_path, "agents:\n  dev: {timeout_minutes: 0, cpu: x}\n  qa: {bogus: 1}\n")) == 3


def test_a_missing_user_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_catalog(tmp_path / "nope.yaml")


def test_an_empty_user_file_changes_nothing(tmp_path: Path) -> None:
    assert load_catalog(_write(tmp_path, "")) == load_catalog()
