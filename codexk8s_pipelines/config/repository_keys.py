"""Readable names for local checkouts: a partition key, a store row and a run tag say `main`, not `local:.`.

The rule (README, "Repository names"): a `path:` repository is named after its directory (resolved against the
working directory, lower-cased). When an earlier repository in `codexk8s.yaml` already holds that name, the later
one puts its parent directories' names in front, joined with `-`, until the name is free (`/srv/a/main` then
`/srv/b/main` → `main`, `b-main`); if even the whole path is taken, a short hash of the path is appended. Names
depend only on the path and on the repositories listed before it, so appending a repository never renames
another. A GitHub repository keeps `owner/name`; a directory name has no `/`, so the two never clash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LEGACY_LOCAL_PREFIX = "local:"  # the key of a local checkout before readable names: `local:<path as written>`


def _parts(path: str) -> list[str]:
    resolved = Path(path).expanduser().resolve()
    names = [p.lower() for p in resolved.parts[1:] if p]
    return names or ["root"]


def local_keys(paths: Sequence[str]) -> list[str]:
    """One unique readable key per local checkout, in the order given (the file's order)."""
    taken: set[str] = set()
    keys: list[str] = []
    for path in paths:
        parts = _parts(path)
        key = next(
            (k for n in range(1, len(parts) + 1) if (k := "-".join(parts[-n:])) not in taken),
            f"{parts[-1]}-{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:6]}",
        )
        while key in taken:  # two paths joined to the same name (`/a-b/c`, `/a/b-c`); one path twice is refused
            key += "-2"
        taken.add(key)
        keys.append(key)
    return keys


# (index of the first entry, index of a later one, what both are): one repository listed twice.
ListedTwice = tuple[int, int, str]


def identity(github: str | None, path: str | None) -> str:
    """What makes two entries of `repositories:` one repository: a GitHub name whatever its case (GitHub ignores
    it), a checkout's resolved path (`/work/main`, `/work/main/` and `./` from `/work/main` are one). Listed
    twice, a repository was scanned, indexed and dashboarded twice under two names (`main`, `work-main`)."""
    if github is not None:
        return f"the GitHub repository {github.lower()}"
    return f"the checkout {Path(path or '.').expanduser().resolve()}"


def listed_twice(identities: Sequence[str]) -> list[ListedTwice]:
    """Every entry that is the same repository as an earlier one, with the earlier one's index."""
    first: dict[str, int] = {}
    found: list[ListedTwice] = []
    for index, same in enumerate(identities):
        if same in first:
            found.append((first[same], index, same))
        else:
            first.setdefault(same, index)
    return found


def listed_twice_text(found: Sequence[ListedTwice], lines: Mapping[tuple[Any, ...], int] | None = None) -> str:
    """ "items 0 (line 2) and 1 (line 3) are both the checkout /work/main: list each repository once"; the lines when
    the loader knows them (`loader.key_lines`)."""

    def item(index: int) -> str:
        line = (lines or {}).get(("repositories", index))
        return f"{index}" if line is None else f"{index} (line {line})"

    pairs = "; ".join(f"items {item(a)} and {item(b)} are both {what}" for a, b, what in found)
    return f"{pairs}: list each repository once"
