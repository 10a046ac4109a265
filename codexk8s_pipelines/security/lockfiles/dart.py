"""`pubspec.lock` (Dart and Flutter): `packages`, each with its `dependency` kind, `source` and `version`.

`hosted` packages come from pub.dev (or another pub server) and are matched; `git` and `path` ones are kept
unpinned with the reason; `sdk` packages (flutter, flutter_test) ship with the SDK and are left out.
`dependency: direct main|direct dev|direct overridden` is direct, `transitive` is not.
"""

from __future__ import annotations

from codexk8s_pipelines.security.dependencies import PUB
from codexk8s_pipelines.security.lockfiles._common import Sink, YamlMap, load_yaml


def parse_pubspec_lock(text: str, sink: Sink) -> None:
    root = load_yaml(text, sink)
    if root is None:
        return
    if not isinstance(root, YamlMap) or not isinstance(root.get("packages"), YamlMap | None):
        sink.error(1, "pubspec.lock has no `packages` mapping")
        return
    packages = root.get("packages")
    for name, line, entry in packages.items if packages else []:
        if not isinstance(entry, YamlMap):
            sink.error(line, f"{name}: entry is not a mapping")
            continue
        source, version, kind = entry.get("source"), entry.get("version"), entry.get("dependency")
        direct = kind.startswith("direct") if isinstance(kind, str) else None
        if source == "sdk":
            continue
        if source not in (None, "hosted"):
            sink.add(PUB, name, None, line, direct=direct, unpinned_reason=f"{source} source: not a registry release")
            continue
        if not isinstance(version, str) or not version:
            sink.error(line, f"{name}: no `version`")
            continue
        sink.add(PUB, name, version, line, direct=direct)
