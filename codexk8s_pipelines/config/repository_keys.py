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
from collections.abc import Sequence
from pathlib import Path

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
        while key in taken:  # the same path listed twice: still two names
            key += "-2"
        taken.add(key)
        keys.append(key)
    return keys
