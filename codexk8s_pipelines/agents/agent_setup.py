"""Make a real agent program ready to run: its model endpoint, its MCP access, its sandbox flag, the settings
that stop calls home and stalls, and the session it resumes, each written in that agent's own terms.

The catalog says *what* (an agent kind, a model endpoint set once, the MCP tools of the role, a network policy);
this module says *how* for each kind, inside the runner, so both runtimes (a local subprocess, a pod) apply it
the same way and no user restates a command line to use a gateway:

- **Codex CLI**: a `config.toml` in a private `CODEX_HOME` (a custom `model_providers` entry with the endpoint's
  base URL and key variable, since Codex ignores `OPENAI_BASE_URL`; bounded retries; analytics off;
  `mcp_servers.codexk8s` with the role's tools; `sandbox_workspace_write.network_access` from the policy), and
  the `--sandbox` flag chosen by a probe (`workspace-write` needs user namespaces, which a container's default
  seccomp profile forbids: Codex then fails every command silently). Resume: `codex exec resume <id> -`.
- **Claude Code**: `ANTHROPIC_BASE_URL`, the key as `ANTHROPIC_API_KEY`, no non-essential traffic, bounded
  retries, an `--mcp-config` file and the MCP tools added to `--allowedTools`. Resume: `--resume <id>`.
- **OpenCode**: an `OPENCODE_CONFIG` file with an OpenAI-compatible provider, the model, permissions and `mcp`;
  no model-list fetch, no autoupdate, no sharing. Resume: `--session <id>`.
- **aider**: `OPENAI_API_BASE` and the key as `OPENAI_API_KEY`, a pre-seeded price list (else it downloads one),
  its history files and analytics log outside the checkout (the log is where its usage is read from).

Session files of Codex and Claude Code are archived per branch after a run and put back before a revise, so the
revise continues the conversation; when that is impossible the revise starts fresh and the notes say why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import settings
from ..security.safe_files import UnsafeFile, copy_regular_file, no_symlink_on_the_way, walk_tree
from .agent_env import refuse_platform_secrets
from .transcript import AgentKind

SandboxChoice = Literal["auto", "workspace-write", "danger-full-access"]
PROVIDER_ID = "codexk8s"
MCP_SERVER_NAME = "codexk8s"
SESSION_RECORD = "session.json"
UNSHARE_PROBE = ("unshare", "-Ur", "true")
PROBE_TIMEOUT_SECONDS = 5.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Where each agent keeps a resumable session under its HOME, by session id.
# A session id as the agents make them (UUIDs, thread ids): nothing a glob or a path would read differently.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A kept session file's cap: a Codex rollout of a long run is a few MB; the archive lives in the platform's state.
# Also the cap of the other file an agent program keeps in its HOME for the runner: aider's analytics log
# (`_prepare_aider`, read by `usage.parse_usage`), a file of the same origin read the same way.
SESSION_FILE_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class _SessionFiles:
    """Where an agent keeps a session under its HOME: in `folder`, files named `name` (a pattern holding the id),
    `depth` folders below it (None: at any depth)."""

    folder: str
    name: str
    depth: int | None


_SESSION_FILES: dict[str, _SessionFiles] = {
    "codex": _SessionFiles(".codex/sessions", "*{id}.jsonl", None),  # sessions/YYYY/MM/DD/rollout-…-<id>.jsonl
    "claude-code": _SessionFiles(".claude/projects", "{id}.jsonl", 1),  # projects/<the project's folder>/<id>.jsonl
}


class ModelEndpoint(BaseModel):
    """Where an agent's model is: set once per agent kind (or agent), used by every runtime."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = Field(
        default=None, description="the provider's base URL (a gateway); unset: the agent's own default provider"
    )
    key_env: str = Field(default="OPENAI_API_KEY", description="the variable holding the API key in the runner")
    key_secret: str | None = Field(
        default=None, description="kubernetes: the Secret 'name/key' the key comes from in the pod"
    )

    @field_validator("key_env")
    @classmethod
    def _a_model_key_not_a_platform_secret(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name (letters, digits, '_')")
        refuse_platform_secrets([value], "{name} cannot be given to an agent as its model key: {reason}")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"expected an http(s) URL such as 'http://gateway:8080/v1', got {value!r}")
        return value


