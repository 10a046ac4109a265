"""What agents need to run.

On Kubernetes (part of group `kubernetes`): the agent pods' model API keys and the MCP server. Secrets are read as
metadata only: a key's presence inside a Secret is not checked, as that would mean reading the value.

Locally (group `agents`, with CODEXK8S_ENV=local): each role's agent program on the PATH the runs use, bubblewrap
(the agent sandbox) able to create its namespaces, and each agent kind's model key variable set. The runs use the
environment of the running `make run` when one runs (its process's, read for names only), else the one `make run`
would give them: this shell's, with the checkout's `.tools/bin` (`make agents`) first on PATH. A key's value is never
read into a line, only whether it is set.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import settings
from .base import Check, Context, cause, fail, ok, skip, warn

MCP_TIMEOUT_SECONDS = 5
TOOLS_BIN = Path(".tools") / "bin"  # where `make agents` links the agent programs; `make run` puts it first on PATH
# The Makefile's target that installs the agent programs of catalog.yaml `kinds:` into TOOLS_BIN.
INSTALL_AGENTS = (
    "`make agents` (codex, claude, opencode and aider into .tools/bin, which `make run` puts first on the PATH of its "
    "runs; restart `make run` after it)"
)


def runs_environment() -> tuple[dict[str, str], str]:
    """The environment the local platform's runs get, and where it was read: the running `make run`'s process, else
    this shell's as `make run` would pass it on (the checkout's .tools/bin first on PATH when it exists)."""
    from ..platform_record import running_platform

    platform = running_platform()
    if platform is not None:
        import psutil

        try:
            return dict(
                psutil.Process(platform.owner_pid).environ()
            ), f"the running make run's, pid {platform.owner_pid}"
        except psutil.Error:
            pass
    environ = dict(os.environ)
    root = settings.checkout_root(Path.cwd()) or Path.cwd()
    tools = root / TOOLS_BIN
    if tools.is_dir():
        environ["PATH"] = os.pathsep.join([str(tools.resolve()), *filter(None, [environ.get("PATH")])])
        return environ, "this shell's as make run passes it on, .tools/bin first"
    return environ, "this shell's as make run passes it on"


def _role_agents(ctx: Context) -> dict[str, Any]:
    from ..domain.stages import Role

    catalog = ctx.catalog()
    return {role.value: catalog.for_role(role) for role in Role}


def check_local_agents(ctx: Context) -> list[Check]:
    """Group `agents`: what a local run needs to start its agent (a fresh `make run` could not: `agent_not_found`)."""
    try:
        agents = _role_agents(ctx)
    except Exception:
        return [skip("agents", "the agent catalog did not load (see catalog)")]
    environ, where = runs_environment()
    return [*_check_commands(agents, environ, where), _check_sandbox(environ, where), *_check_keys(agents, environ)]


def _check_commands(agents: Mapping[str, Any], environ: Mapping[str, str], where: str) -> list[Check]:
    name = "agents.commands"
    path = environ.get("PATH", "")
    by_command: dict[str, list[str]] = {}
    for role, agent in agents.items():
        by_command.setdefault(agent.command[0], []).append(role)
    found: list[str] = []
    checks: list[Check] = []
    for command, roles in by_command.items():
        located = command if os.sep in command else shutil.which(command, path=path)
        if located is not None and os.access(located, os.X_OK) and Path(located).is_file():
            found.append(f"{command} ({located}) for {', '.join(roles)}")
            continue
        catalog = f"${settings.AGENT_CATALOG_VAR}"
        if {agents[r].kind for r in roles} == {"custom"}:
            fix = f"install {command}, or correct these roles' agent command in {catalog}"
        else:
            fix = f"{INSTALL_AGENTS}; or give these roles another agent command in {catalog}"
        shown = "not executable" if os.sep in command else f"not on the PATH runs use ({where})"
        checks.append(
            fail(
                name,
                f"the agent command {command!r} of {', '.join(roles)} is {shown}: their runs fail (agent_not_found)",
                fix,
            )
        )
    if not checks:
        checks.append(ok(name, "; ".join(found)))
    return checks


def _check_sandbox(environ: Mapping[str, str], where: str) -> Check:
    from ..agents import sandbox as sb

    name = "agents.sandbox"
    if sb.opted_out(environ):
        return warn(
            name,
            f"{sb.OPT_OUT_ENV_VAR} is set: agents run WITHOUT a sandbox (they can read the runner's files and "
            "environment)",
            f"unset {sb.OPT_OUT_ENV_VAR} and install bubblewrap",
        )
    bwrap = environ.get(sb.BWRAP_ENV_VAR) or shutil.which("bwrap", path=environ.get("PATH", ""))
    if bwrap is None:
        return fail(
            name,
            f"bubblewrap (bwrap) is not on the PATH runs use ({where}): every agent run fails",
            f"install the Debian package 'bubblewrap' (`make run` does when run as root), or set {sb.BWRAP_ENV_VAR} "
            "to its path",
        )
    try:
        sb.probe(bwrap)
    except sb.SandboxUnavailable as exc:
        return fail(name, str(exc), "allow unprivileged user namespaces on this machine, or run in a VM or container")
    return ok(name, f"bubblewrap at {bwrap} creates the agent sandbox's namespaces")


def _check_keys(agents: Mapping[str, Any], environ: Mapping[str, str]) -> list[Check]:
    name = "agents.model_keys"
    # (key variable, gateway) -> kind -> roles
    by_key: dict[tuple[str, str], dict[str, list[str]]] = {}
    for role, agent in agents.items():
        if agent.kind == "custom":
            continue  # a command of its own: what it needs is its own business (env_from_secrets)
        endpoint = agent.endpoint
        by_key.setdefault((endpoint.key_env, endpoint.base_url or ""), {}).setdefault(agent.kind, []).append(role)
    checks: list[Check] = []
    present: list[str] = []
    for (key_env, base_url), kinds in sorted(by_key.items()):
        users = "; ".join(f"{kind}: {', '.join(roles)}" for kind, roles in kinds.items())
        if environ.get(key_env):
            present.append(f"{key_env} ({users})")
            continue
        message = f"{key_env} is not set ({users})"
        fix = f"export {key_env}=<the API key> in the shell that starts `make run`, then restart it"
        if base_url:  # a gateway may take no key
            checks.append(warn(name, f"{message}: fine only if the gateway at {base_url} needs no key", fix))
        else:
            checks.append(fail(name, f"{message}: their runs cannot reach the model", fix))
    if present:
        checks.insert(0, ok(name, f"set (values not read): {'; '.join(present)}"))
    return checks or [skip(name, "every agent runs a custom command")]


def _secret_exists(kube: Any, ns: str, name: str) -> tuple[bool | None, str]:
    """(True, "") found, (False, "") missing, (None, why) unknown; metadata only (PartialObjectMetadata)."""
    from .kubernetes_checks import _api_error, secret_metadata

    try:
        secret_metadata(kube, ns, name)
    except Exception as exc:
        status, why = _api_error(exc)
        if status == 404:
            return False, ""
        return None, f"{status}: {why}" if status else why
    return True, ""


def check_model_keys(ctx: Context, kube: Any, ns: str) -> list[Check]:
    """Every model key Secret the agent catalog names exists in the agent namespace."""
    name = "kubernetes.model_keys"
    try:
        catalog = ctx.catalog()
    except Exception:
        return [skip(name, "the agent catalog did not load (see catalog)")]
    refs: dict[str, list[str]] = {}
    keyless: list[str] = []
    for agent in catalog.agents.values():
        key_env = agent.endpoint.key_env
        ref = agent.env_from_secrets.get(key_env)
        if ref:
            refs.setdefault(ref, []).append(agent.name)
        else:
            keyless.append(f"{agent.name} ({key_env})")
    checks: list[Check] = []
    if keyless:
        checks.append(
            fail(
                name,
                f"agents without a model key Secret: {', '.join(keyless)}; their runs would fail",
                "set modelCredentials in the codex-k8s chart (or endpoint.key_secret in the agent catalog)",
            )
        )
    for ref, agents in sorted(refs.items()):
        secret, _, key = ref.partition("/")
        found, why = _secret_exists(kube, ns, secret)
        if found is False:
            checks.append(
                fail(
                    name,
                    f"secret {secret} (model key {key} of {', '.join(agents)}) does not exist in {ns}",
                    f"kubectl -n {ns} create secret generic {secret} --from-literal={key}=<the API key>",
                )
            )
        elif found is None:
            checks.append(skip(name, f"could not check secret {secret} in {ns} ({why}); check it by hand"))
    if not checks:
        listing = ", ".join(f"{ref} ({len(a)} agents)" for ref, a in sorted(refs.items()))
        checks.append(ok(name, f"model key Secrets exist in {ns}: {listing} (metadata only; keys not read)"))
    return checks


def check_mcp(environ: dict[str, str]) -> Check:
    """The MCP server answers at CODEXK8S_MCP_URL (any HTTP answer counts: the endpoint wants an MCP session)."""
    name = "kubernetes.mcp"
    url = (environ.get(settings.MCP_URL_VAR) or "").strip()
    if not url:
        return warn(
            name,
            f"{settings.MCP_URL_VAR} is not set: agents get no MCP tools (docs search, run history, labels, status)",
            "enable mcp in the codex-k8s chart, or set it to the MCP server's URL",
        )
    if not environ.get(settings.MCP_SECRET_VAR):
        return fail(
            name,
            f"{settings.MCP_SECRET_VAR} is not set: runs cannot sign their agents' MCP tokens",
            "create the Secret named by mcp.secret.existingSecret in the codex-k8s chart",
        )
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=MCP_TIMEOUT_SECONDS) as r:
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except Exception as exc:
        return fail(
            name,
            f"the MCP server at {url} does not answer: {cause(exc)}",
            "check the MCP Deployment and Service of the codex-k8s chart (kubectl get pods -l "
            "app.kubernetes.io/component=mcp) and the NetworkPolicy",
        )
    return ok(name, f"the MCP server at {url} answers (HTTP {status})")
