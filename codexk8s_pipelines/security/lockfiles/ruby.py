"""`Gemfile.lock` (Bundler): the `specs:` of each `GEM` section, direct ones named under `DEPENDENCIES`.

Only `GEM` sections hold registry releases; `GIT` and `PATH` sections are other sources, kept unpinned with the
reason. A spec line is `    name (version)` at four spaces, its own dependencies at six; Bundler appends the
platform to native gems (`nokogiri (1.13.10-x86_64-linux)`), which is not part of the version.
"""

from __future__ import annotations

import re

from codexk8s_pipelines.file_lines import numbered_lines
from codexk8s_pipelines.security.dependencies import RUBYGEMS
from codexk8s_pipelines.security.lockfiles._common import Sink

_SPEC = re.compile(r"^    (?P<name>[^\s(]+) \((?P<version>[^)]+)\)\s*$")
_DIRECT = re.compile(r"^  (?P<name>[^\s(!]+)!?(?: \(.*\))?\s*$")
_VERSION_AND_PLATFORM = re.compile(r"(?P<version>[0-9][0-9A-Za-z.]*)(?:-(?P<platform>.+))?")


def parse_gemfile_lock(text: str, sink: Sink) -> None:
    section = None
    specs: list[tuple[str, str | None, int, str | None]] = []  # name, version, line, unpinned reason
    direct: set[str] = set()
    for number, line in numbered_lines(text):
        if not line.strip():
            continue
        if not line.startswith(" "):
            section = line.strip()
            continue
        if section in ("GEM", "GIT", "PATH", "PLUGIN SOURCE"):
            match = _SPEC.match(line)
            if match is None:
                continue  # `remote:`, `specs:`, a spec's own dependencies (six spaces)
            if section != "GEM":
                specs.append((match["name"], None, number, f"{section.lower()} source: not a registry release"))
                continue
            parsed = _VERSION_AND_PLATFORM.fullmatch(match["version"])
            if parsed is None:
                sink.error(number, f"gem {match['name']!r} has no version: {match['version']!r}")
                continue
            specs.append((match["name"], parsed["version"], number, None))
        elif section == "DEPENDENCIES":
            match = _DIRECT.match(line)
            if match:
                direct.add(match["name"])
    if section is None and text.strip():
        sink.error(1, "not a Gemfile.lock: no section header (GEM, DEPENDENCIES...)")
    for name, version, number, reason in specs:
        sink.add(RUBYGEMS, name, version, number, direct=name in direct if direct else None, unpinned_reason=reason)
