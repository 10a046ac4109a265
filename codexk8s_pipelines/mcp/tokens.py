"""Run-scoped tokens: what lets an agent call the platform's MCP tools for its own run, and nothing else.

Format (compact, URL-safe, one line): ``ck8s1.<payload>.<signature>`` where ``payload`` is the base64url
(unpadded) of a compact JSON object ``{"v": 1, "run": <correlation key>, "repo": "owner/name", "issue": N|null,
"pr": N|null, "exp": <epoch seconds>, "role": "<agent role>", "tools": ["<tool>", ...]}`` and ``signature`` is
the base64url HMAC-SHA256, keyed with the secret from ``$CODEXK8S_MCP_SECRET``, of the ASCII text
``ck8s1.<payload>``; ``repo`` is lower-case (and read as such from a token minted before). ``role`` and ``tools``
(the MCP tools the run's agent was given, from the agent catalog) are left out of a token minted without them; the
server then decides by the run's recorded role (`mcp/tools.py`).

Why HMAC and not a JWT library: one issuer and one verifier share a secret inside one platform, the claims are
fixed, and a 60-line format with no algorithm negotiation has no ``alg: none`` class of mistakes. Why the
scope is in the token rather than looked up: the MCP server must refuse another repository or issue even when
the database is slow or the run row is missing, and an agent cannot widen a scope it cannot re-sign. The tool list
is signed for the same reason: the agent's own MCP client is configured with it, but the agent is untrusted and
can reach the server without that client, so the server enforces exactly the list the client was given.

The secret never leaves this module: errors name the variable, never its value, and a `TokenError` says only
which check failed (malformed, bad signature, expired).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from .. import settings
from ..domain.correlation import parse_correlation_key
from ..domain.redaction import RUN_TOKEN_PREFIX

MCP_SECRET_VAR = settings.MCP_SECRET_VAR
TOKEN_PREFIX = RUN_TOKEN_PREFIX
TOKEN_VERSION = 1
MIN_SECRET_BYTES = 16
DEFAULT_TTL_SECONDS = 6 * 3600  # longer than any stage's agent deadline, short enough to be useless tomorrow
MAX_TOKEN_CHARS = 4096

TokenFailure = Literal["malformed", "bad_signature", "expired", "not_configured"]


class TokenError(ValueError):
    """A token the server must refuse. `reason` says which check failed; `scope` is set only for an expired
    token, whose signature was valid, so the refusal can still be audited under the run it belonged to."""

    def __init__(self, reason: TokenFailure, message: str, scope: RunScope | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.scope = scope


@dataclass(frozen=True)
class RunScope:
    """What a verified token allows: one run, one repository, its issue and/or PR, until `expires_at`; `tools` are
    the MCP tools of the run's `role` (None: the token does not say, an older one or one minted by hand).
    `repository` is lower-case, as the platform keys repositories (the docs index, correlation keys): a token minted
    for `Acme/Shop` searched the docs of nothing (review 41)."""

    run_key: str
    repository: str
    issue_number: int | None
    pr_number: int | None
    expires_at: int
    role: str | None = None
    tools: frozenset[str] | None = None

    @property
    def numbers(self) -> tuple[int, ...]:
        """The issue and PR numbers this run may touch (issue first)."""
        return tuple(n for n in (self.issue_number, self.pr_number) if n is not None)

    def owns_repository(self, repository: str) -> bool:
        """GitHub names are case-insensitive; correlation keys store them lower-cased."""
        return repository.strip().lower() == self.repository.lower()


def load_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """The signing secret from `$CODEXK8S_MCP_SECRET`; too short or missing is a configuration error."""
    raw = (environ if environ is not None else os.environ).get(MCP_SECRET_VAR) or ""
    secret = raw.strip().encode("utf-8")
    if not secret:
        raise TokenError("not_configured", f"no MCP token secret: set {MCP_SECRET_VAR}")
    if len(secret) < MIN_SECRET_BYTES:
        raise TokenError(
            "not_configured", f"{MCP_SECRET_VAR} is too short: use at least {MIN_SECRET_BYTES} random characters"
        )
    return secret


def _secret(secret: str | bytes | None) -> bytes:
    if secret is None:
        return load_secret()
    value = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(value.strip()) < MIN_SECRET_BYTES:
        raise TokenError("not_configured", f"the MCP token secret must have at least {MIN_SECRET_BYTES} characters")
    return value.strip()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, signing_input: str) -> bytes:
    return hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()


def _epoch(now: float | int | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()
    return float(now)


def _number(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value.strip()


def _tool_names(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError("tools must be a list of tool names")
    return sorted({_text(v, "each tool") for v in value})


def issue_token(
    run_key: str,
    repository: str,
    *,
    issue_number: int | None = None,
    pr_number: int | None = None,
    expires_at: int | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | int | datetime | None = None,
    secret: str | bytes | None = None,
    role: str | None = None,
    tools: Sequence[str] | None = None,
) -> str:
    """Mint a token for one run. The secret defaults to `$CODEXK8S_MCP_SECRET`; expiry to now + `ttl_seconds`.
    `role` and `tools` are the run's agent role and the MCP tools its agent is given (the catalog's `mcp_tools`):
    the server refuses any other tool.

    A correlation key that names another repository than `repository` is refused: a token whose two halves
    disagree would make the audit trail (keyed by run) and the scope checks (by repository) tell two stories.
    """
    key = (run_key or "").strip()
    repo = (repository or "").strip().lower()  # GitHub names are case-insensitive; the platform keys them lower-case
    if not key:
        raise ValueError("run_key is required")
    if not repo:
        raise ValueError("repository is required")
    issue, pr = _number(issue_number, "issue_number"), _number(pr_number, "pr_number")
    if issue is None and pr is None:
        raise ValueError("a run token needs an issue_number or a pr_number")
    try:
        parsed = parse_correlation_key(key)
    except ValueError:
        parsed = None  # a run started by hand from the UI may carry a free-form key
    if parsed is not None and parsed.repository.lower() != repo.lower():
        raise ValueError(f"run key {key!r} belongs to {parsed.repository}, not {repo}")
    exp = int(expires_at) if expires_at is not None else int(_epoch(now)) + int(ttl_seconds)
    payload: dict[str, Any] = {"v": TOKEN_VERSION, "run": key, "repo": repo, "issue": issue, "pr": pr, "exp": exp}
    if role is not None:
        payload["role"] = _text(role, "role")
    if tools is not None:
        payload["tools"] = _tool_names(tools)
    body = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    signing_input = f"{TOKEN_PREFIX}.{body}"
    return f"{signing_input}.{_b64encode(_sign(_secret(secret), signing_input))}"


def _malformed(detail: str) -> TokenError:
    return TokenError("malformed", f"token malformed: {detail}; expected {TOKEN_PREFIX}.<payload>.<signature>")


def verify_token(
    token: str, now: float | int | datetime | None = None, *, secret: str | bytes | None = None
) -> RunScope:
    """The scope of a valid token; `TokenError` naming the failed check otherwise.

    Order matters: the signature is checked before the payload is parsed, so untrusted JSON is never
    interpreted, and expiry is checked last, so "expired" is only ever said about a token we issued.
    """
    key = _secret(secret)
    if not isinstance(token, str) or not token.strip():
        raise _malformed("empty")
    text = token.strip()
    if len(text) > MAX_TOKEN_CHARS:
        raise _malformed(f"longer than {MAX_TOKEN_CHARS} characters")
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise _malformed("wrong shape or version")
    try:
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise _malformed("the signature is not base64url") from None
    if not hmac.compare_digest(signature, _sign(key, f"{parts[0]}.{parts[1]}")):
        raise TokenError(
            "bad_signature", "token has a bad signature: it was not issued by this platform or was altered"
        )
    try:
        payload = json.loads(_b64decode(parts[1]).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _malformed("the payload is not base64url JSON") from None
    try:
        if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
            raise ValueError(f"payload version is not {TOKEN_VERSION}")
        run, repo, exp = payload.get("run"), payload.get("repo"), payload.get("exp")
        if not isinstance(run, str) or not run or not isinstance(repo, str) or not repo:
            raise ValueError("run and repo must be non-empty strings")
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise ValueError("exp must be an integer")
        issue, pr = _number(payload.get("issue"), "issue"), _number(payload.get("pr"), "pr")
        if issue is None and pr is None:
            raise ValueError("issue or pr is required")
        role = _text(payload["role"], "role") if "role" in payload else None
        tools = frozenset(_tool_names(payload["tools"])) if "tools" in payload else None
    except ValueError as exc:
        raise _malformed(str(exc)) from None
    scope = RunScope(
        run_key=run, repository=repo.lower(), issue_number=issue, pr_number=pr, expires_at=exp, role=role, tools=tools
    )
    if _epoch(now) >= exp:
        when = datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise TokenError("expired", f"token expired at {when} (run {run}); ask the platform for a new one", scope)
    return scope
