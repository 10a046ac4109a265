"""The agent catalog: which image, command, resources and secrets each role's agent runs with.

The packaged `catalog.yaml` holds one agent per role and always loads; a user file (`$CODEXK8S_AGENT_CATALOG`, or
the path given to `load_catalog`) overrides fields of those entries by name or adds custom agents. Everything is
validated when it is loaded, so that a typo in a command template or a token pasted into the file fails at
start-up with `<file>: <key.path>: <what was expected>`, not in the middle of a run.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .. import settings
from ..config.loader import (
    SECRET_INPUT_ERROR,
    ConfigError,
    format_validation_error,
    key_lines,
    read_text,
    yaml_mapping,
)
from ..domain.redaction import redact_text
from ..domain.stages import Role
from ..file_cache import ReadWhenChanged
from .agent_env import refuse_platform_secrets
from .agent_kinds import AgentKindSpec, apply_kind, merge_kinds
from .agent_setup import ModelEndpoint, NetworkPolicy, SandboxChoice
from .transcript import AgentKind

CATALOG_ENV_VAR = settings.AGENT_CATALOG_VAR
DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

DEFAULT_IMAGE = "ghcr.io/codex-k8s/agent-runner:latest"
# The Codex CLI (`codex exec`): non-interactive, sandboxed to the checkout, the prompt read from stdin (`-`).
# `--skip-git-repo-check` because the runner may hand over a worktree the CLI does not recognise as trusted;
# `--json` because the runner judges the run and reads the usage from its events (agent_kinds: the presets of the
# four agent programs in catalog.yaml `kinds:`; agent_setup: their endpoint, MCP, sandbox and session settings).
DEFAULT_COMMAND: tuple[str, ...] = (
    "codex",
    "exec",
    "--json",
    "--model",
    "{model}",
    "--config",
    "model_reasoning_effort={reasoning}",
    "--sandbox",
    "workspace-write",
    "--skip-git-repo-check",
    "--cd",
    "{workdir}",
    "-",
)
# The platform's label value `extra-high` is spelled `xhigh` by the Codex CLI.
DEFAULT_REASONING_ALIASES: dict[str, str] = {"extra-high": "xhigh"}

PLACEHOLDERS: tuple[str, ...] = ("model", "reasoning", "workdir", "prompt_file")
McpTool = Literal[
    "docs_search",
    "docs_change_impact",
    "runs_list",
    "run_lookup",
    "issue_trace",
    "budget_status",
    "run_status_report",
    "github_labels_list",
    "github_labels_transition",
]
MCP_TOOLS: tuple[str, ...] = get_args(McpTool)

_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A Kubernetes secret name (DNS subdomain) and a data key within it.
_SECRET_REF = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[-._A-Za-z0-9]{1,253}$")


def _placeholders_known(arg: str) -> str:
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(arg) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid command template ({exc}); write a literal brace as '{{{{' or '}}}}'") from None
    for name, spec, conv in fields:
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{name}}}; expected one of: {known}")
        if spec or conv:
            raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
    return arg


def _quantity(value: str) -> str:
    match = _QUANTITY.match(value)
    if match is None or float(match.group(1)) == 0:
        raise ValueError("expected a positive Kubernetes quantity such as '500m', '1', '2Gi'")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, '_')")
    return value


def _secret_ref(value: str) -> str:
    # The value is never echoed: if it is a pasted token, the error must not copy it into a log.
    if not _SECRET_REF.match(value) or redact_text(value) != value:
        raise PydanticCustomError(
            SECRET_INPUT_ERROR,
            "expected a Kubernetes secret reference 'secret-name/key', not a literal value; "
            "secrets are read from Kubernetes secrets or the environment, never from this file",
        )
    return value


def _number_as_text(value: Any) -> Any:
    # YAML reads `cpu: 1` as an int; a quantity is text.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Quantity = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_quantity)]
CommandArg = Annotated[str, AfterValidator(_placeholders_known)]
EnvName = Annotated[str, AfterValidator(_env_name)]
SecretRef = Annotated[str, AfterValidator(_secret_ref)]


class AgentSpec(BaseModel):
    """One agent: the container it runs in, the command line (a template) and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    role: Role
    image: str = Field(default=DEFAULT_IMAGE, min_length=1)
    command: list[CommandArg] = Field(default_factory=lambda: list(DEFAULT_COMMAND), min_length=1)
    prompt_via: Literal["stdin", "file"] = "stdin"
    default_model: str = Field(default="gpt-5.5", min_length=1)
    default_reasoning: str = Field(default="high", min_length=1)
    reasoning_aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REASONING_ALIASES))
    timeout_minutes: int = Field(default=60, gt=0)
    cpu: Quantity = "1"
    memory: Quantity = "2Gi"
    env_from_secrets: dict[EnvName, SecretRef] = Field(default_factory=dict)
    mcp_tools: list[McpTool] = Field(default_factory=list)
    # The agent program (catalog.yaml `kinds:`); a user entry with its own `command` and no kind is `custom`.
    kind: AgentKind = "codex"
    known_models: list[str] = Field(default_factory=list)
    endpoint: ModelEndpoint = Field(default_factory=ModelEndpoint)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    sandbox: SandboxChoice = "auto"

    @field_validator("env_from_secrets")
    @classmethod
    def _no_platform_secret(cls, value: dict[str, str]) -> dict[str, str]:
        # The agent is untrusted: a catalog entry may declare its own model keys, never the platform's secrets.
        refuse_platform_secrets(value)
        return value

    @model_validator(mode="after")
    def _prompt_file_is_passed(self) -> AgentSpec:
        # An agent told to read its prompt from a file must be given the file's path somewhere on its command line.
        if self.prompt_via == "file" and not any("{prompt_file}" in arg for arg in self.command):
            raise ValueError("prompt_via is 'file' but the command has no {prompt_file} placeholder")
        return self

    def render_command(
        self,
        model: str | None = None,
        reasoning: str | None = None,
        workdir: str | os.PathLike[str] = ".",
        prompt_file: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        """The command line with its placeholders filled; the agent's defaults stand in for a missing model."""
        level = reasoning or self.default_reasoning
        values = {
            "model": model or self.default_model,
            "reasoning": self.reasoning_aliases.get(level, level),
            "workdir": os.fspath(workdir),
            "prompt_file": None if prompt_file is None else os.fspath(prompt_file),
        }
        if values["prompt_file"] is None and any("{prompt_file}" in arg for arg in self.command):
            raise ValueError(f"agent {self.name!r}: the command needs {{prompt_file}} but no prompt file was given")
        return [arg.format(**values) for arg in self.command]


class UnknownAgentError(KeyError):
    """No agent for a role or name; the message lists what the catalog has."""

    def __init__(self, wanted: str, known: Mapping[str, AgentSpec]) -> None:
        super().__init__(wanted)
        self.wanted = wanted
        self.known = dict(known)

    def __str__(self) -> str:
        agents = ", ".join(f"{n} ({a.role.value})" for n, a in self.known.items()) or "none"
        return f"no agent for {self.wanted}; known agents: {agents}"


class AgentCatalog(BaseModel):
    """All agents by name. An agent named after a role is that role's agent; others are custom agents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: dict[str, AgentSpec]
    kinds: dict[AgentKind, AgentKindSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        # The mapping key is the agent's name; writing it twice in YAML would only invite a mismatch.
        # Fields an entry leaves out come from its kind's preset (agent_kinds.apply_kind).
        if isinstance(data, dict) and isinstance(data.get("agents"), dict):
            declared = data.get("kinds")
            kinds = declared if isinstance(declared, dict) else {}
            agents = {
                key: (apply_kind({"name": key, **entry}, kinds) if isinstance(entry, dict) else entry)
                for key, entry in data["agents"].items()
            }
            data = {**data, "agents": agents}
        return data

    @model_validator(mode="after")
    def _every_role_has_an_agent(self) -> AgentCatalog:
        roles = {a.role for a in self.agents.values()}
        missing = [r.value for r in Role if r not in roles]
        if missing:
            raise ValueError(f"no agent for role(s): {', '.join(missing)}; add an agent named after each")
        return self

    def for_role(self, role: Role | str) -> AgentSpec:
        """The agent named like the role, else the first custom agent declared with that role."""
        try:
            wanted = Role(str(role).strip().lower())
        except ValueError:
            raise UnknownAgentError(f"role {role!r}", self.agents) from None
        named = self.agents.get(wanted.value)
        if named is not None and named.role is wanted:
            return named
        for spec in self.agents.values():
            if spec.role is wanted:
                return spec
        raise UnknownAgentError(f"role {wanted.value!r}", self.agents)

    def agent(self, name: str) -> AgentSpec:
        """A custom agent (or a role's agent) by its name."""
        try:
            return self.agents[name]
        except KeyError:
            raise UnknownAgentError(f"agent {name!r}", self.agents) from None

    def render_command(
        self,
        spec: AgentSpec,
        model: str | None = None,
        reasoning: str | None = None,
        workdir: str | os.PathLike[str] = ".",
        prompt_file: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        """`spec`'s command line with {model}, {reasoning}, {workdir} and {prompt_file} filled."""
        return spec.render_command(model, reasoning, workdir, prompt_file)


def _read_mapping(path: Path) -> tuple[dict[str, Any], str]:
    """The file's mapping, and its text (for the lines of its keys, `parse_catalog`)."""
    text = read_text(path)
    return yaml_mapping(text, path, expected="a mapping with 'agents'"), text


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The user's file over the packaged one: an entry of the same name has its given fields replaced."""
    merged = {**override, "agents": dict(base.get("agents") or {})}
    if "kinds" in base or "kinds" in override:
        kinds = override.get("kinds")
        merged["kinds"] = merge_kinds(base.get("kinds"), kinds) if isinstance(kinds, dict | None) else kinds
    user_agents = override.get("agents")
    if not isinstance(user_agents, dict):
        if "agents" in override:
            merged["agents"] = user_agents  # let validation report the wrong type against the user's file
        return merged
    for name, entry in user_agents.items():
        previous = merged["agents"].get(name)
        both_maps = isinstance(previous, dict) and isinstance(entry, dict)
        merged["agents"][name] = {**previous, **entry} if both_maps else entry
    return merged


def _consistency_problems(raw: dict[str, Any]) -> list[str]:
    """Rules across keys that pydantic reports without a key path: name = key, a role's agent has that role."""
    problems: list[str] = []
    agents = raw.get("agents")
    if not isinstance(agents, dict):
        return problems
    roles = {r.value for r in Role}
    for key, entry in agents.items():
        if not isinstance(entry, dict):
            continue
        if "name" in entry and entry["name"] != key:
            problems.append(f"agents.{key}.name: must equal its key {key!r}, or be left out (got {entry['name']!r})")
        role = entry.get("role")
        if key in roles and role is not None and str(role) != key:
            problems.append(
                f"agents.{key}.role: an agent named after role {key!r} must have that role (got {role!r}); "
                "give a custom agent another name"
            )
    return problems


def parse_catalog(raw: dict[str, Any], source: Path | str, text: str | None = None) -> AgentCatalog:
    """Validate an already-merged catalog mapping, naming `source` in every problem, and with `text` (the file's
    YAML) the line of an unknown key, as the platform's configuration does: a typo in an agent deep in a long
    catalog was named by its key path alone."""
    problems = _consistency_problems(raw)
    if problems:
        raise ConfigError(source, problems)
    try:
        return AgentCatalog.model_validate(raw)
    except ValidationError as exc:
        hint = "agent names are free; see codexk8s_pipelines/agents/catalog.yaml for the keys of an agent"
        lines = None if text is None else key_lines(text)
        problems = format_validation_error(exc, source, AgentCatalog, unknown_key_hint=hint, key_lines=lines)
        raise ConfigError(source, problems) from None


def load_catalog(path: Path | str | None = None) -> AgentCatalog:
    """The packaged catalog with the user's file (`path`, else `$CODEXK8S_AGENT_CATALOG`) merged over it."""
    default_raw, default_text = _read_mapping(DEFAULT_CATALOG_PATH)
    default = parse_catalog(default_raw, DEFAULT_CATALOG_PATH, default_text)
    if path is None:
        env = os.environ.get(CATALOG_ENV_VAR, "").strip()
        path = env or None
    if path is None:
        return default
    user_path = Path(path)
    user_raw, user_text = _read_mapping(user_path)
    return parse_catalog(_merge(default_raw, user_raw), user_path, user_text)


def _catalog_file() -> Path | None:
    path = os.environ.get(CATALOG_ENV_VAR, "").strip()
    return Path(path) if path else None


current_catalog = ReadWhenChanged(_catalog_file, load_catalog)
"""This process's catalog, read again only when `$CODEXK8S_AGENT_CATALOG` names another file or the file
changes (`file_cache`): the sensors ask on every tick, and parsing it each time is work for nothing."""


def agent_name_for_role(role: Role | str) -> str:
    """The catalog agent a role runs (the per-agent budgets' key); the role itself when the catalog does not load
    (the stage run reports the catalog's error)."""
    try:
        return current_catalog().for_role(role).name
    except Exception:
        return str(role) or "unknown"
