"""Python lockfiles: `poetry.lock`, `uv.lock` (both TOML `[[package]]` arrays) and `Pipfile.lock` (JSON).

Only releases from a package index are reported: the project itself (uv's editable/virtual root, workspace
members) and git, URL or local-path sources are not registry versions an advisory can name. The line of a TOML
entry is its `[[package]]` header.
"""

from __future__ import annotations

from typing import Any

from codexk8s_pipelines.security.dependencies import PYPI, normalise_name, url_reason
from codexk8s_pipelines.security.lockfiles._common import (
    Sink,
    array_tables,
    json_key_lines,
    load_json,
    load_toml,
)

_POETRY_LOCAL = {"directory", "file", "git", "url"}
_UV_PROJECT = {"editable", "virtual"}  # the project and its workspace members
_UV_LOCAL = {"git", "url", "path", "directory"}


_REMOTE = {"git", "url"}


def _remote_reason(kind: Any, url: Any) -> str:
    return url_reason(f"git+{url}" if kind == "git" else str(url or "https:"))


def _name_version(entry: dict[str, Any], line: int | None, key: str, sink: Sink) -> tuple[str, str | None] | None:
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        sink.error(line, f"[[{key}]] entry without a name")
        return None
    version = entry.get("version")
    if version is not None and (not isinstance(version, str) or not version.strip()):
        sink.error(line, f"[[{key}]] entry {name!r} has an invalid version {version!r}")
        return None
    return name, version


def parse_poetry_lock(text: str, sink: Sink) -> None:
    data = load_toml(text, sink)
    if data is None:
        return
    for entry, line in array_tables(data, text, "package", sink):
        found = _name_version(entry, line, "package", sink)
        if found is None:
            continue
        name, version = found
        source = entry.get("source")
        if isinstance(source, dict) and source.get("type") in _POETRY_LOCAL:
            if source.get("type") in _REMOTE:  # kept, unpinned, with the reason; local code is the project's own
                sink.add(PYPI, name, None, line, unpinned_reason=_remote_reason(source.get("type"), source.get("url")))
            continue
        if version is None:
            sink.error(line, f"[[package]] entry without a version: {name!r}")
            continue
        sink.add(PYPI, name, version, line)


def parse_uv_lock(text: str, sink: Sink) -> None:
    data = load_toml(text, sink)
    if data is None:
        return
    key = "distribution" if "distribution" in data and "package" not in data else "package"  # pre-0.3 uv.lock
    entries = array_tables(data, text, key, sink)
    direct = _uv_direct_names(entry for entry, _line in entries)
    for entry, line in entries:
        found = _name_version(entry, line, key, sink)
        if found is None:
            continue
        name, version = found
        source = entry.get("source")
        kinds = set(source) if isinstance(source, dict) else set()
        if kinds & (_UV_PROJECT | _UV_LOCAL):
            remote = sorted(kinds & _REMOTE)
            if remote and not kinds & _UV_PROJECT:
                reason = _remote_reason(remote[0], source.get(remote[0]))  # type: ignore[union-attr]
                sink.add(PYPI, name, None, line, direct=normalise_name(PYPI, name) in direct if direct else None,
                         unpinned_reason=reason)  # fmt: skip
            continue
        if version is None:
            sink.error(line, f"[[{key}]] entry without a version: {name!r}")
            continue
        sink.add(PYPI, name, version, line, direct=normalise_name(PYPI, name) in direct if direct else None)


def _uv_direct_names(entries: Any) -> set[str]:
    """Names the project (and its workspace members) depend on themselves, from their own lock entries."""
    names: set[str] = set()
    for entry in entries:
        source = entry.get("source")
        if not (isinstance(source, dict) and set(source) & _UV_PROJECT):
            continue
        lists = [entry.get("dependencies")]
        for table in ("optional-dependencies", "dev-dependencies"):
            groups = entry.get(table)
            if isinstance(groups, dict):
                lists.extend(groups.values())
        for items in lists:
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    names.add(normalise_name(PYPI, item["name"]))
    return names


def parse_pipfile_lock(text: str, sink: Sink) -> None:
    data = load_json(text, sink)
    if data is None:
        return
    if not isinstance(data, dict):
        sink.error(1, "Pipfile.lock is not a JSON object")
        return
    lines = json_key_lines(text, data, max_depth=2)
    for section in ("default", "develop"):
        entries = data.get(section, {})
        if not isinstance(entries, dict):
            sink.error(lines.of(entries), f"`{section}` is not an object")
            continue
        for name, entry in entries.items():
            line = lines.of(entry)
            if not isinstance(entry, dict):
                sink.error(line, f"{section}.{name} is not an object")
                continue
            if "git" in entry:  # a VCS source: kept, unpinned, with the reason
                sink.add(PYPI, name, None, line, unpinned_reason=_remote_reason("git", entry["git"]))
                continue
            if any(key in entry for key in ("path", "file")):
                continue  # local code: the project's own
            version = entry.get("version")
            if not isinstance(version, str) or not version.strip():
                sink.error(line, f"{section}.{name} without a version")
                continue
            exact = version.strip()
            for operator in ("===", "=="):
                if exact.startswith(operator):
                    exact = exact[len(operator) :].strip()
                    break
            else:
                if exact[0] in "<>=!~":
                    sink.error(line, f"{section}.{name}: version {version!r} is not an exact pin")
                    continue
            sink.add(PYPI, name, exact, line)
