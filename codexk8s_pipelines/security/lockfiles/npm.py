"""`package-lock.json` (and `npm-shrinkwrap.json`, the same format).

v2/v3 locks list every installed folder under `packages`, keyed by its path (`node_modules/a/node_modules/@s/b`):
the package is the last `node_modules/` segment, or the entry's own `name` for an alias (`"string-width-cjs":
{"name": "string-width"}`). Keys outside `node_modules` are the root project (`""`) and workspace folders; their
declared dependencies tell which top-level installs are direct. v1 locks (npm 5/6) only have the nested
`dependencies` tree, which is walked instead; it does not say what is direct.

Both report a package installed from git (`git+ssh://…`, `github:me/repo#sha`) the same way: kept, without a
version, with the reason, since it is code the project runs that no advisory range can match. v2/v3 say so in
`resolved`; v1 puts the git reference in `version` itself. Local folders (`file:`, `link:`) are the project's
own code and are not reported.
"""

from __future__ import annotations

from typing import Any

from codexk8s_pipelines.security.dependencies import NPM, url_reason
from codexk8s_pipelines.security.lockfiles._common import KeyLines, Sink, is_semver_like, json_key_lines, load_json

_NOT_REGISTRY = ("git+", "git:", "git@", "github:", "gitlab:", "bitbucket:", "file:", "link:")
_DECLARED = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
_MODULES = "node_modules/"
_REMOTE = ("git+", "git:", "git@", "github:", "gitlab:", "bitbucket:")
_TARBALL = ("https://", "http://")


def parse_package_lock(text: str, sink: Sink) -> None:
    data = load_json(text, sink)
    if data is None:
        return
    if not isinstance(data, dict):
        sink.error(1, "package-lock is not a JSON object")
        return
    if "packages" in data:
        packages = data["packages"]
        lines = json_key_lines(text, data, max_depth=2)
        if not isinstance(packages, dict):
            sink.error(lines.of(packages), "`packages` is not an object")
            return
        _packages(packages, lines, sink)
    elif "dependencies" in data:
        _tree(data["dependencies"], json_key_lines(text, data), sink)


def _packages(packages: dict[str, Any], lines: KeyLines, sink: Sink) -> None:
    declared: dict[str, set[str]] = {}  # root ("") and workspace folders -> names they depend on
    for key, entry in packages.items():
        if _MODULES not in key and isinstance(entry, dict):
            names: set[str] = set()
            for field in _DECLARED:
                if isinstance(entry.get(field), dict):
                    names.update(entry[field])
            declared[key] = names

    def hoisted(name: str) -> bool:
        """A workspace's dependency installed at the root because the workspace has no copy of its own."""
        return any(name in names and f"{folder}/{_MODULES}{name}" not in packages for folder, names in declared.items())

    for key, entry in packages.items():
        if _MODULES not in key and (key == "" or isinstance(entry, dict)):
            continue
        line = lines.of(entry)
        if not isinstance(entry, dict):
            sink.error(line, f"packages[{key!r}] is not an object")
            continue
        if entry.get("link"):
            continue  # a symlink to a workspace folder or a local path, listed under its own key
        folder, _, installed_as = key.rpartition(_MODULES)
        name = entry.get("name") if isinstance(entry.get("name"), str) else installed_as
        if not name:
            sink.error(line, f"packages[{key!r}] has no package name")
            continue
        resolved = entry.get("resolved")
        if isinstance(resolved, str) and resolved.startswith(_NOT_REGISTRY):
            _not_registry(name, resolved, line, sink)
            continue
        version = entry.get("version")
        if not isinstance(version, str) or not version.strip():
            sink.error(line, f"packages[{key!r}] without a version")
            continue
        direct: bool | None = None
        if declared:
            parent = folder.rstrip("/")
            direct = parent in declared and (
                installed_as in declared[parent] or (parent == "" and hoisted(installed_as))
            )
        sink.add(NPM, name, version, line, direct=direct)


def _not_registry(name: str, reference: str, line: int | None, sink: Sink) -> None:
    """An install that is not a registry release: one from git is kept, unpinned, with the reason (`github:`
    shorthand named as the git URL it stands for); a local folder is the project's own and is left out."""
    if reference.startswith(_REMOTE):
        sink.add(
            NPM, name, None, line, unpinned_reason=url_reason(reference.replace("github:", "git+https://github.com/"))
        )


_Place = tuple[Any, str]  # (the parent's place or None, this key)


def _tree(dependencies: Any, lines: KeyLines, sink: Sink) -> None:
    """A v1 lock's nested `dependencies` tree, walked without recursion. Each level keeps its place as a link to
    its parent's, spelt out only for an error: a tuple per level would cost depth × entries."""
    pending: list[tuple[_Place, Any]] = [((None, "dependencies"), dependencies)]
    while pending:
        place, level = pending.pop()
        if not isinstance(level, dict):
            sink.error(lines.of(level), f"{_spelt(place)} is not an object")
            continue
        for name, entry in level.items():
            line = lines.of(entry)
            if not isinstance(entry, dict):
                sink.error(line, f"dependencies entry {name!r} is not an object")
                continue
            version = entry.get("version")
            if not isinstance(version, str) or not version.strip():
                sink.error(line, f"dependencies entry {name!r} without a version")
                continue
            real_name = name
            if version.startswith("npm:"):  # alias: "npm:string-width@4.2.3"
                real_name, _, version = version[4:].rpartition("@")
            # v1 spells a git install in `version` (`github:me/repo#sha`, `git+https://…#sha`), maybe also in `resolved`
            reference = version if version.startswith(_NOT_REGISTRY) else entry.get("resolved")
            if isinstance(reference, str) and reference.startswith(_NOT_REGISTRY):
                _not_registry(name, reference, line, sink)
            elif version.startswith(_TARBALL):  # a tarball URL: code that is run, but not a registry release
                sink.add(NPM, name, None, line, unpinned_reason=url_reason(version))
            elif is_semver_like(version) and real_name:
                sink.add(NPM, real_name, version, line)
            else:
                sink.error(line, f"dependencies entry {name!r} has version {version!r}, not a registry version")
            if "dependencies" in entry:
                pending.append((((place, name), "dependencies"), entry["dependencies"]))


def _spelt(place: _Place | None) -> str:
    """`dependencies.a.dependencies.b` for a place of `_tree`."""
    keys: list[str] = []
    while place is not None:
        place, key = place
        keys.append(key)
    return ".".join(reversed(keys))
