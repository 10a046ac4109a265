"""The four agent programs as catalog kinds: switching a role's agent, a gateway set once, the model key's rules,
and the same pins in catalog.yaml, the Makefile and Dockerfile.agent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codexk8s_pipelines.agents.agent_kinds import effective_model
from codexk8s_pipelines.agents.agent_setup import AgentSettings, codex_config, opencode_config, prepare
from codexk8s_pipelines.agents.catalog import CATALOG_ENV_VAR, load_catalog
from codexk8s_pipelines.config import ConfigError
from tests.helpers import REPO_ROOT


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV_VAR, raising=False)


def _load(tmp_path: Path, text: str):
    path = tmp_path / "agents.yaml"
    path.write_text(text, encoding="utf-8")
    return load_catalog(path)


def test_codex_stays_the_default_and_every_kind_has_a_model_its_pinned_version_knows() -> None:
    catalog = load_catalog()
    assert {a.kind for a in catalog.agents.values()} == {"codex"}
    assert set(catalog.kinds) == {"codex", "claude-code", "opencode", "aider"}
    for kind in catalog.kinds.values():
        assert not kind.known_models or kind.default_model in kind.known_models
    assert catalog.for_role("dev").default_model == "gpt-5.5"  # in Codex 0.169.0's bundled list; gpt-5.4 is not


def test_one_line_switches_a_role_to_claude_code_and_a_gateway_is_set_once_per_kind(tmp_path: Path) -> None:
    catalog = _load(
        tmp_path,
        """
        kinds:
          claude-code: {endpoint: {base_url: "http://gateway.internal:8080", key_secret: model-gateway/key}}
          codex: {endpoint: {base_url: "http://gateway.internal:8080/v1"}}
        agents:
          dev: {kind: claude-code}
        """,
    )
    dev = catalog.for_role("dev")
    assert dev.kind == "claude-code" and dev.command[0] == "claude" and dev.default_model == "claude-sonnet-4-6"
    assert dev.timeout_minutes == 120  # the role's own settings are kept
    assert dev.endpoint.base_url == "http://gateway.internal:8080" and dev.endpoint.key_env == "ANTHROPIC_API_KEY"
    assert dev.env_from_secrets == {"ANTHROPIC_API_KEY": "model-gateway/key"}  # the pod gets the key from it
    qa = catalog.for_role("qa")
    assert qa.kind == "codex" and qa.endpoint.base_url == "http://gateway.internal:8080/v1"
    assert qa.endpoint.key_env == "OPENAI_API_KEY"  # the preset's field kept beside the user's


def test_a_users_own_command_is_a_custom_agent_run_as_written(tmp_path: Path) -> None:
    catalog = _load(tmp_path, "agents:\n  dev: {command: [my-agent, '{workdir}']}\n")
    dev = catalog.for_role("dev")
    assert dev.kind == "custom" and dev.command == ["my-agent", "{workdir}"]
    launch = AgentSettings(kind="custom")
    prepared = prepare(launch, ["my-agent", "/w"], tmp_path / "home", {})
    assert prepared.command == ["my-agent", "/w"] and not prepared.env


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kinds:\n  codex: {endpoint: {key_env: CODEXK8S_GITHUB_TOKEN}}\n", "cannot be given to an agent"),
        ("kinds:\n  codex: {endpoint: {base_url: gateway.internal}}\n", "expected an http(s) URL"),
        ("kinds:\n  codex: {endpoint: {key_secret: sk-live-abcdefghijklmnopqrstuvwx}}\n", "secret reference"),
        ("agents:\n  dev: {kind: cursor}\n", "kind"),
    ],
)
def test_a_bad_endpoint_or_kind_is_refused_at_load_time_with_its_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert expected in str(info.value) and str(tmp_path / "agents.yaml") in str(info.value)
    assert "sk-live" not in str(info.value)  # a pasted key is never echoed


def test_a_model_the_pinned_agent_does_not_know_falls_back_to_its_default_and_says_so() -> None:
    assert effective_model("gpt-5.5", "gpt-5.5", ["gpt-5.5"]) == ("gpt-5.5", None)
    model, note = effective_model("gpt-5.4", "gpt-5.5", ["gpt-5.5"])
    assert model == "gpt-5.5" and note and "gpt-5.4" in note
    assert effective_model("anything", "m", []) == ("anything", None)  # no list: a gateway's own names pass


def test_codex_and_opencode_configuration_carry_the_endpoint_mcp_and_network_policy() -> None:
    launch = AgentSettings(
        kind="codex",
        model="gpt-5.5",
        endpoint={"base_url": "http://127.0.0.1:9/v1", "key_env": "GATEWAY_KEY"},
        mcp_tools=["docs_search", "run_status_report"],
    )
    toml = codex_config(launch, "http://mcp.local/mcp", network_access=False, key_env="GATEWAY_KEY")
    assert 'model_provider = "codexk8s"' in toml and 'base_url = "http://127.0.0.1:9/v1"' in toml
    assert 'env_key = "GATEWAY_KEY"' in toml and "request_max_retries = 1" in toml
    assert 'enabled_tools = ["docs_search", "run_status_report"]' in toml and "network_access = false" in toml
    assert "[analytics]\nenabled = false" in toml
    config = opencode_config(launch.model_copy(update={"kind": "opencode"}), "http://mcp.local/mcp")
    assert config["model"] == "codexk8s/gpt-5.5"
    assert config["provider"]["codexk8s"]["options"]["apiKey"] == "{env:GATEWAY_KEY}"  # the name, not the key
    assert config["mcp"]["codexk8s"]["url"] == "http://mcp.local/mcp" and config["permission"]["webfetch"] == "deny"


def test_the_pins_agree_in_the_catalog_the_makefile_and_the_agent_image() -> None:
    kinds = load_catalog().kinds
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    dockerfile = (REPO_ROOT / "Dockerfile.agent").read_text(encoding="utf-8")
    for kind in kinds.values():
        if kind.package == "aider-chat":
            assert f"aider-chat=={kind.version}" in makefile
        else:
            assert f"{kind.package}@{kind.version}" in makefile
        assert re.search(rf"ARG [A-Z_]+_VERSION={re.escape(kind.version)}\b", dockerfile), kind.package
