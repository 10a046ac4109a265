"""Keep secrets out of anything the platform writes down (audit payloads, comments, logs).

Every pattern here runs on text an untrusted caller chose (an agent's arguments, before its token is even
checked), so each must be linear in the text's length: no lazy or nested quantifier that rescans the rest of
the text from many starting points. A PEM private key is found by its BEGIN line and then one search for its
END line; a key without an END line is masked to the end of the text (fail closed).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# The platform's own run-scoped MCP tokens (mcp/tokens.py: `ck8s1.<payload>.<signature>`) are credentials too.
RUN_TOKEN_PREFIX = "ck8s1"
# A mapping key that says its value is a secret.
_SECRET_KEY = re.compile(r"(token|password|passwd|secret|private[_-]?key|authorization|api[_-]?key)", re.I)
_SECRET_VALUE = re.compile(
    r"gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"  # user:password@ in URLs
    r"|(?<=\bpassword=)(?:'(?:[^'\\]|\\.)*'|[^\s']+)"  # libpq's keyword form: host=… password=… (a conninfo)
    rf"|{RUN_TOKEN_PREFIX}\.[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{16,}}"
    # Model providers' keys, which an agent holds (the runner also redacts the literal value it hands over; these
    # shapes cover a key the platform never saw, and a pod's runner without it): OpenAI, Anthropic, OpenRouter and
    # most OpenAI-compatible services (`sk-`, then a digit within the first 40), Google (`AIza`), AWS access key ids,
    # Slack. Each needs a run of key characters, and `sk-` must start a word (not `task-…`).
    r"|(?<![A-Za-z0-9_-])sk-(?=[A-Za-z0-9_-]{0,40}[0-9])[A-Za-z0-9_-]{20,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bxox[abprs]-[0-9A-Za-z-]{10,}"
)
# Bounded key-type words ("RSA", "OPENSSH", "ENCRYPTED"): a fixed amount of work per BEGIN, whatever follows.
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z ]{0,40}PRIVATE KEY-----")


def _mask_private_keys(text: str) -> str:
    """Each BEGIN…END private key block replaced by REDACTED, in one left-to-right pass: after a BEGIN, one search
    for the next END; with none, the rest of the text is the key's (a truncated key is still a secret)."""
    if "PRIVATE KEY-----" not in text:
        return text
    parts: list[str] = []
    pos = 0
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        parts += [text[pos : begin.start()], REDACTED]
        end = _PEM_END.search(text, begin.end())
        if end is None:
            return "".join(parts)
        pos = end.end()
    parts.append(text[pos:])
    return "".join(parts)


def redact_text(text: str) -> str:
    return _SECRET_VALUE.sub(REDACTED, _mask_private_keys(text))


def encoded_forms(secret: str) -> list[str]:
    """What `secret` looks like in the encodings an agent reaches for when it is told to hide a value: hexadecimal
    (both cases) and base64 (standard and URL-safe), the latter wherever the secret starts in the encoded text.

    Base64 writes 3 bytes as 4 characters, so the secret's own characters depend on its offset in the text (0, 1 or 2
    bytes past a group's start); the characters computed only from its bytes are the same in any text at that offset.
    Those, for each offset. Not every encoding (a reversed or split key still passes): the literal and these."""
    raw = secret.encode("utf-8")
    forms = {raw.hex(), raw.hex().upper()}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii")
        first, last = -(-8 * offset // 6), (8 * (offset + len(raw)) - 6) // 6  # chars of the secret's bits alone
        middle = encoded[first : last + 1]
        forms |= {middle, middle.replace("+", "-").replace("/", "_")}
    return sorted(forms - {secret})


def redact_known(text: str, secrets: Iterable[str]) -> str:
    """`redact_text`, after replacing the literal `secrets` the caller knows (a token, a model key: shapes
    `redact_text` may not recognise), longest first, so that one holding another is replaced whole. In text of several
    lines a secret is also found broken over lines: `base64` and `openssl base64` wrap their output at 76 and 64
    characters, which no whole line of it holds (review of stop 36)."""
    known = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
    for secret in known:
        text = text.replace(secret, REDACTED)
    if "\n" in text and known:
        text = _broken_over_lines(known).sub(REDACTED, text)
    return redact_text(text)


@functools.lru_cache(maxsize=32)
def _broken_over_lines(secrets: tuple[str, ...]) -> re.Pattern[str]:
    """The secrets, each with a line break (and the indentation after it) allowed between any two characters. One
    optional break a gap, each followed by a fixed character: linear in the text."""
    return re.compile("|".join("(?:\r?\n[ \t]*)?".join(map(re.escape, secret)) for secret in secrets))


def _key(key: Any, taken: dict[Any, Any]) -> Any:
    """A dict key with any secret in it masked (an agent can send a token as an argument *name*); a masked key
    that collides with one already kept gets a number, so no value is lost."""
    if not isinstance(key, str):
        return key
    masked = redact_text(key)
    if masked not in taken:
        return masked
    n = 2
    while f"{masked} ({n})" in taken:
        n += 1
    return f"{masked} ({n})"


def redact(value: Any) -> Any:
    """A copy of `value` with secret-looking keys' values, secret-looking strings and secrets inside keys replaced."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            out[_key(k, out)] = REDACTED if _SECRET_KEY.search(str(k)) else redact(v)
        return out
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
