"""What agent pods need besides the cluster basics (part of group `kubernetes`): their model API keys and the MCP
server. Secrets are read as metadata only: a key's presence inside a Secret is not checked, as that would mean
reading the value.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from .. import settings
from .base import Check, Context, cause, fail, ok, skip, warn

MCP_TIMEOUT_SECONDS = 5


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
