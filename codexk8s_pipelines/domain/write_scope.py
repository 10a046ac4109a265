"""Which changes a stage's write scope forbids. The agent runner checks its own commit's tree diff before pushing.

Two levels. `scope_violations` judges names only (what `triggers explain` and the docs talk about).
`tree_violations` is what the runner enforces: the same name rule plus the entry's content, because a name proves
nothing: `docs/passwd.md` can be a symlink to `/etc/passwd`, `docs/evil.md` a submodule pointer, `docs/blob.md`
50 MB of binary. Under `markdown-only` a change must be a regular, non-executable file (mode 100644) with a Markdown
or reST extension, valid UTF-8 text without NUL bytes, within a size cap, under a name without control characters
or stray whitespace. Under `any-file`, gitlinks and symlinks pointing out of the repository are still refused.
Every violation names the path and the rule.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .stages import WriteScope

MARKDOWN_SUFFIXES = (".md", ".markdown", ".rst")
DEFAULT_MAX_TEXT_BYTES = 1_000_000
MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_GITLINK = "160000"
# Prompt templates and agent instructions a self-improve run may rewrite, besides markdown anywhere.
DEFAULT_SELF_IMPROVE_ALLOW: tuple[str, ...] = (
    "codexk8s_pipelines/agents/prompts/*",
    "codexk8s_pipelines/agents/catalog.yaml",
    "prompts/*",
    "AGENTS.md",
)


def _is_markdown(path: str) -> bool:
    return path.lower().endswith(MARKDOWN_SUFFIXES)


def scope_violations(
    scope: WriteScope, changed_paths: Iterable[str], allow: Sequence[str] = DEFAULT_SELF_IMPROVE_ALLOW
) -> list[str]:
    """The changed paths the scope does not allow, sorted; empty means the diff may be pushed."""
    paths = sorted({p.strip().removeprefix("./") for p in changed_paths if p.strip()})
    if scope is WriteScope.ANY_FILE:
        return []
    if scope is WriteScope.NONE:
        return paths
    if scope is WriteScope.MARKDOWN_ONLY:
        return [p for p in paths if not _is_markdown(p)]
    return [p for p in paths if not (_is_markdown(p) or any(fnmatchcase(p, g) for g in allow))]


@dataclass(frozen=True)
class TreeChange:
    """One path of a tree diff: deleted, or its new git mode, blob id, size and (when small enough) content."""

    path: str
    deleted: bool = False
    mode: str | None = None
    sha: str | None = None
    size: int | None = None
    content: bytes | None = None


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path!r}: {self.rule}"


def _name_problem(path: str) -> str | None:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return "the name holds a control character"
    if any(part != part.strip() or part.endswith(".") for part in path.split("/")):
        return "a name part starts or ends with whitespace or ends with a dot"
    return None


def _text_problem(change: TreeChange, max_bytes: int) -> str | None:
    """A regular, non-executable, UTF-8 text file within the size cap; else why not."""
    if change.mode == MODE_SYMLINK:
        return "a symlink (only regular files are allowed)"
    if change.mode == MODE_GITLINK:
        return "a gitlink (submodule pointer), not a file"
    if change.mode == MODE_EXECUTABLE:
        return "an executable file (mode 100755); only mode 100644 is allowed"
    if change.mode != MODE_FILE:
        return f"not a regular file (mode {change.mode})"
    if change.size is not None and change.size > max_bytes:
        return f"{change.size} bytes, over the {max_bytes}-byte cap for text files"
    if change.content is None:
        return "its content could not be read to be checked"
    if b"\0" in change.content:
        return "binary content (NUL bytes)"
    try:
        change.content.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8 text"
    return None


def _symlink_escapes(change: TreeChange) -> bool:
    target = (change.content or b"").decode("utf-8", "replace")
    if change.content is None or target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(change.path), target))
    return resolved == ".." or resolved.startswith("../")


def tree_violations(
    scope: WriteScope,
    changes: Iterable[TreeChange],
    allow: Sequence[str] = DEFAULT_SELF_IMPROVE_ALLOW,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
) -> list[Violation]:
    """Every change the scope forbids, by path; empty means the commit may be pushed."""
    found: list[Violation] = []
    for change in sorted(changes, key=lambda c: c.path):
        rule = _change_problem(scope, change, allow, max_text_bytes)
        if rule is not None:
            found.append(Violation(change.path, rule))
    return found


def _change_problem(scope: WriteScope, change: TreeChange, allow: Sequence[str], max_bytes: int) -> str | None:
    path = change.path
    if scope is WriteScope.NONE:
        return "this run may change nothing"
    if scope is WriteScope.ANY_FILE:
        if change.deleted:
            return None
        if change.mode == MODE_GITLINK:
            return "a gitlink (submodule pointer) is never pushed"
        if change.mode == MODE_SYMLINK and _symlink_escapes(change):
            return "a symlink pointing outside the repository"
        return None
    name = _name_problem(path)
    if name is not None:
        return name
    allowed_name = _is_markdown(path) or (
        scope is WriteScope.PROMPTS_AND_DOCS and any(fnmatchcase(path, g) for g in allow)
    )
    if not allowed_name:
        kind = "Markdown or reST" if scope is WriteScope.MARKDOWN_ONLY else "Markdown, reST or allow-listed"
        return f"not a {kind} file name ({scope.value})"
    if change.deleted:
        return None
    return _text_problem(change, max_bytes)
