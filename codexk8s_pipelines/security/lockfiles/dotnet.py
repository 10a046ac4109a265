"""NuGet `packages.lock.json`: `dependencies` per target framework, each package with its `type`.

`Direct` and `Transitive` entries are packages from a feed (`CentralTransitive` too, under central package
management); `Project` entries are the solution's own projects and are left out. The same package appears once
per target framework; the lockfile dedupe keeps one.
"""

from __future__ import annotations

from codexk8s_pipelines.security.dependencies import NUGET
from codexk8s_pipelines.security.lockfiles._common import Sink, json_key_lines, load_json

_TYPES = {"Direct": True, "Transitive": False, "CentralTransitive": False}


def parse_packages_lock(text: str, sink: Sink) -> None:
    data = load_json(text, sink)
    if data is None:
        return
    if not isinstance(data, dict) or not isinstance(data.get("dependencies"), dict):
        sink.error(1, "packages.lock.json has no `dependencies` object")
        return
    lines = json_key_lines(text, data, max_depth=3)
    for framework, packages in data["dependencies"].items():
        if not isinstance(packages, dict):
            sink.error(lines.of(packages), f"`dependencies.{framework}` is not an object")
            continue
        for name, entry in packages.items():
            line = lines.of(entry)
            if not isinstance(entry, dict):
                sink.error(line, f"{name}: entry is not an object")
                continue
            kind = entry.get("type")
            if kind == "Project":
                continue
            resolved = entry.get("resolved")
            if not isinstance(resolved, str) or not resolved:
                sink.error(line, f"{name}: no `resolved` version")
                continue
            sink.add(NUGET, name, resolved, line, spec=entry.get("requested"), direct=_TYPES.get(str(kind)))
