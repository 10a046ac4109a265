"""The agent's environment: an allow-list, never "ours minus what looks secret".

The agent is untrusted code (issue and PR text can steer it), so it gets only what it needs to work: `PATH`, a
private `HOME`, locale, `TERM`, the variables its catalog entry declares (model API keys from secrets, a provider
base URL), the MCP URL and its run-scoped MCP token, and the runner's non-secret pointers (result file, prompt
file, branch, mode, scope). Anything else the runner holds (the GitHub token, the App key, `CODEXK8S_MCP_SECRET`,
the database URL, Dagster's Pipes channel) is simply never copied.

A catalog entry or a runner spec that *asks* for a platform secret is refused outright (`platform_secret_reason`),
so that a mistake is an error at load time rather than a silent leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .. import settings

# What every agent gets from the runner's environment when it is set there.
BASE_VARIABLES: tuple[str, ...] = ("PATH", "LANG", "LANGUAGE", "TERM", "TZ")
LOCALE_PREFIX = "LC_"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# The MCP pair is the one CODEXK8S_* exception: a run-scoped token (not the signing secret) and the server's URL.
MCP_PAIR: frozenset[str] = frozenset({settings.MCP_TOKEN_VAR, settings.MCP_URL_VAR})
# Set by the runner itself for the agent: where its result goes, where the prompt is, which branch, mode and scope.
RUNNER_CONTEXT: frozenset[str] = frozenset(
    {
        "CODEXK8S_RESULT_FILE",
        "CODEXK8S_PROMPT_FILE",
        "CODEXK8S_BRANCH",
        "CODEXK8S_MODE",
        "CODEXK8S_WRITE_SCOPE",
    }
)
_NAMED_PLATFORM_SECRETS: dict[str, str] = {
    settings.GITHUB_TOKEN_VAR: "the GitHub token is for the runner's push only",
    settings.GITHUB_APP_PRIVATE_KEY_VAR: "the GitHub App private key mints tokens for every installation",
    settings.MCP_SECRET_VAR: "the MCP signing secret would let the agent forge tokens for any repository",
    settings.DATABASE_URL_VAR: "the platform database holds the audit trail",
    "GITHUB_TOKEN": "a GitHub token is for the runner's push only",
    "GH_TOKEN": "a GitHub token is for the runner's push only",
    "DATABASE_URL": "a database URL gives access to the platform database",
    "PGPASSWORD": "a database password gives access to the platform database",
}
_DATABASE_URL = re.compile(r"(^|_)DATABASE_URL$|^PG(PASSWORD|PASSFILE|SERVICEFILE)$", re.IGNORECASE)
_NEVER_PREFIXES = ("DAGSTER_", "GIT_")


def platform_secret_reason(name: str) -> str | None:
    """Why `name` may never be handed to an agent, or None when it may (subject to being declared).

    Refused: the GitHub token or App key, the MCP signing secret, any database URL or password, anything
    `CODEXK8S_*` other than the MCP pair, Dagster's own variables and git's redirections.
    """
    upper = name.upper()
    if upper in _NAMED_PLATFORM_SECRETS:
        return _NAMED_PLATFORM_SECRETS[upper]
    if _DATABASE_URL.search(name):
        return "a database URL or password gives access to the platform database"
    if upper.startswith("CODEXK8S_") and upper not in MCP_PAIR:
        return "CODEXK8S_* variables are the platform's; only CODEXK8S_MCP_URL and CODEXK8S_MCP_TOKEN reach agents"
    if upper.startswith(_NEVER_PREFIXES):
        return "Dagster's and git's variables are the runner's"
    return None


def refuse_platform_secrets(
    names: Iterable[str], message: str = "{name} cannot be given to an agent: {reason}"
) -> None:
    """Raise ValueError (`message` filled with the variable's `name` and the `reason`) if any of `names` is a
    platform secret: the spec's and the catalog's validators, each with its own wording."""
    for name in names:
        reason = platform_secret_reason(name)
        if reason is not None:
            raise ValueError(message.format(name=name, reason=reason))


def build_agent_env(
    base: Mapping[str, str],
    *,
    home: str,
    declared: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The agent's whole environment.

    `base` is the runner's environment; only the base variables, locale, and the `declared` names (the catalog
    entry's variables, e.g. `OPENAI_API_KEY`) are read from it. `extra` are values the runner sets itself: the
    spec's MCP pair and the runner context. `aliases` ({name: variable}) give the agent a variable of `base` under
    the name it reads (a model key: `CODEX_API_KEY` from the endpoint's `key_env`; empty when unset). A platform
    secret among `declared`, `extra` or the aliased variables is dropped here too (the spec and the catalog refuse
    them earlier, with an error); this is the last line, not the first.
    """
    env: dict[str, str] = {}
    for name, value in base.items():
        if name in BASE_VARIABLES or name.startswith(LOCALE_PREFIX):
            env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)
    for name in declared:
        if name in base and platform_secret_reason(name) is None:
            env[name] = base[name]
    for name, value in (extra or {}).items():
        if name in RUNNER_CONTEXT or platform_secret_reason(name) is None:
            env[name] = value
    for name, source in (aliases or {}).items():
        if platform_secret_reason(name) is None and platform_secret_reason(source) is None:
            env[name] = base.get(source, "")
    env["HOME"] = home
    return env


__all__ = [
    "BASE_VARIABLES",
    "MCP_PAIR",
    "RUNNER_CONTEXT",
    "build_agent_env",
    "platform_secret_reason",
    "refuse_platform_secrets",
]
