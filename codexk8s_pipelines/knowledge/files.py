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
    ones listed (someone may want to split them), links that loop or leave the checkout counted, files whose name
    is not UTF-8 listed (escaped: `printable`), folders not read (nested past MAX_DEPTH, or unlistable) listed with
    the reason. The indexer adds the files it could not read, and those it read that are not UTF-8."""

    binary: list[str] = field(default_factory=list)
    oversized: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    folders_more: int = 0  # past MAX_FOLDERS_NOTED: counted, not listed (each is a warning in the run's log)
    bad_names: list[str] = field(default_factory=list)  # names not UTF-8, as `printable` writes them: not indexed
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why): found, then not readable
    not_utf8: list[tuple[str, int]] = field(default_factory=list)  # (path, line of the first bad byte): indexed

    def folder(self, line: str) -> None:
        if len(self.folders) < MAX_FOLDERS_NOTED:
            self.folders.append(line)
        else:
            self.folders_more += 1

    def folders_noted(self) -> tuple[str, ...]:
        """The folders not read, as reported: the first MAX_FOLDERS_NOTED, then how many more."""
        more = (f"… and {self.folders_more} more folders not read",) if self.folders_more else ()
        return (*self.folders, *more)

    def files_noted(self) -> tuple[tuple[str, str], ...]:
        """(path, why) of every file left out or read garbled, by path: what a run reports to the repository's owner,
        who can fix each (split a big file, re-encode one, rename one)."""
        noted = [
            *((rel, f"too large (over {MAX_FILE_BYTES:,} bytes): not indexed") for rel in self.oversized),
            *((rel, "binary (NUL bytes): not indexed") for rel in self.binary),
            *((rel, "a link out of the checkout, dangling or looping: not indexed") for rel in self.links),
            *((rel, "name is not UTF-8: not indexed") for rel in self.bad_names),
            *((rel, f"unreadable ({why}): not indexed") for rel, why in self.unreadable),
            *(
                (rel, f"not UTF-8 (first at line {line}): indexed with U+FFFD for the bad bytes")
                for rel, line in self.not_utf8
            ),
        ]
        return tuple(sorted(noted))


def printable(name: str) -> str:
    """A file name as it can be stored, logged and shown: bytes that are not UTF-8 (a Latin-1 "r\\xe9sum\\xe9.md",
    which git allows; Python holds them as lone surrogates, which no UTF-8 text can) written as `\\xe9`."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file system decoding makes: escaped as itself
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    docs were not indexed at all). Binary and oversized files, names that are not UTF-8, and folders not read, are
    noted in `skipped`."""
    root = root.resolve()
    skipped = skipped if skipped is not None else Skipped()

    def too_deep(folder: Path) -> None:
        skipped.folder(f"{printable(folder.relative_to(root).as_posix())}: {TOO_DEEP}")

    def unlistable(exc: OSError) -> None:
        where = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        skipped.folder(printable(f"{where}: cannot be listed: {exc.strerror or exc}"))

    found: list[tuple[str, Path]] = []
    for base, filenames in walk_tree(root, too_deep=too_deep, unlistable=unlistable, exclude=_ignored):
        for name in filenames:
            file = base / name
            rel = file.relative_to(root).as_posix()
            if not matches(rel, globs):
                continue
            if not _is_utf8(rel):  # no text column takes it: one such name failed the whole repository's write
                skipped.bad_names.append(printable(rel))
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
