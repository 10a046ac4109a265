"""`pyproject.toml`: PEP 621 `[project]` dependencies and extras, PEP 735 `[dependency-groups]`, and Poetry's
`[tool.poetry.*dependencies]` tables.

`tomllib` keeps no positions, so each entry's line is searched in the text of the table that declares it:
exact for normal formatting, and at worst a line of the right table. `[build-system].requires` is left out:
build tools run at packaging time, not in the product.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from codexk8s_pipelines.security.dependencies import PYPI, url_reason
from codexk8s_pipelines.security.lockfiles._common import Sink, load_toml
from codexk8s_pipelines.security.lockfiles.requirements import pinned_version

_HEADER = re.compile(r"^[ \t]*\[\[?(?P<name>[^\[\]]+)\]\]?[ \t]*(?:#.*)?$")
_NOT_REGISTRY = ("git", "path", "url", "file")  # Poetry dependency tables that point elsewhere than an index


class TomlLocator:
    """Lines of tables and entries in the TOML text, for the values `tomllib` returns without positions."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []
        for index, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if match:
                self.headers.append((index, re.sub(r"[\s\"']", "", match.group("name"))))
        self.used: set[tuple[int, str]] = set()  # (line index, pattern) pairs already handed out

    def header_line(self, table: str) -> int | None:
        for index, name in self.headers:
            if name == table:
                return index + 1
        return None

    def _span(self, table: str | None) -> range | None:
        if table is None:
            return range(len(self.lines))
        for position, (index, name) in enumerate(self.headers):
            if name == table:
                end = self.headers[position + 1][0] if position + 1 < len(self.headers) else len(self.lines)
                return range(index, end)
        return None

    def find(self, patterns: Sequence[re.Pattern[str]], tables: Sequence[str | None]) -> int | None:
        """The first line matching a pattern, trying the tables in order. A line is used up for the pattern that
        found it, so a repeated entry gets the next occurrence while other entries may share the line."""
        for pattern in patterns:
            for table in tables:
                span = self._span(table)
                if span is None:
                    continue
                for index in span:
                    if (index, pattern.pattern) not in self.used and pattern.search(self.lines[index]):
                        self.used.add((index, pattern.pattern))
                        return index + 1
        return None


def parse(text: str, sink: Sink) -> None:
    data = load_toml(text, sink)
    if data is None:
        return
    locator = TomlLocator(text)
    project = data.get("project")
    if project is not None:
        if not isinstance(project, dict):
            sink.error(None, "`project` is not a table")
        else:
            _pep508_list(project.get("dependencies", []), "[project].dependencies", ("project",), locator, sink)
            optional = project.get("optional-dependencies", {})
            if not isinstance(optional, dict):
                sink.error(locator.header_line("project"), "[project].optional-dependencies is not a table")
            else:
                for extra, items in optional.items():
                    tables = ("project.optional-dependencies", "project")
                    _pep508_list(items, f"[project.optional-dependencies].{extra}", tables, locator, sink)
    groups = data.get("dependency-groups")
    if groups is not None:
        if not isinstance(groups, dict):
            sink.error(None, "`dependency-groups` is not a table")
        else:
            for group, items in groups.items():
                _pep508_list(items, f"[dependency-groups].{group}", ("dependency-groups",), locator, sink)
    tool = data.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    if isinstance(poetry, dict):
        _poetry(poetry, locator, sink)


def _pep508_list(items: Any, where: str, tables: Sequence[str], locator: TomlLocator, sink: Sink) -> None:
    if not isinstance(items, list):
        sink.error(locator.header_line(tables[0]), f"{where} is not an array")
        return
    for item in items:
        if isinstance(item, dict):
            continue  # PEP 735 `{include-group = "..."}`: its group is read on its own
        if not isinstance(item, str):
            sink.error(locator.header_line(tables[0]), f"{where} has a non-string entry {item!r}")
            continue
        exact = re.compile(rf"[\"']{re.escape(item)}[\"']")
        try:
            requirement = Requirement(item)
        except InvalidRequirement as exc:
            line = locator.find([exact], [*tables, None])
            sink.error(line, f"{where}: cannot parse requirement {item!r}: {exc}")
            continue
        by_name = re.compile(rf"[\"']\s*{re.escape(requirement.name)}(?![A-Za-z0-9._-])")
        line = locator.find([exact, by_name], [*tables, None])
        if requirement.url:  # `name @ https://...` / VCS: kept, unpinned, with the reason
            sink.add(
                PYPI, requirement.name, None, line, spec=item, direct=True, unpinned_reason=url_reason(requirement.url)
            )
            continue
        sink.add(PYPI, requirement.name, pinned_version(requirement.specifier), line, spec=item, direct=True)


def _poetry(poetry: dict[str, Any], locator: TomlLocator, sink: Sink) -> None:
    tables: list[tuple[str, Any]] = []
    for key in ("dependencies", "dev-dependencies"):
        if key in poetry:
            tables.append((f"tool.poetry.{key}", poetry[key]))
    groups = poetry.get("group", {})
    if isinstance(groups, dict):
        for group, body in groups.items():
            if isinstance(body, dict) and "dependencies" in body:
                tables.append((f"tool.poetry.group.{group}.dependencies", body["dependencies"]))
    for table, entries in tables:
        if not isinstance(entries, dict):
            sink.error(locator.header_line(table), f"[{table}] is not a table")
            continue
        for name, constraint in entries.items():
            if name.lower() == "python":
                continue
            key = re.compile(rf"^\s*(?:\"{re.escape(name)}\"|'{re.escape(name)}'|{re.escape(name)})\s*=")
            line = locator.find([key], [table]) or locator.header_line(f"{table}.{name}")
            for item in constraint if isinstance(constraint, list) else [constraint]:
                _poetry_entry(name, item, line, table, sink)


def _poetry_entry(name: str, constraint: Any, line: int | None, table: str, sink: Sink) -> None:
    if isinstance(constraint, dict):
        if any(key in constraint for key in _NOT_REGISTRY):
            return
        constraint = constraint.get("version")
        if constraint is None:
            sink.error(line, f"[{table}] {name}: dependency table without a version")
            return
    if not isinstance(constraint, str):
        sink.error(line, f"[{table}] {name}: constraint is not a string or table: {constraint!r}")
        return
    sink.add(PYPI, name, poetry_pin(constraint), line, spec=constraint, direct=True)


def poetry_pin(constraint: str) -> str | None:
    """The version a Poetry constraint pins: `1.2.3`, `==1.2.3` and `=1.2.3` are exact in Poetry; `^`, `~`,
    ranges and wildcards are not."""
    text = constraint.strip()
    for prefix in ("==", "="):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    if not text or "*" in text:
        return None
    try:
        Version(text)
    except InvalidVersion:
        return None
    return text
