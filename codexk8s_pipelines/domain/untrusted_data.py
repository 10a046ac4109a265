"""Reading JSON and TOML that someone outside the platform wrote: one error for everything that can go wrong.

Why this exists: `json.loads` and `tomllib.loads` recurse once per nesting level, so a document such as
`"[" * 200_000`, which anyone who writes a repository's files, an agent's output, a webhook body or an API's
answer can send, raises RecursionError (or, for a huge one, MemoryError). Neither is a ValueError: both slipped
past the `except ValueError` around each parse and ended a sensor tick, an op or a handler, or reached the user as
"maximum recursion depth exceeded" with nothing to say what was being read. Here every failure to read becomes
`UntrustedDataError`, a ValueError whose message names what was read and why it could not be, and whose parts
(`reason`, `line`, `column`) let each caller keep its own wording.

YAML has no twin here on purpose: libyaml's composer recurses in C, and a deep document kills the process, which no
except clause can catch. Lockfiles and OSV records therefore measure the nesting on libyaml's parser events, which
are iterative, before anything is built; whole documents (drift manifests, the operator's settings) are composed by
the pure-Python loader of `security.measured_yaml`, which measures them as it goes.

Pure: no I/O, no Dagster, no network.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from typing import Any

NESTED_TOO_DEEPLY = "nested too deeply"
TOO_LARGE = "too large to hold in memory"

# tomllib (3.11) keeps the position only in its message: "Invalid value (at line 2, column 8)".
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class UntrustedDataError(ValueError):
    """`what` could not be read as `form` (JSON, TOML): `reason` says why, in a few words ("nested too deeply", or
    the parser's own words without the position), `line` and `column` where the parser knew them (1-based), and
    `detail` is the parser's whole message, for callers whose wording has always quoted it."""

    def __init__(
        self,
        what: str,
        form: str,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.what = what
        self.form = form
        self.reason = reason
        self.line = line
        self.column = column
        self.detail = detail or reason
        where = "" if line is None else f" (line {line}, column {column})" if column else f" (line {line})"
        super().__init__(f"{what} is not {form} the platform can read: {reason}{where}")

    def __reduce__(self) -> tuple[Callable[..., UntrustedDataError], tuple[object, ...]]:
        """Picklable (a process pool hands errors back pickled), with every part: pickle's default would call
        `__init__` with the message alone."""
        return _rebuilt, (self.what, self.form, self.reason, self.line, self.column, self.detail)

    @property
    def too_deep(self) -> bool:
        """Whether the document nests deeper than the parser can follow (as opposed to being malformed)."""
        return self.reason == NESTED_TOO_DEEPLY


def _rebuilt(
    what: str, form: str, reason: str, line: int | None, column: int | None, detail: str
) -> UntrustedDataError:
    return UntrustedDataError(what, form, reason, line=line, column=column, detail=detail)


def loads_json(
    text: str | bytes | bytearray, what: str, *, parse_constant: Callable[[str], object] | None = None
) -> Any:
    """`json.loads(text)`, or `UntrustedDataError` naming `what` (e.g. "GitHub's answer to GET /user").

    The value is whatever JSON the text holds, unchecked, as `json.loads` returns it: each caller checks the shape
    it expects. `parse_constant` is json's own hook (NaN, Infinity); a ValueError it raises is reported as any
    other reason the text is not JSON."""
    try:
        return json.loads(text, parse_constant=parse_constant)
    except json.JSONDecodeError as exc:
        raise UntrustedDataError(what, "JSON", exc.msg, line=exc.lineno, column=exc.colno, detail=str(exc)) from exc
    except ValueError as exc:  # bytes that are not UTF-8 (UnicodeDecodeError), a constant `parse_constant` refused
        raise UntrustedDataError(what, "JSON", str(exc)) from exc
    except RecursionError:  # the C decoder recurses per level: no JSON anyone means to send nests this deep
        raise UntrustedDataError(what, "JSON", NESTED_TOO_DEEPLY) from None
    except MemoryError:
        raise UntrustedDataError(what, "JSON", TOO_LARGE) from None


def loads_toml(text: str, what: str) -> dict[str, Any]:
    """`tomllib.loads(text)` (its own return type: tables of unchecked values), or `UntrustedDataError` naming
    `what`. tomllib's parser recurses per nested inline array or inline table."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position is None:  # "... (at end of document)" and the like: no line to give
            raise UntrustedDataError(what, "TOML", message) from exc
        reason = message[: position.start()]
        line, column = int(position.group(1)), int(position.group(2))
        raise UntrustedDataError(what, "TOML", reason, line=line, column=column, detail=message) from exc
    except RecursionError:
        raise UntrustedDataError(what, "TOML", NESTED_TOO_DEEPLY) from None
    except MemoryError:
        raise UntrustedDataError(what, "TOML", TOO_LARGE) from None