class NetworkPolicy(BaseModel):
    """What the agent may reach while it works, beyond its model endpoint (always reached by the agent itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mcp: bool = Field(default=True, description="the platform's MCP server")
    package_indexes: bool = Field(
        default=False, description="the network from the commands it runs (package indexes for installs and tests)"
    )


class AgentSettings(BaseModel):
    """What the runner needs to set a real agent up; travels in the runner spec (no secret in it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AgentKind = "custom"
    model: str = ""
    reasoning: str = ""
    endpoint: ModelEndpoint = Field(default_factory=ModelEndpoint)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    sandbox: SandboxChoice = "auto"
    mcp_tools: list[str] = Field(default_factory=list)
    resume: bool = Field(default=False, description="a revise: continue the branch's previous session if possible")
    session_dir: str | None = Field(default=None, description="where this branch's session is kept between runs")
    unreachable_grace_seconds: float = Field(default=60.0, gt=0)


@dataclass
class PreparedAgent:
    """The agent's final command line and the environment the setup adds; `notes` go to the log and audit."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    declared: list[str] = field(default_factory=list)
    key_aliases: dict[str, str] = field(default_factory=dict)
    """{variable the agent reads its model key from: the variable holding it in the runner}; the runner copies the
    value from its own environment (`agent_env.build_agent_env`)."""
    notes: list[str] = field(default_factory=list)
    sandbox: str | None = None
    resumed_session: str | None = None
    previous_session: str | None = None
    previous_usage: dict[str, Any] | None = None
    analytics_log: Path | None = None
    home: Path | None = None
    namespaces: bool | None = None
    """Whether user namespaces work where the agent runs (None: probe here)."""
    agent_home: str = ""
    """The home as the agent sees it (inside the platform's sandbox it is mounted elsewhere than on the host)."""

    def seen(self, *parts: str) -> str:
        """A path under the agent's home, spelled the way the agent sees it."""
        return "/".join([self.agent_home.rstrip("/"), *parts])


# ------------------------------------------------------------------------------------------------ probes


def user_namespaces_work(env: Mapping[str, str] | None = None) -> bool:
    """`unshare -Ur true`: whether Codex's `workspace-write` sandbox (bubblewrap) can work here."""
    if shutil.which(UNSHARE_PROBE[0]) is None:
        return False
    try:
        done = subprocess.run(
            UNSHARE_PROBE, env=dict(env) if env else None, capture_output=True, timeout=PROBE_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_sandbox(choice: SandboxChoice, probe: bool | None = None) -> tuple[str, str | None]:
    """The Codex sandbox flag for `choice`, and a note when `auto` had to fall back."""
    if choice != "auto":
        return choice, None
    works = user_namespaces_work() if probe is None else probe
    if works:
        return "workspace-write", None
    return "danger-full-access", (
        "sandbox: danger-full-access, because user namespaces are not available where the agent runs (inside the "
        "platform's own sandbox, or `unshare -Ur true` failed); that sandbox or the pod contains the agent"
    )


# ------------------------------------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class SessionRecord:
    kind: str
    session_id: str
    usage: dict[str, Any] | None = None


def read_session_record(session_dir: str | os.PathLike[str] | None) -> SessionRecord | None:
    if not session_dir:
        return None
    try:
        data = json.loads((Path(session_dir) / SESSION_RECORD).read_text(encoding="utf-8"))
        return SessionRecord(str(data["kind"]), str(data["session_id"]), data.get("usage"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def archive_session(
    kind: str, home: Path, session_dir: str | os.PathLike[str] | None, session_id: str | None, usage: dict | None
) -> str | None:
    """Keep the session files of this run for the branch's next revise; a note when nothing could be kept.

    Both the id (from the agent's own output) and the files (under the agent's HOME) are the agent's: an id must be
    a plain name (a `*` would glob other files), and a file is copied only if it is a regular file reached through
    no symlink (`security.safe_files`). A session file linked to `/proc/self/environ` would otherwise put the runner's
    own environment, its GitHub token among it, into the next agent's HOME. One such file and the session is not
    kept at all (a symlink among a session's files is the agent's doing, not the program's), and the one kept
    before stays whole."""
    if not session_dir or not session_id:
        return None
    if not _SESSION_ID.fullmatch(session_id):
        return f"session {session_id[:80]!r} not kept: not a session id the platform can resume"
    where = _SESSION_FILES.get(kind)
    if where is None:
        return f"session {session_id} not kept: {kind} sessions cannot be resumed by the platform"
    try:  # searching under a link would walk wherever it points, with the runner's rights
        no_symlink_on_the_way(home, where.folder)
    except UnsafeFile as exc:
        return f"session {session_id} not kept: {exc}"
    matches = _session_files(home, where, session_id)
    if not matches:
        return f"session {session_id} not kept: its file was not found under the agent's home"
    target = Path(session_dir)
    staging, files = target / "files.partial", target / "files"
    shutil.rmtree(staging, ignore_errors=True)
    refused: list[str] = []
    for relative in sorted(matches):
        dest = staging / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            copy_regular_file(no_symlink_on_the_way(home, relative), dest, max_bytes=SESSION_FILE_MAX_BYTES)
        except (OSError, ValueError) as exc:
            refused.append(f"{relative}: {exc}")
    if refused:
        shutil.rmtree(staging, ignore_errors=True)
        return f"session {session_id} not kept: " + "; ".join(refused)[:500]
    shutil.rmtree(files, ignore_errors=True)
    staging.rename(files)
    record = {"kind": kind, "session_id": session_id, "usage": usage}
    (target / SESSION_RECORD).write_text(json.dumps(record), encoding="utf-8")
    return None


def _session_files(home: Path, where: _SessionFiles, session_id: str) -> set[str]:
    """The files of session `session_id` under `home`, relative to it. Searched by the platform's bounded walk
    (`walk_tree`), not `Path.glob`: its `**` recursed once per folder on Python 3.11, and an agent's chain of 1,200
    folders under its sessions raised RecursionError out of the runner after the agent's turn."""
    top = home / where.folder
    name = where.name.format(id=session_id)
    found: set[str] = set()
    if not top.is_dir():
        return found
    for folder, names in walk_tree(top, too_deep=lambda _: None, unlistable=lambda _: None):
        if where.depth is None or len(folder.relative_to(top).parts) == where.depth:
            found.update((folder / n).relative_to(home).as_posix() for n in names if fnmatchcase(n, name))
    return found


def _restore_session(kind: str, home: Path, session_dir: str | None) -> tuple[SessionRecord | None, str | None]:
    """The previous session put back under `home`, or why a fresh session starts instead."""
    record = read_session_record(session_dir)
    if record is None:
        return None, "resume: no earlier session of this branch was kept; starting a fresh session"
    if record.kind != kind:
        return None, f"resume: the earlier session {record.session_id} is {record.kind}'s, not {kind}'s; fresh session"
    if kind not in _SESSION_FILES:
        return None, f"resume: {kind} sessions cannot be resumed by the platform; starting a fresh session"
    files = Path(session_dir or "") / "files"
    if not files.is_dir():
        return None, f"resume: the files of session {record.session_id} are gone; starting a fresh session"
    shutil.copytree(files, home, dirs_exist_ok=True)
    return record, None


# ------------------------------------------------------------------------------------------------ per agent


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def codex_config(launch: AgentSettings, mcp_url: str | None, *, network_access: bool, key_env: str) -> str:
    """The `config.toml` of one Codex run."""
    lines = ["check_for_update_on_startup = false"]
    if launch.endpoint.base_url:
        lines.insert(0, f"model_provider = {_toml_str(PROVIDER_ID)}")
    lines += ["", "[analytics]", "enabled = false"]
    if launch.endpoint.base_url:
        lines += [
            "",
            f"[model_providers.{PROVIDER_ID}]",
            'name = "codex-k8s model endpoint"',
            f"base_url = {_toml_str(launch.endpoint.base_url)}",
            f"env_key = {_toml_str(key_env)}",
            'wire_api = "responses"',
            "request_max_retries = 1",
            "stream_max_retries = 1",
            "stream_idle_timeout_ms = 300000",
        ]
    lines += ["", "[sandbox_workspace_write]", f"network_access = {'true' if network_access else 'false'}"]
    # Codex hides every *TOKEN*/*KEY*/*SECRET* variable from the commands it runs; the run-scoped MCP token is
    # meant for the agent (its MCP tools take it as an argument), the model key is not.
    lines += [
        "",
        "[shell_environment_policy]",
        "ignore_default_excludes = true",
        f'exclude = ["*KEY*", "*SECRET*", "*PASSWORD*", {_toml_str(key_env)}]',
    ]
    if mcp_url:
        tools = ", ".join(_toml_str(t) for t in launch.mcp_tools)
        lines += [
            "",
            f"[mcp_servers.{MCP_SERVER_NAME}]",
            f"url = {_toml_str(mcp_url)}",
            f"enabled_tools = [{tools}]",
            # `codex exec` runs with approval policy "never": without this every MCP call is refused.
            'default_tools_approval_mode = "approve"',
            "startup_timeout_sec = 20",
        ]
    return "\n".join(lines) + "\n"


def _under_tmp(path: Path) -> bool:
    resolved = path.resolve()
    return resolved == Path("/tmp") or Path("/tmp") in resolved.parents


def _set_flag(command: list[str], flag: str, value: str) -> list[str]:
    """`flag value` in `command`: replaced where present, else inserted before a trailing `-`."""
    out = list(command)
    if flag in out and out.index(flag) + 1 < len(out):
        out[out.index(flag) + 1] = value
        return out
    at = len(out) - 1 if out and out[-1] == "-" else len(out)
    return [*out[:at], flag, value, *out[at:]]


def _prepare_codex(
    launch: AgentSettings, command: list[str], home: Path, mcp_url: str | None, p: PreparedAgent
) -> None:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    sandbox, note = choose_sandbox(launch.sandbox, probe=p.namespaces)
    if sandbox == "workspace-write" and _under_tmp(Path(p.seen(".codex"))):
        # bubblewrap mounts a fresh /tmp: Codex's sandbox helper, linked under CODEX_HOME, would vanish and every
        # command would fail (measured with 0.169.0).
        sandbox = "danger-full-access"
        note = "sandbox: danger-full-access, because the agent's home is under /tmp where Codex's sandbox helper fails"
    if note:
        p.notes.append(note)
    p.sandbox = sandbox
    if launch.endpoint.base_url:
        key_env = launch.endpoint.key_env
    else:
        key_env = "CODEX_API_KEY"  # `codex exec` reads this one for its default provider
        p.key_aliases["CODEX_API_KEY"] = launch.endpoint.key_env
    (codex_home / "config.toml").write_text(
        codex_config(launch, mcp_url, network_access=launch.network.package_indexes, key_env=key_env),
        encoding="utf-8",
    )
    p.env["CODEX_HOME"] = p.seen(".codex")
    cmd = _set_flag(command, "--sandbox", sandbox)
    if "--json" not in cmd and len(cmd) > 1:
        cmd.insert(2, "--json")
    if p.resumed_session:
        at = len(cmd) - 1 if cmd and cmd[-1] == "-" else len(cmd)
        cmd = [*cmd[:at], "resume", p.resumed_session, *cmd[at:]]
    p.command = cmd


def _prepare_claude(
    launch: AgentSettings, command: list[str], home: Path, mcp_url: str | None, p: PreparedAgent
) -> None:
    if launch.endpoint.base_url:
        p.env["ANTHROPIC_BASE_URL"] = launch.endpoint.base_url.removesuffix("/v1")
    if launch.endpoint.key_env != "ANTHROPIC_API_KEY":
        p.key_aliases["ANTHROPIC_API_KEY"] = launch.endpoint.key_env
    p.env.update(
        {
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no update checks, telemetry or error reports
            "CLAUDE_CODE_MAX_RETRIES": "1",  # a dead endpoint fails in seconds, not minutes
            "DISABLE_AUTOUPDATER": "1",
            "ENABLE_TOOL_SEARCH": "false",  # the role's few MCP tools offered directly, not behind a tool search
        }
    )
    cmd = list(command)
    if mcp_url:
        config = home / ".codexk8s-mcp.json"
        servers = {MCP_SERVER_NAME: {"type": "http", "url": mcp_url}}
        config.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
        cmd += ["--mcp-config", p.seen(config.name)]
        tools = [f"mcp__{MCP_SERVER_NAME}__{t}" for t in launch.mcp_tools]
        if "--allowedTools" in cmd and tools:
            at = cmd.index("--allowedTools") + 1
            cmd[at] = ",".join([cmd[at], *tools])
    if not launch.network.package_indexes:
        cmd += ["--disallowedTools", "WebFetch,WebSearch"]
    if p.resumed_session:
        cmd += ["--resume", p.resumed_session]
    p.command = cmd


def opencode_config(launch: AgentSettings, mcp_url: str | None) -> dict[str, Any]:
    """The `OPENCODE_CONFIG` of one OpenCode run."""
    model = launch.model
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "snapshot": False,  # its own git copy of the checkout for undo: slow, and the runner keeps the history
        "permission": {
            "edit": "allow",
            "bash": "allow",
            "webfetch": "allow" if launch.network.package_indexes else "deny",
        },
    }
    if launch.endpoint.base_url:
        config["provider"] = {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "codex-k8s model endpoint",
                "options": {"baseURL": launch.endpoint.base_url, "apiKey": "{env:" + launch.endpoint.key_env + "}"},
                "models": {model: {"name": model}},
            }
        }
        config["model"] = f"{PROVIDER_ID}/{model}"
    if mcp_url:
        config["mcp"] = {MCP_SERVER_NAME: {"type": "remote", "url": mcp_url, "enabled": True}}
    return config


def _prepare_opencode(
    launch: AgentSettings, command: list[str], home: Path, mcp_url: str | None, p: PreparedAgent
) -> None:
    config = home / "opencode.json"
    config.write_text(json.dumps(opencode_config(launch, mcp_url), indent=2), encoding="utf-8")
    p.env.update(
        {
            "OPENCODE_CONFIG": p.seen(config.name),
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "XDG_DATA_HOME": p.seen(".local", "share"),
            "XDG_CONFIG_HOME": p.seen(".config"),
            "XDG_CACHE_HOME": p.seen(".cache"),
            "XDG_STATE_HOME": p.seen(".local", "state"),
        }
    )
    cmd = list(command)
    if launch.endpoint.base_url:
        cmd = _set_flag(cmd, "--model", f"{PROVIDER_ID}/{launch.model}")
    p.command = cmd


def _aider_price_list() -> Path | None:
    """litellm's bundled price list (beside the `aider` on PATH), which aider would otherwise download."""
    aider = shutil.which("aider")
    if aider is None:
        return None
    lib = Path(aider).resolve().parent.parent / "lib"
    found = sorted(lib.glob("python3*/site-packages/litellm/model_prices_and_context_window_backup.json"))
    return found[0] if found else None


def _prepare_aider(
    launch: AgentSettings, command: list[str], home: Path, mcp_url: str | None, p: PreparedAgent
) -> None:
    caches = home / ".aider" / "caches"
    caches.mkdir(parents=True, exist_ok=True)
    prices = _aider_price_list()
    if prices is not None:
        shutil.copyfile(prices, caches / "model_prices_and_context_window.json")
    else:
        (caches / "model_prices_and_context_window.json").write_text("{}", encoding="utf-8")
        p.notes.append("aider: no price list found to pre-seed; its cost stays unknown")
    if launch.endpoint.base_url:
        p.env["OPENAI_API_BASE"] = launch.endpoint.base_url
    if launch.endpoint.key_env != "OPENAI_API_KEY":
        p.key_aliases["OPENAI_API_KEY"] = launch.endpoint.key_env
    p.analytics_log = home / "aider-analytics.jsonl"
    p.env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "AIDER_ANALYTICS_LOG": p.seen(p.analytics_log.name),
            "AIDER_CHAT_HISTORY_FILE": p.seen("aider-chat.md"),
            "AIDER_INPUT_HISTORY_FILE": p.seen("aider-input"),
            "AIDER_CHECK_UPDATE": "false",
            "AIDER_ANALYTICS": "false",
            "AIDER_GITIGNORE": "false",
        }
    )
    if mcp_url:
        p.notes.append("aider has no MCP client: the platform's MCP tools are not available to it")
    p.command = list(command)


_PREPARERS = {
    "codex": _prepare_codex,
    "claude-code": _prepare_claude,
    "opencode": _prepare_opencode,
    "aider": _prepare_aider,
}


def prepare(
    launch: AgentSettings | None,
    command: Sequence[str],
    home: Path,
    env: Mapping[str, str],
    *,
    agent_home: str | None = None,
    namespaces: bool | None = None,
) -> PreparedAgent:
    """Write the agent's configuration under its private `home` and return the command and environment to use.

    `env` is what the runner would hand the agent so far (the MCP URL comes from it); `agent_home` is where the
    agent sees `home` (default: the same path); `namespaces` False says user namespaces do not work where the agent
    runs (inside the platform's own sandbox), None probes them here. A custom agent (or no launch settings) runs its
    command unchanged.
    """
    prepared = PreparedAgent(
        command=list(command), home=home, agent_home=agent_home or str(home), namespaces=namespaces
    )
    if launch is None or launch.kind not in _PREPARERS:
        return prepared
    home.mkdir(parents=True, exist_ok=True)
    prepared.declared.append(launch.endpoint.key_env)
    if launch.resume:
        record, note = _restore_session(launch.kind, home, launch.session_dir)
        if note:
            prepared.notes.append(note)
        if record is not None:
            prepared.resumed_session = record.session_id
            prepared.previous_session = record.session_id
            prepared.previous_usage = record.usage
            prepared.notes.append(f"resume: continuing session {record.session_id}")
    else:
        previous = read_session_record(launch.session_dir)
        prepared.previous_session = previous.session_id if previous else None
    mcp_url = env.get(settings.MCP_URL_VAR) or None
    if not launch.network.mcp:
        mcp_url = None
    _PREPARERS[launch.kind](launch, list(command), home, mcp_url, prepared)
    return prepared
