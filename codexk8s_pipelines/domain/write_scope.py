"""Which changed files a stage's write scope forbids. The agent runner calls this on the diff before pushing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from .stages import WriteScope

MARKDOWN_SUFFIXES = (".md", ".markdown")
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
