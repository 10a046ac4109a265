"""Which files of a checkout are documentation: glob patterns over POSIX paths, with tool and vendor dirs pruned.

Why a walk instead of `Path.glob("**/*.md")`: a checkout's `.venv` or `node_modules` holds tens of thousands of
files (and Markdown of other projects); pruning them while walking keeps indexing of a repository fast and its
results about that repository only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..security.safe_files import TOO_DEEP, UnsafeFile, resolve_inside, walk_tree

IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".eggs",
        "site-packages",
        "dist",
        "build",
        ".codexk8s",
        ".idea",
        ".vscode",
    }
)
MAX_FILE_BYTES = 2_000_000  # a bigger "doc" is generated output, not something to read in search results
MAX_FOLDERS_NOTED = 100  # folders not read that an indexing pass lists; a generated tree can have thousands


@lru_cache(maxsize=64)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over `/`-separated relative paths: `**/` any directories (or none), `*` and `?` within one name."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, globs: Sequence[str]) -> bool:
    return any(glob_regex(g).match(path) for g in globs)


@dataclass
class Skipped:
    """Files `discover` left out, so the indexer can say so: binary files named like docs are counted, oversized
    ones listed (someone may want to split them), links that loop or leave the checkout counted, folders not read
    (nested past MAX_DEPTH, or unlistable) listed with the reason."""

    binary: list[str] = field(default_factory=list)
    oversized: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    folders_more: int = 0  # past MAX_FOLDERS_NOTED: counted, not listed (each is a warning in the run's log)

    def folder(self, line: str) -> None:
        if len(self.folders) < MAX_FOLDERS_NOTED:
            self.folders.append(line)
        else:
            self.folders_more += 1

    def folders_noted(self) -> tuple[str, ...]:
        """The folders not read, as reported: the first MAX_FOLDERS_NOTED, then how many more."""
        more = (f"… and {self.folders_more} more folders not read",) if self.folders_more else ()
        return (*self.folders, *more)


def _ignored(name: str) -> bool:
    return name in IGNORED_DIRS or name.endswith(".egg-info")


def _looks_binary(file: Path) -> bool:
    """A NUL byte in the first 8 kB: what git and grep take as binary. UTF-16 text counts as binary too."""
    with file.open("rb") as handle:
        return b"\x00" in handle.read(8192)


def discover(root: Path, globs: Sequence[str], skipped: Skipped | None = None) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, file) of every regular file under `root` matching one of `globs`, sorted.

    Symbolic links are followed only to files inside the checkout (a link elsewhere is not this repository's
    documentation; a link loop raises RuntimeError or OSError from `resolve`, and is skipped, not fatal).
    Directories are walked without following links, and no deeper than the platform's walks go (`walk_tree`: a
    repository with a folder chain 1,200 deep made the former os.walk raise RecursionError, and the repository's
    docs were not indexed at all). Binary and oversized files, and folders not read, are noted in `skipped`."""
    root = root.resolve()
    skipped = skipped if skipped is not None else Skipped()

    def too_deep(folder: Path) -> None:
        skipped.folder(f"{folder.relative_to(root).as_posix()}: {TOO_DEEP}")

    def unlistable(exc: OSError) -> None:
        where = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        skipped.folder(f"{where}: cannot be listed: {exc.strerror or exc}")

    found: list[tuple[str, Path]] = []
    for base, filenames in walk_tree(root, too_deep=too_deep, unlistable=unlistable, exclude=_ignored):
        for name in filenames:
            file = base / name
            rel = file.relative_to(root).as_posix()
            if not matches(rel, globs):
                continue
            try:
                if file.is_symlink():
                    resolve_inside(file, root)  # a link out of the checkout, dangling or looping: UnsafeFile
                if not file.is_file():
                    continue
                if file.stat().st_size > MAX_FILE_BYTES:
                    skipped.oversized.append(rel)
                    continue
                if _looks_binary(file):
                    skipped.binary.append(rel)
                    continue
            except (UnsafeFile, OSError, RuntimeError):  # such a link, or a file gone or unreadable meanwhile
                skipped.links.append(rel)
                continue
            found.append((rel, file))
    found.sort()
    yield from found
