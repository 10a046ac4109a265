"""`pyproject.toml`: PEP 621 `[project]` dependencies and extras, PEP 735 `[dependency-groups]`, and Poetry's
`[tool.poetry.*dependencies]` tables.

`tomllib` keeps no positions, so each entry's line is searched in the text of the table that declares it:
exact for normal formatting, and at worst a line of the right table. `[build-system].requires` is left out:
build tools run at packaging time, not in the product.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from codexk8s_pipelines.file_lines import text_lines
from codexk8s_pipelines.security.dependencies import PYPI, url_reason
from codexk8s_pipelines.security.lockfiles._common import Sink, load_toml
from codexk8s_pipelines.security.lockfiles.requirements import pinned_version

_HEADER = re.compile(r"^[ \t]*\[\[?(?P<name>[^\[\]]+)\]\]?[ \t]*(?:#.*)?$")
_NOT_REGISTRY = ("git", "path", "url", "file")  # Poetry dependency tables that point elsewhere than an index
# The string tokens of TOML (and comments, so that a quote inside one is no string): each alternative starts with
# its own character and its repetitions exclude each other, so matching is linear.
_TOKEN = re.compile(
    r'#[^\n]*|"""(?:[^"\\]|\\[\s\S]|"(?!""))*"{0,2}"""|\'\'\'(?:[^\']|\'(?!\'\'))*\'{0,2}\'\'\''
    r'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
)
_LINE_KEY = re.compile(  # a key that starts a line: quoted, or bare (a dotted key is a table's, not an entry)
    r"""[ \t]*(?:"(?P<basic>(?:[^"\\\n]|\\.)*)"|'(?P<literal>[^'\n]*)'|(?P<bare>[A-Za-z0-9_-]+))[ \t]*="""
)
_LEADING_NAME = re.compile(r"\s*([A-Za-z0-9._-]+)")


class TomlLocator:
    """Lines of tables and entries in the TOML text, for the values `tomllib` returns without positions.

    The text is indexed once: every table header, every string by its value (escapes decoded, as `tomllib` reads
    them) and by the name it starts with, and every key that starts a line. A lookup is then a dict read and a
    bisection; searching the lines for each entry was O(entries × lines) (8,000 dependencies written with an escape,
    which no line matched, took 89 s). A line is handed out once per kind of lookup and value, so a repeated entry
    gets the next occurrence while other entries may share the line; the lines handed out are skipped in amortised
    constant time (`_Occurrences`), so 100,000 copies of one entry cost no more than 100,000 different ones.

    Lines are counted by "\n" alone (`text_lines`), as GitHub numbers them and as the strings are: `splitlines`
    breaks at U+2028 and the like, which TOML allows in strings and comments, and tables would drift from their
    entries."""

    def __init__(self, text: str) -> None:
        lines = text_lines(text)
        self.line_count = len(lines)
        self.header_starts: list[int] = []  # 0-based line of each table header, in order
        self.first_header: dict[str, int] = {}  # table name -> position in header_starts of its first header
        self._found: dict[tuple[str, str], _Occurrences] = {}  # (kind, value) -> the 0-based lines it is on
        for index, line in enumerate(lines):
            header = _HEADER.match(line)
            if header:
                self.first_header.setdefault(re.sub(r"[\s\"']", "", header.group("name")), len(self.header_starts))
                self.header_starts.append(index)
            key = _LINE_KEY.match(line)
            if key:
                value = key.group("bare") or key.group("literal")
                if value is None:
                    value = _string_value(f'"{key.group("basic")}"')
                if value is not None:
                    self._add("key", value, index)
        line, position = 0, 0
        for match in _TOKEN.finditer(text):
            token = match.group()
            if token[0] == "#":
                continue
            line += text.count("\n", position, match.start())
            position = match.start()
            value = _string_value(token)
            if value is None:
                continue
            self._add("string", value, line)
            name = _LEADING_NAME.match(value)
            if name:
                self._add("name", name.group(1), line)

    def _add(self, kind: str, value: str, index: int) -> None:
        found = self._found.get((kind, value))
        if found is None:
            found = self._found[(kind, value)] = _Occurrences()
        found.add(index)

    def header_line(self, table: str) -> int | None:
        position = self.first_header.get(table)
        return None if position is None else self.header_starts[position] + 1

    def _span(self, table: str | None) -> range | None:
        if table is None:
            return range(self.line_count)
        position = self.first_header.get(table)
        if position is None:
            return None
        following = position + 1
        end = self.header_starts[following] if following < len(self.header_starts) else self.line_count
        return range(self.header_starts[position], end)

    def find(self, lookups: Sequence[tuple[str, str]], tables: Sequence[str | None]) -> int | None:
        """The 1-based line of the first lookup found, trying the tables in order (None: the whole text). A lookup
        is ("string", a string's whole value), ("name", the requirement name a string starts with) or ("key", a
        key at the start of a line)."""
        for lookup in lookups:
            found = self._found.get(lookup)
            if found is None:
                continue
            for table in tables:
                span = self._span(table)
                if span is None:
                    continue
                line = found.take(span.start, span.stop)
                if line is not None:
                    return line + 1
        return None


class _Occurrences:
    """The lines one value is on, in order, each handed out once: the first line not yet handed out in a range is
    found by bisection and then a skip over the ones handed out, kept short by path compression (union-find)."""

    def __init__(self) -> None:
        self.lines: list[int] = []
        self._next: list[int] = []  # per entry: an entry at or after it that may be free (len(lines): none)

    def add(self, line: int) -> None:
        if not self.lines or self.lines[-1] != line:
            self.lines.append(line)
            self._next.append(len(self._next))

    def take(self, start: int, stop: int) -> int | None:
        """The first line in [start, stop) not handed out yet, now handed out; None if there is none."""
        at = self._free_from(bisect.bisect_left(self.lines, start))
        if at >= len(self.lines) or self.lines[at] >= stop:
            return None
        self._next[at] = at + 1
        return self.lines[at]

    def _free_from(self, at: int) -> int:
        root = at
        while root < len(self._next) and self._next[root] != root:
            root = self._next[root]
        while at < len(self._next) and self._next[at] != at:  # path compression
            self._next[at], at = root, self._next[at]
        return root


def _string_value(token: str) -> str | None:
    """The value of a TOML string token as `tomllib` reads it; None if it is none (a look-alike that a whole
    parse would not take)."""
    if token.startswith("'''"):
        return token[3:-3].replace("\r\n", "\n").removeprefix("\n")  # newlines as tomllib reads them
    if token[0] == "'":
        return token[1:-1]
    if "\\" not in token and not token.startswith('"""'):
        return token[1:-1]
    try:
        value = tomllib.loads(f"v = {token}")["v"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


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
        try:
            requirement = Requirement(item)
        except InvalidRequirement as exc:
            line = locator.find([("string", item)], [*tables, None])
            sink.error(line, f"{where}: cannot parse requirement {item!r}: {exc}")
            continue
        line = locator.find([("string", item), ("name", requirement.name)], [*tables, None])
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
            line = locator.find([("key", name)], [table]) or locator.header_line(f"{table}.{name}")
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
