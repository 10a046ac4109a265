"""`pnpm-lock.yaml`, lockfile versions 5.x, 6.x and 9.x.

The `packages` keys changed shape across versions: `/name/1.2.3_peer@1` (5.x), `/name@1.2.3(peer@1)` (6.x) and
`name@1.2.3` (9.x, peers only in `snapshots`, which is not read). The shape is recognised per key rather than
from `lockfileVersion`, so a lock with an odd version string still reads. Keys whose version is not semver
(`file:`, tarball URLs, git hosts) are not registry releases and are left out. Direct dependencies are the
versions the `importers` (or, before 9.x for a single project, the top-level dependency maps) resolve to.
"""

from __future__ import annotations

import re

from codexk8s_pipelines.security.dependencies import NPM, url_reason
from codexk8s_pipelines.security.lockfiles._common import Sink, YamlList, YamlMap, is_semver_like, load_yaml_documents

_DECLARED = ("dependencies", "devDependencies", "optionalDependencies", "packageManagerDependencies")
_NAME = re.compile(r"^(?:@[^/@]+/)?[^/@]+$")


class NotRegistryKey(ValueError):
    """A key for something other than a registry release."""


def _strip_peers(version: str) -> str:
    """`1.2.3(react@18.2.0)` (6.x+) and `1.2.3_react@18.2.0` (5.x) -> `1.2.3`; semver never contains `(` or `_`."""
    return re.split(r"[(_]", version, maxsplit=1)[0]


def split_key(key: str) -> tuple[str, str]:
    """(name, version) of a `packages` key. Raises NotRegistryKey for a non-registry key, ValueError for a key
    without a version."""
    body = key.lstrip("/")
    at = body.find("@", 1)
    if at > 0 and _NAME.match(body[:at]):
        name, version = body[:at], _strip_peers(body[at + 1 :])
        if not version:
            raise ValueError(f"package key {key!r} without a version")
        if is_semver_like(version):
            return name, version
        raise NotRegistryKey(key)
    parts = body.split("/")
    width = 2 if body.startswith("@") else 1
    name = "/".join(parts[:width])
    if len(parts) == width or (len(parts) == width + 1 and not parts[width]):
        if _NAME.match(name):
            raise ValueError(f"package key {key!r} without a version")
        raise NotRegistryKey(key)
    version = _strip_peers(parts[width]) if len(parts) == width + 1 else ""
    if _NAME.match(name) and is_semver_like(version):
        return name, version
    raise NotRegistryKey(key)


_LOCAL = ("file:", "link:", "workspace:")
_GIT_HOSTS = ("github.com/", "gitlab.com/", "bitbucket.org/")


def _remote(key: str) -> tuple[str, str] | None:
    """(name, reference) of a key for code from a git host or a URL; None for local folders and the like."""
    body = key.lstrip("/")
    at = body.find("@", 1)
    if at > 0 and _NAME.match(body[:at]) and not body[at + 1 :].startswith(_LOCAL):
        reference = body[at + 1 :]
        return body[:at], reference if ":" in reference else f"git+https://{reference}"
    if body.startswith(_GIT_HOSTS) and body.count("/") >= 2:
        return body.split("/")[2], f"git+https://{body}"
    return None


def parse_pnpm_lock(text: str, sink: Sink) -> None:
    """Every document of the lock: pnpm 10 writes the package manager's own dependencies
    (`packageManagerDependencies`) as a first document before the project's, and both are installed."""
    for root in load_yaml_documents(text, sink):
        if root is None:
            continue
        if not isinstance(root, YamlMap):
            sink.error(1, "pnpm-lock.yaml document is not a mapping")
            continue
        _parse_document(root, sink)


def _parse_document(root: YamlMap, sink: Sink) -> None:
    packages = root.get("packages")
    if packages is None:
        return
    if not isinstance(packages, YamlMap):
        sink.error(packages.line if isinstance(packages, YamlList) else None, "`packages` is not a mapping")
        return
    direct = _direct(root)
    for key, line, _entry in packages.items:
        try:
            name, version = split_key(key)
        except NotRegistryKey:
            remote = _remote(key)
            if remote is not None:  # git or a tarball URL: kept, unpinned, with the reason
                sink.add(NPM, remote[0], None, line, unpinned_reason=url_reason(remote[1]))
            continue
        except ValueError as exc:
            sink.error(line, str(exc))
            continue
        sink.add(NPM, name, version, line, direct=(name, version) in direct if direct else None)


def _direct(root: YamlMap) -> set[tuple[str, str]]:
    projects = [root]
    importers = root.get("importers")
    if isinstance(importers, YamlMap):
        projects.extend(project for _key, _line, project in importers.items if isinstance(project, YamlMap))
    result: set[tuple[str, str]] = set()
    for project in projects:
        for field in _DECLARED:
            declared = project.get(field)
            if not isinstance(declared, YamlMap):
                continue
            for name, _line, entry in declared.items:
                # 5.x: `name: 1.2.3`; 6.x+: `name: {specifier: ^1.2.0, version: 1.2.3(peer@1)}`
                resolved = entry.get("version") if isinstance(entry, YamlMap) else entry
                if not isinstance(resolved, str) or not resolved:
                    continue
                if is_semver_like(resolved):
                    result.add((name, _strip_peers(resolved)))
                    continue
                try:  # an alias (`string-width@4.2.3`, `/string-width/4.2.3`); else `link:`, `file:`...
                    result.add(split_key(resolved))
                except ValueError:
                    continue
    return result
