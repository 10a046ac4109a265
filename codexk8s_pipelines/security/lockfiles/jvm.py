"""Maven coordinates: `pom.xml` (a manifest) and Gradle's `gradle.lockfile` / `buildscript-gradle.lockfile`.

`pom.xml` is read with `defusedxml` (no entity expansion, no external entities: a pom is untrusted input). A
dependency's version may come from `${properties}` (resolved within the file, `project.version` and the
parent's version included) or from the file's own `dependencyManagement`. A version that stays undefined (set
by a parent pom or an imported BOM that is not in the file) or that is a range is kept unpinned with the reason.
`[1.2.3]` is Maven's hard pin of 1.2.3. Names are `groupId:artifactId`, OSV's spelling for Maven.

Gradle lockfiles list every resolved module as `group:artifact:version=configurations`; they do not say what is
direct.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # only the TreeBuilder base class: parsing goes through defusedxml
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from codexk8s_pipelines.file_lines import numbered_lines
from codexk8s_pipelines.security.dependencies import MAVEN
from codexk8s_pipelines.security.lockfiles._common import Sink

_PROPERTY = re.compile(r"\$\{([^}]+)\}")
_HARD_PIN = re.compile(r"^\[([^,\]]+)\]$")
_MAX_SUBSTITUTIONS = 10
_GRADLE_LINE = re.compile(r"^(?P<group>[^:=\s]+):(?P<artifact>[^:=\s]+):(?P<version>[^:=\s]+)=(?P<configs>.*)$")


def _is_range(version: str) -> bool:
    """A Maven version range (`[1.0,2.0)`, `(,1.0]`): brackets at both ends, a comma between. Not a regex: the
    former one-regex form backtracked on a `[` followed by many commas (20,000 took 2 s, a 1 MB pom hours)."""
    return len(version) >= 2 and version[0] in "[(" and version[-1] in "])" and "," in version[1:-1]


class _LineBuilder(ET.TreeBuilder):
    """Records the line of each element's start tag, which ElementTree drops."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[int, int] = {}
        self.parser: Any = None

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        element = super().start(tag, attrs)
        self.lines[id(element)] = self.parser.parser.CurrentLineNumber
        return element


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: ET.Element | None, name: str) -> str | None:
    child = _child(element, name)
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _properties(project: ET.Element) -> dict[str, str]:
    props: dict[str, str] = {}
    for child in _child(project, "properties") or []:
        if child.text and child.text.strip():
            props[_local(child.tag)] = child.text.strip()
    parent = _child(project, "parent")
    for key, value in (
        ("project.version", _text(project, "version") or _text(parent, "version")),
        ("version", _text(project, "version") or _text(parent, "version")),
        ("project.groupId", _text(project, "groupId") or _text(parent, "groupId")),
        ("project.parent.version", _text(parent, "version")),
    ):
        if value:
            props.setdefault(key, value)
    return props


def _resolve(value: str, props: dict[str, str]) -> tuple[str, str | None]:
    """(value with `${...}` substituted, the name of the first undefined property or None)."""
    for _ in range(_MAX_SUBSTITUTIONS):
        match = _PROPERTY.search(value)
        if match is None:
            return value, None
        if match[1] not in props:
            return value, match[1]
        value = value[: match.start()] + props[match[1]] + value[match.end() :]
    return value, "(substitutions nested too deeply)"


def parse_pom(text: str, sink: Sink) -> None:
    builder = _LineBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    builder.parser = parser
    try:
        parser.feed(text)
        project = parser.close()
    except ET.ParseError as exc:
        sink.error(exc.position[0] if exc.position else None, f"invalid XML: {exc}")
        return
    except DefusedXmlException as exc:
        sink.error(None, f"refused XML: {type(exc).__name__} (DTDs and entities are not read)")
        return
    if _local(project.tag) != "project":
        sink.error(1, f"pom.xml root element is <{_local(project.tag)}>, not <project>")
        return
    props = _properties(project)
    managed: dict[str, str] = {}
    for dep in _child(_child(project, "dependencyManagement"), "dependencies") or []:
        group, artifact, version = _text(dep, "groupId"), _text(dep, "artifactId"), _text(dep, "version")
        if group and artifact and version:
            managed[f"{_resolve(group, props)[0]}:{_resolve(artifact, props)[0]}"] = version
    for dep in _child(project, "dependencies") or []:
        if _local(dep.tag) != "dependency":
            continue
        line = builder.lines.get(id(dep))
        group, artifact = _text(dep, "groupId"), _text(dep, "artifactId")
        if not group or not artifact:
            sink.error(line, "<dependency> without groupId and artifactId")
            continue
        name = f"{_resolve(group, props)[0]}:{_resolve(artifact, props)[0]}"
        declared = _text(dep, "version") or managed.get(name)
        if declared is None:
            reason = "version managed by a parent pom or an imported BOM that is not in this file"
            sink.add(MAVEN, name, None, line, direct=True, unpinned_reason=reason)
            continue
        version, undefined = _resolve(declared, props)
        if undefined:
            reason = f"version property ${{{undefined}}} is not defined in this file"
            sink.add(MAVEN, name, None, line, spec=declared, direct=True, unpinned_reason=reason)
            continue
        pin = _HARD_PIN.match(version)
        if pin:
            version = pin[1].strip()
        elif _is_range(version):
            sink.add(MAVEN, name, None, line, spec=version, direct=True, unpinned_reason="version range")
            continue
        sink.add(MAVEN, name, version, line, spec=declared if declared != version else None, direct=True)


def parse_gradle_lockfile(text: str, sink: Sink) -> None:
    for number, raw in numbered_lines(text, "cr"):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("empty="):
            continue
        match = _GRADLE_LINE.match(line)
        if match is None:
            sink.error(number, f"not a `group:artifact:version=configurations` line: {line[:80]!r}")
            continue
        sink.add(MAVEN, f"{match['group']}:{match['artifact']}", match["version"], number)
