"""Lines of a repository file, numbered as GitHub numbers them, and split as the tool that reads the file splits them.

Why: a finding, a chunk's line range or an annotation names a line the user opens on GitHub, where a line ends at
"\\n" alone. Python's `str.splitlines` also ends one at "\\r", "\\v", "\\f", "\\x1c"–"\\x1e", U+0085, U+2028 and
U+2029: one such character in a comment (pasted from a web page or a word processor; a form feed in an old text)
put every line after it one further down. And a tool's own reading differs by format: pip reads a requirements file
with `splitlines`, Java (Gradle) and yarn's lockfile lexer also end a line at a lone "\\r", while Go, Bundler, Elixir
and TOML end one at "\\n" only. A parser that split where its tool does not could report an entry the tool never
reads, or read two entries as one and miss one: so each parser splits as its tool does (`numbered_lines`), and
every piece keeps the number of the GitHub line it is on.
"""

from __future__ import annotations

import re
from typing import Literal

Breaks = Literal["lf", "cr", "unicode"]
"""Where the reading tool ends a line besides "\\n": nowhere else ("lf": Go, Bundler, Elixir, TOML, Markdown as
indexed here), also at a lone "\\r" ("cr": Java's readers, yarn's lockfile lexer), or wherever `str.splitlines`
does ("unicode": pip)."""


def text_lines(text: str) -> list[str]:
    """The text's lines as GitHub numbers them: split at "\\n" alone, a trailing "\\r" dropped (a CRLF file), no
    line after the final newline. Line n is `text_lines(text)[n - 1]`."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[-1] == "":
        lines.pop()  # after the final newline: no line
    return lines


def numbered_lines(text: str, breaks: Breaks = "lf") -> list[tuple[int, str]]:
    """(GitHub line number, line) for each line the reading tool sees, in order, without its line break. With "cr"
    or "unicode" a GitHub line may hold several of the tool's lines: each gets that line's number. Blank lines are
    kept where the tool has them (pip ends a `# via` block at one)."""
    if breaks == "lf":
        return list(enumerate(text_lines(text), 1))
    numbered: list[tuple[int, str]] = []
    number = 1
    if breaks == "unicode":
        for line, piece in zip(text.splitlines(), text.splitlines(keepends=True), strict=True):
            numbered.append((number, line))
            number += piece.endswith("\n")
    else:
        for piece in _CR_LINE.findall(text):
            numbered.append((number, piece.removesuffix("\n").removesuffix("\r")))
            number += piece.endswith("\n")
    return numbered


_CR_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # a line with its end, or the last one without


def undecodable(exc: UnicodeDecodeError) -> tuple[int, str]:
    """(GitHub line number, `not UTF-8 (byte 0xe9)`) of the first byte UTF-8 could not decode: where a user opens
    the file to fix it. Every reader of a user's file words an undecodable one alike, at its line: a bare
    `'utf-8' codec can't decode byte 0xe9 in position 8123` names no place a user can find."""
    data = bytes(exc.object)  # after a byte-order mark `utf-8-sig` took off: `start` counts from there too
    return data.count(b"\n", 0, exc.start) + 1, f"not UTF-8 (byte 0x{data[exc.start]:02x})"


def not_utf8(exc: UnicodeDecodeError) -> str:
    """`line 9: not UTF-8 (byte 0xe9)` (`undecodable`)."""
    line, problem = undecodable(exc)
    return f"line {line}: {problem}"
