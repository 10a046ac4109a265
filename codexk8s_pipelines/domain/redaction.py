"""Keep secrets out of anything the platform writes down (audit payloads, comments, logs)."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
# The platform's own run-scoped MCP tokens (mcp/tokens.py: `ck8s1.<payload>.<signature>`) are credentials too.
RUN_TOKEN_PREFIX = "ck8s1"
_SECRET_KEY = re.compile(r"(token|password|passwd|secret|private[_-]?key|authorization|api[_-]?key)", re.I)
_SECRET_VALUE = re.compile(
    r"gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"  # user:password@ in URLs
    rf"|{RUN_TOKEN_PREFIX}\.[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{16,}}"
)


def redact_text(text: str) -> str:
    return _SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of `value` with secret-looking keys' values and secret-looking strings replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED if _SECRET_KEY.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
