"""`Cargo.lock` (v1 to v4): `[[package]]` entries.

Entries without a `source` are the workspace's own crates; their `dependencies` lists (`"serde"`,
`"rand 0.8.5"`, or v1's `"rand 0.8.5 (registry+...)"`) tell which crates are direct. Git and path sources are
not registry releases and are left out. The line of an entry is its `[[package]]` header.
"""

from __future__ import annotations

from typing import Any

from codexk8s_pipelines.security.dependencies import CRATES, url_reason
from codexk8s_pipelines.security.lockfiles._common import Sink, array_tables, load_toml

_NOT_REGISTRY = ("git+", "path+")


def parse_cargo_lock(text: str, sink: Sink) -> None:
    data = load_toml(text, sink)
    if data is None:
        return
    entries = array_tables(data, text, "package", sink)
    members = [entry for entry, _line in entries if "source" not in entry]
    direct = _direct(members)
    for entry, line in entries:
        name, version, source = entry.get("name"), entry.get("version"), entry.get("source")
        if not isinstance(name, str) or not name:
            sink.error(line, "[[package]] entry without a name")
            continue
        if source is None:
            continue  # a workspace member: the project itself
        if not isinstance(source, str):
            sink.error(line, f"[[package]] entry {name!r} has a non-string source")
            continue
        if source.startswith("git+"):  # kept, unpinned, with the reason
            is_direct = ((name, version) in direct or (name, None) in direct) if members else None
            sink.add(CRATES, name, None, line, direct=is_direct, unpinned_reason=url_reason(source))
            continue
        if source.startswith(_NOT_REGISTRY):
            continue
        if not isinstance(version, str) or not version:
            sink.error(line, f"[[package]] entry without a version: {name!r}")
            continue
        is_direct = None
        if members:
            is_direct = (name, version) in direct or (name, None) in direct
        sink.add(CRATES, name, version, line, direct=is_direct)


def _direct(members: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    result: set[tuple[str, str | None]] = set()
    for member in members:
        dependencies = member.get("dependencies", [])
        for item in dependencies if isinstance(dependencies, list) else []:
            if isinstance(item, str) and item.split():
                parts = item.split()
                result.add((parts[0], parts[1] if len(parts) > 1 else None))
    return result
