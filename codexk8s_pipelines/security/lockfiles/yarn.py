"""`yarn.lock`, classic (v1, its own format) and Berry (v2+, YAML with a `__metadata` entry).

An entry's header lists every range that resolved to it (`"a@^1.0.0", a@^1.1.0:`); the name is taken from the
first, or for Berry from the entry's `resolution`, which also names the real package behind an alias and the
protocol. Only `npm:` resolutions (classic: plain semver ranges) are registry releases; workspaces, `patch:`
copies of a package listed anyway, git, file and link entries are left out. Neither format says what is
direct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from codexk8s_pipelines.file_lines import numbered_lines
from codexk8s_pipelines.security.dependencies import NPM, url_reason
from codexk8s_pipelines.security.lockfiles._common import Sink, YamlMap, load_yaml

_BERRY = re.compile(r"^__metadata:", re.MULTILINE)
_CLASSIC_VERSION = re.compile(r'^  version:?\s+"?(?P<version>[^"\s]+)"?\s*$')


_LOCAL = ("file:", "link:", "portal:", "workspace:", ".", "/")


def _reason(spec: str) -> str:
    if spec.startswith(("http:", "https:")) and ".git" not in spec:
        return url_reason(spec)
    return url_reason("git+" + spec if not spec.startswith("git") else spec)


def parse_yarn_lock(text: str, sink: Sink) -> None:
    if _BERRY.search(text):
        _berry(text, sink)
    else:
        _classic(text, sink)


def split_descriptor(descriptor: str) -> tuple[str, str]:
    """`@scope/name@range` -> (`@scope/name`, `range`); the scope's own `@` is not the separator."""
    at = descriptor.find("@", 1)
    if at < 0:
        return descriptor, ""
    return descriptor[:at], descriptor[at + 1 :]


@dataclass(slots=True)
class _Entry:
    line: int
    descriptor: str  # the first of the header's descriptors
    version: str | None = None


def _classic(text: str, sink: Sink) -> None:
    entry: _Entry | None = None
    for number, line in numbered_lines(text, "cr"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            _classic_entry(entry, sink)
            header = line.rstrip()
            if not header.endswith(":"):
                sink.error(number, f"unexpected line {header!r}")
                entry = None
                continue
            first = header[:-1].split(",")[0].strip().strip('"')
            entry = _Entry(number, first)
            continue
        match = _CLASSIC_VERSION.match(line)
        if entry is not None and match:
            entry.version = match.group("version")
    _classic_entry(entry, sink)


def _classic_entry(entry: _Entry | None, sink: Sink) -> None:
    if entry is None:
        return
    name, spec = split_descriptor(entry.descriptor)
    if spec.startswith("npm:"):  # alias: "strip-ansi-cjs@npm:strip-ansi@^6.0.1"
        name, spec = split_descriptor(spec[4:])
    if ":" in spec or "/" in spec:
        if not spec.startswith(_LOCAL):  # git, a GitHub shorthand, a tarball URL: kept unpinned, with the reason
            sink.add(NPM, name, None, entry.line, spec=spec, unpinned_reason=_reason(spec))
        return  # file:, link: and portal: are the project's own code
    if entry.version is None:
        sink.error(entry.line, f"entry {entry.descriptor!r} without a version")
        return
    sink.add(NPM, name, entry.version, entry.line)


def _berry(text: str, sink: Sink) -> None:
    root = load_yaml(text, sink)
    if root is None:
        return
    if not isinstance(root, YamlMap):
        sink.error(1, "yarn.lock is not a mapping of entries")
        return
    for key, line, entry in root.items:
        if key == "__metadata":
            continue
        if not isinstance(entry, YamlMap):
            sink.error(line, f"entry {key!r} is not a mapping")
            continue
        resolution = entry.get("resolution")
        if not isinstance(resolution, str) or not resolution:
            resolution = key.split(",")[0].strip()
        name, reference = split_descriptor(resolution)
        protocol = reference.partition(":")[0] if ":" in reference else "npm"
        if protocol != "npm":
            if not reference.startswith(_LOCAL) and protocol not in ("workspace", "patch", "exec"):
                sink.add(NPM, name, None, line, spec=reference, unpinned_reason=_reason(reference))
            continue
        version = entry.get("version")
        if not isinstance(version, str) or not version:
            sink.error(line, f"entry {key!r} without a version")
            continue
        sink.add(NPM, name, version, line)
