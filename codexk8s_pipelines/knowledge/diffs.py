"""Read a unified diff (`git diff`, `diff -u`) into the changed files with their added and removed lines.

Why a parser of our own: change impact needs only paths, hunk contexts and changed lines, and it must read
what agents and CI produce (git prefixes or `--no-prefix`, renames, deletions, binary files, quoted paths)
without a dependency. Hunk line counts are followed, so a removed line that starts with `--` is never taken
for a file header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..file_lines import text_lines

_GIT_HEADER = re.compile(r'^diff --git (?P<a>"(?:[^"\\]|\\.)*"|\S+) (?P<b>"(?:[^"\\]|\\.)*"|\S+)\s*$')
_HUNK = re.compile(r"^@@ -\d+(?:,(?P<old>\d+))? \+\d+(?:,(?P<new>\d+))? @@ ?(?P<context>.*)$")
_BINARY = re.compile(r"^Binary files (?P<a>.+?) and (?P<b>.+?) differ$")
DEV_NULL = "/dev/null"

# The most changed files one change may name to `impact.change_impact` (as a diff or as paths), and the MCP tool's
# `files` limit: a larger change concerns the whole documentation, and each file costs a lookup of its names.
MAX_CHANGED_FILES = 500


@dataclass
class FileChange:
    """One changed file: `path` is where it lives after the change (before it, for a deletion)."""

    path: str
    old_path: str | None = None
    status: str = "modified"  # modified | added | deleted | renamed
    contexts: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed_lines(self) -> int:
        return len(self.added) + len(self.removed)


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        body = raw[1:-1]
        # git C-quotes unusual names: octal bytes and backslash escapes.
        data = re.sub(
            rb"\\([0-7]{3}|.)",
            lambda m: (
                bytes([int(m.group(1), 8)])
                if len(m.group(1)) == 3
                else {b"n": b"\n", b"t": b"\t"}.get(m.group(1), m.group(1))
            ),
            body.encode("utf-8"),
        )
        return data.decode("utf-8", errors="replace")
    return raw


def _strip_prefix(raw: str, prefix: str) -> str:
    path = _unquote(raw.split("\t", 1)[0])
    if path == DEV_NULL:
        return path
    return path[len(prefix) :] if path.startswith(prefix) else path


def parse_unified_diff(diff: str) -> list[FileChange]:
    """The files a unified diff changes, in order, each once."""
    changes: list[FileChange] = []
    current: FileChange | None = None
    old_left = new_left = 0
    lines = text_lines(diff)  # git ends a line at "\n" alone: a U+2028 in an added line is not a new diff line
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if old_left > 0 or new_left > 0:  # inside a hunk body
            if line.startswith("\\"):
                continue
            tag, text = (line[:1], line[1:]) if line else (" ", "")
            if tag == "+" and current is not None:
                current.added.append(text)
                new_left -= 1
                continue
            if tag == "-" and current is not None:
                current.removed.append(text)
                old_left -= 1
                continue
            if tag == " ":
                old_left -= 1
                new_left -= 1
                continue
            old_left = new_left = 0  # a truncated hunk: read the line as a header
        header = _GIT_HEADER.match(line)
        if header:
            current = FileChange(path=_strip_prefix(header.group("b"), "b/"), old_path=None)
            current.old_path = _strip_prefix(header.group("a"), "a/")
            changes.append(current)
            continue
        if line.startswith("diff "):  # a header we cannot split (unquoted spaces): the ---/+++ lines will name it
            current = None
            continue
        if line.startswith("--- ") and i < len(lines) and lines[i].startswith("+++ "):
            old = _strip_prefix(line[4:], "a/")
            new = _strip_prefix(lines[i][4:], "b/")
            i += 1
            if current is None or current.contexts or current.added or current.removed:
                current = FileChange(path=new)  # a plain `diff -u` file, or the next file of one
                changes.append(current)
            current.old_path = None if old == DEV_NULL else old
            if new == DEV_NULL:
                current.status, current.path = "deleted", old
            else:
                current.path = new
                if old == DEV_NULL:
                    current.status = "added"
            continue
        if current is None:
            continue
        if line.startswith("new file mode"):
            current.status = "added"
        elif line.startswith("deleted file mode"):
            current.status = "deleted"
            if current.old_path:
                current.path = current.old_path
        elif line.startswith("rename from "):
            current.old_path, current.status = _unquote(line[len("rename from ") :]), "renamed"
        elif line.startswith("rename to "):
            current.path, current.status = _unquote(line[len("rename to ") :]), "renamed"
        elif (binary := _BINARY.match(line)) is not None and binary.group("b") == DEV_NULL:
            current.status = "deleted"
        else:
            hunk = _HUNK.match(line)
            if hunk:
                old_left = int(hunk.group("old") if hunk.group("old") is not None else 1)
                new_left = int(hunk.group("new") if hunk.group("new") is not None else 1)
                if hunk.group("context").strip():
                    current.contexts.append(hunk.group("context").strip())
    merged: dict[str, FileChange] = {}
    for change in changes:
        if change.path and change.path != DEV_NULL:
            kept = merged.setdefault(change.path, change)
            if kept is not change:
                kept.contexts += change.contexts
                kept.added += change.added
                kept.removed += change.removed
    return list(merged.values())
