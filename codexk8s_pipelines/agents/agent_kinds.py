"""The four real agent programs as catalog presets: Codex CLI (the default), Claude Code, OpenCode and aider.

`catalog.yaml` has a `kinds:` section, one entry per program: its pinned package and version, the command
template, how it takes the prompt, a default model the pinned version knows (and the list it knows, so that a
platform-wide model name one agent has never heard of does not reach it), its reasoning spelling, its model
endpoint (base URL and key variable, set once) and its network policy. An agent entry names its `kind`; every
field it does not set itself comes from that kind, so switching the dev role to Claude Code is one line:

    agents:
      dev: {kind: claude-code}

and pointing every Codex agent at a gateway is another, in the user's catalog:

    kinds:
      codex: {endpoint: {base_url: "http://gateway.internal/v1", key_env: OPENAI_API_KEY}}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .agent_setup import AgentSettings, ModelEndpoint, NetworkPolicy, SandboxChoice

PRESET_FIELDS: tuple[str, ...] = (
    "command",
    "prompt_via",
    "default_model",
    "known_models",
    "reasoning_aliases",
    "endpoint",
    "network",
    "sandbox",
)
DEFAULT_KIND = "codex"


class AgentKindSpec(BaseModel):
    """One agent program: what the catalog's agents of this kind start from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str = Field(min_length=1, description="npm or PyPI package the program comes from")
    version: str = Field(min_length=1, description="the pinned version (Makefile and Dockerfile.agent install it)")
    command: list[str] = Field(min_length=1)
    prompt_via: str = "stdin"
    default_model: str = Field(min_length=1)
    known_models: list[str] = Field(default_factory=list)
    reasoning_aliases: dict[str, str] = Field(default_factory=dict)
    endpoint: ModelEndpoint = Field(default_factory=ModelEndpoint)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    sandbox: SandboxChoice = "auto"


def merge_kinds(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    """The user's `kinds:` over the packaged ones; `endpoint` and `network` are merged key by key."""
    merged: dict[str, Any] = {k: dict(v) for k, v in (base or {}).items() if isinstance(v, dict)}
    for name, entry in (override or {}).items():
        if not isinstance(entry, dict):
            merged[name] = entry
            continue
        current = merged.setdefault(name, {})
        for key, value in entry.items():
            if key in ("endpoint", "network") and isinstance(value, dict) and isinstance(current.get(key), dict):
                current[key] = {**current[key], **value}
            else:
                current[key] = value
    return merged


def apply_kind(entry: dict[str, Any], kinds: dict[str, Any]) -> dict[str, Any]:
    """An agent entry with the fields it leaves out taken from its kind's preset (`custom` has none)."""
    if "kind" not in entry and "command" in entry:
        entry = {**entry, "kind": "custom"}  # a command of the user's own: run as written, no agent setup
    kind = entry.get("kind", DEFAULT_KIND)
    preset = kinds.get(kind) if isinstance(kind, str) else None
    if not isinstance(preset, dict):
        return entry
    defaults = {k: preset[k] for k in PRESET_FIELDS if k in preset}
    merged = {**defaults, **entry}
    for key in ("endpoint", "network"):  # an entry may set one field of these and keep the rest of the preset
        if isinstance(defaults.get(key), dict) and isinstance(entry.get(key), dict):
            merged[key] = {**defaults[key], **entry[key]}
    endpoint = merged.get("endpoint")
    if isinstance(endpoint, dict) and endpoint.get("key_secret") and endpoint.get("key_env"):
        # Kubernetes: the key comes from the Secret in the pod, like any other declared secret of the agent.
        declared = merged.get("env_from_secrets")
        secrets = declared if isinstance(declared, dict) else {}
        merged["env_from_secrets"] = {endpoint["key_env"]: endpoint["key_secret"], **secrets}
    return merged


def effective_model(requested: str | None, default_model: str, known_models: list[str]) -> tuple[str, str | None]:
    """The model to run, and a note when the requested one is not known to the pinned agent."""
    if not requested:
        return default_model, None
    if known_models and requested not in known_models:
        return default_model, (
            f"model {requested!r} is not known to this agent (it knows: {', '.join(known_models)}); "
            f"used its default {default_model!r}"
        )
    return requested, None


def launch_settings(
    spec: Any,
    model: str,
    reasoning: str,
    *,
    resume: bool = False,
    session_dir: str | None = None,
) -> AgentSettings:
    """What the runner needs to set up agent `spec` (a catalog `AgentSpec`) for one run."""
    return AgentSettings(
        kind=spec.kind,
        model=model,
        reasoning=reasoning,
        endpoint=spec.endpoint,
        network=spec.network,
        sandbox=spec.sandbox,
        mcp_tools=list(spec.mcp_tools),
        resume=resume,
        session_dir=session_dir,
    )
