"""Plumbing shared by the format parsers: one result sink per file, and the line numbers stdlib parsers drop.

`tomllib` and `json` return values without positions, and reports must point at a line, so positions are
recovered from the text beside the parse: array-of-table headers for TOML locks, the keys of the JSON text
paired with the parsed document, and PyYAML's parser events (which carry marks) for YAML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from codexk8s_pipelines.domain.untrusted_data import UntrustedDataError, loads_json, loads_toml
from codexk8s_pipelines.file_lines import text_lines, undecodable
from codexk8s_pipelines.security.dependencies import Dependency, ExtractionError, normalise_name
from codexk8s_pipelines.security.safe_files import MAX_NESTING, UnsafeFile, read_regular_file

# A 100,000-entry package-lock.json is 26 MB (monorepos reach that); parsing costs ~4.5x the file's size in
# memory (bench/security.py), so the cap bounds one file's parse to about 300 MB.
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class Sink:
    """What parsing one file produced. Parsers append here instead of returning, so a bad entry becomes an error
    and the rest of the file still comes through; includes (`-r other.txt`) append to the same sink."""

    path: Path
    relative: str
    root: Path
    dependencies: list[Dependency] = field(default_factory=list)
    errors: list[ExtractionError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def add(
        self,
        ecosystem: str,
        name: str,
        version: str | None,
        line: int | None,
        *,
        spec: str | None = None,
        direct: bool | None = None,
        file: str | None = None,
        unpinned_reason: str | None = None,
    ) -> None:
        self.dependencies.append(
            Dependency(
                ecosystem,
                normalise_name(ecosystem, name),
                version,
                file or self.relative,
                line,
                spec,
                direct,
                unpinned_reason,
            )
        )

    def error(self, line: int | None, message: str, *, file: str | None = None) -> None:
        self.errors.append(ExtractionError(file or self.relative, line, message))

    def read(self, path: Path, relative: str) -> str | None:
        """The file's text, or None with the reason recorded: an oversized or undecodable file is a finding of
        the scan, not a crash of it."""
        try:
            data = read_regular_file(path, max_bytes=MAX_FILE_BYTES)
        except UnsafeFile as exc:
            self.error(None, str(exc), file=relative)
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.error(*undecodable(exc), file=relative)
            return None
        self.files.append(relative)
        return text


Parser = Callable[[str, Sink], None]


def dedupe(dependencies: list[Dependency]) -> list[Dependency]:
    """One entry per (file, name, version), at its first line. Lockfiles repeat a package at every place it is
    installed (nested node_modules, peer-suffixed pnpm keys); one report per version per file is enough, and it
    counts as direct if any of its places is."""
    kept: dict[tuple[str, str, str, str | None], Dependency] = {}
    for dep in sorted(dependencies, key=lambda d: (d.line or 0, d.name)):
        key = (dep.file, dep.ecosystem, dep.name, dep.version)
        first = kept.get(key)
        if first is None:
            kept[key] = dep
        elif dep.direct and not first.direct:
            kept[key] = replace(first, direct=True)
    return list(kept.values())


# --- TOML ---------------------------------------------------------------------------------------------------------


def load_toml(text: str, sink: Sink) -> dict[str, Any] | None:
    """The parsed document, or None with the error recorded: not TOML, or nested too deeply to parse (tomllib
    recurses per inline array or table, and a file of 200,000 `[` raised RecursionError out of the parser)."""
    try:
        return loads_toml(text, sink.relative)
    except UntrustedDataError as exc:
        sink.error(exc.line, f"invalid TOML: {exc.detail}")
        return None


def array_table_lines(text: str, key: str, count: int) -> list[int | None]:
    """The 1-based line of each `[[key]]` header, in order. Lock writers (Poetry, uv, Cargo) always write one
    header per entry; if the count disagrees with the parsed array (an inline array, a header inside a
    multi-line string) lines are unknown rather than wrong."""
    header = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(key)}[ \t]*\]\][ \t]*(?:#.*)?$")
    lines = [number for number, line in enumerate(text_lines(text), 1) if header.match(line)]
    if len(lines) != count:
        return [None] * count
    return list(lines)


def array_tables(data: dict[str, Any], text: str, key: str, sink: Sink) -> list[tuple[dict[str, Any], int | None]]:
    """The `[[key]]` tables with their header lines; entries that are not tables are reported and left out."""
    packages = data.get(key, [])
    if not isinstance(packages, list):
        sink.error(None, f"`{key}` is not an array of tables")
        return []
    result = []
    for entry, line in zip(packages, array_table_lines(text, key, len(packages)), strict=True):
        if isinstance(entry, dict):
            result.append((entry, line))
        else:
            sink.error(line, f"[[{key}]] entry is not a table")
    return result


# --- JSON ---------------------------------------------------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]')


def load_json(text: str, sink: Sink) -> Any:
    """The parsed document, or None (with the error recorded) if it is not JSON or nests deeper than
    MAX_NESTING."""
    try:
        data = loads_json(text, sink.relative)
    except UntrustedDataError as exc:
        where = "" if exc.column is None else f" (column {exc.column})"
        sink.error(exc.line, f"invalid JSON: {exc.reason}{where}")
        return None
    if _deeper_than(data, MAX_NESTING):
        sink.error(_line_past_depth(text, MAX_NESTING), f"invalid JSON: nested deeper than {MAX_NESTING} levels")
        return None
    return data


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep (the top-level container is level 1). Walked without recursion
    and with one iterator per open level, so it holds at most `limit` of them, however wide the document: a stack of
    every pending child doubled the peak memory of a wide lock."""
    if not isinstance(data, dict | list):
        return False
    levels: list[Iterator[Any]] = [iter(data.values() if isinstance(data, dict) else data)]
    while levels:
        for child in levels[-1]:
            if isinstance(child, dict | list):
                if len(levels) >= limit:
                    return True
                levels.append(iter(child.values() if isinstance(child, dict) else child))
                break
        else:
            levels.pop()
    return False


def _line_past_depth(text: str, limit: int) -> int | None:
    """The 1-based line of the first bracket that opens level `limit` + 1 (read only when the document is too deep)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "{[":
            depth += 1
            if depth > limit:
                return text.count("\n", 0, match.start()) + 1
        elif token in "}]":
            depth -= 1
    return None


class KeyLines:
    """The 1-based line of each object key whose value is an object or an array, looked up by that value (the
    container `json.loads` returned), so a key at any depth costs one entry, not its whole key path."""

    def __init__(self, data: Any, lines: dict[int, int]) -> None:
        self._data = data  # keeps every container alive, so an id() cannot be reused while the lines are
        self._lines = lines

    def of(self, value: Any) -> int | None:
        """The line of the key whose value is `value`; None for a scalar, an array's element, or the top level."""
        return self._lines.get(id(value)) if isinstance(value, dict | list) else None


def json_key_lines(text: str, data: Any, max_depth: int | None = None) -> KeyLines:
    """The line of each object key whose value is an object or array (`KeyLines`), in `data`, which `json.loads`
    returned for `text`.

    Only container-valued keys are kept (entries are objects in every lock format read here), and only those at
    most `max_depth` keys deep when given, which keeps the map a fraction of the size of a large package-lock. A
    fast path pairs a regex over the text with the parsed keys, falling back to a full token scan if they do not
    line up one to one (a look-alike inside a string value, duplicate keys). Either way the memory is one entry a
    kept key, whatever its depth: key paths cost depth × keys (a 3 MB package-lock nested 900 deep took 2.2 GB).
    """
    fast = _key_lines_by_pairing(text, data, max_depth)
    return KeyLines(data, fast if fast is not None else _key_lines_by_scanning(text, data, max_depth))


# The closing quote of a key whose value is a container. JSON allows blanks before the colon too: missing `"k" : {`
# let a duplicate key written that way pair up with the other's line instead of falling back to the exact scan.
_CONTAINER_KEY_END = re.compile(r'"[ \t\r\n]*:[ \t\r\n]*[\[{]')


def _escaped(text: str, index: int) -> bool:
    """Whether the character at `index` is escaped: preceded by an odd run of backslashes."""
    run = 0
    while index - run > 0 and text[index - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _container_keys(data: Any) -> list[tuple[str, Any, int]]:
    """(key, value, depth) of each container-valued key, in document order (json.loads keeps key order); the depth
    counts the containers around the key, arrays included."""
    keys: list[tuple[str, Any, int]] = []
    stack: list[tuple[str | None, Any, int]] = [(None, data, 0)]
    while stack:
        key, value, depth = stack.pop()
        if key is not None:
            keys.append((key, value, depth))
        if isinstance(value, dict):
            children = [(name, child, depth + 1) for name, child in value.items() if isinstance(child, dict | list)]
        elif isinstance(value, list):
            children = [(None, child, depth + 1) for child in value if isinstance(child, dict | list)]
        else:
            continue
        stack.extend(reversed(children))
    return keys


def _key_lines_by_pairing(text: str, data: Any, max_depth: int | None) -> dict[int, int] | None:
    """The keys found in the text (`"key": {` / `"key": [`, the key read back to its opening quote), zipped
    with the parsed keys; None when the two disagree, which leaves it to the exact scan. Several times faster than
    tokenising every string."""
    keys = _container_keys(data)
    result: dict[int, int] = {}
    line, position, count = 1, 0, 0
    for match in _CONTAINER_KEY_END.finditer(text):
        end = match.start()
        if _escaped(text, end):
            continue  # `\":{` inside a string
        opening = text.rfind('"', 0, end)
        while opening > 0 and _escaped(text, opening):
            opening = text.rfind('"', 0, opening)
        if opening < 0 or count >= len(keys):
            return None
        name, value, depth = keys[count]
        count += 1
        raw = text[opening + 1 : end]
        try:
            key = json.loads(f'"{raw}"') if "\\" in raw else raw
        except json.JSONDecodeError:
            return None
        if key != name:
            return None
        line += text.count("\n", position, opening)
        position = opening
        if max_depth is None or depth <= max_depth:
            result[id(value)] = line
    return result if count == len(keys) else None


def _key_lines_by_scanning(text: str, data: Any, max_depth: int | None) -> dict[int, int]:
    """Every token of the text, with the parsed container each open bracket stands for (None where the parsed
    document has no container there): a key's line is kept for its parsed value. A duplicate key's brackets stand
    for the value `json.loads` kept, the last one, and its later occurrence's line overwrites the earlier's."""
    result: dict[int, int] = {}
    opened: list[Any] = []  # per open container: the parsed value it stands for, or None
    kinds: list[str] = []  # "{" or "[" per open container
    items: list[int] = []  # per open container: the index of its current element (arrays)
    pending: tuple[str, int] | None = None  # last key read in the innermost object, with its line
    expect_key = False
    line, position = 1, 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        start = match.start()
        line += text.count("\n", position, start)
        position = start
        if token[0] == '"':
            if expect_key:
                pending = (json.loads(token), line)
                expect_key = False
            continue
        if token in "{[":
            if not kinds:
                value: Any = data
            elif kinds[-1] == "{" and pending is not None:
                parent = opened[-1]
                value = parent.get(pending[0]) if isinstance(parent, dict) else None
                if isinstance(value, dict | list) and (max_depth is None or len(kinds) <= max_depth):
                    result[id(value)] = pending[1]
            else:
                parent = opened[-1]
                value = parent[items[-1]] if isinstance(parent, list) and items[-1] < len(parent) else None
            opened.append(value if isinstance(value, dict | list) else None)
            kinds.append(token)
            items.append(0)
            expect_key = token == "{"
            pending = None
        elif token in "}]":
            if kinds:
                kinds.pop()
                opened.pop()
                items.pop()
            expect_key = False
        elif token == ",":
            if kinds:
                items[-1] += 1
            expect_key = bool(kinds) and kinds[-1] == "{"
    return result


# --- YAML ---------------------------------------------------------------------------------------------------------

# libyaml when PyYAML has it: about ten times faster than the pure-Python loader (the OSV database uses it too)
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


@dataclass(slots=True)
class YamlMap:
    """A YAML mapping with the line of each key. Built from parser events rather than `yaml.compose`, whose
    per-scalar tag resolution makes a large pnpm lock take seconds; scalars stay the strings they were written
    as (`version: 1.10` is "1.10", not the float 1.1)."""

    items: list[tuple[str, int, Any]]  # key, 1-based line of the key, value (str | None | YamlMap | YamlList)
    line: int

    def get(self, key: str) -> Any:
        for name, _line, value in self.items:
            if name == key:
                return value
        return None


@dataclass(slots=True)
class YamlList:
    items: list[Any]
    line: int


def load_yaml(text: str, sink: Sink) -> Any:
    """The document as str/None/YamlMap/YamlList, or None: empty, or invalid with the error recorded. A stream
    of several documents is reported and only the first is returned; formats that do write several documents
    (pnpm 10) use `load_yaml_documents`."""
    documents = load_yaml_documents(text, sink)
    if len(documents) > 1:
        sink.error(None, f"{len(documents)} YAML documents where one was expected: only the first was read")
    return documents[0] if documents else None


def load_yaml_documents(text: str, sink: Sink) -> list[Any]:
    """Every document of the stream, each as `load_yaml` returns one; the documents read before an error are
    kept, the error is recorded with its line."""
    loader = YAML_LOADER(text)
    documents: list[Any] = []
    try:
        loader.get_event()  # stream start
        while not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # document start
            documents.append(_yaml_value(loader, 0))
            loader.get_event()  # document end
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        sink.error(mark.line + 1 if mark is not None else None, f"invalid YAML: {problem}")
    except _TooDeep as exc:
        sink.error(exc.line, f"invalid YAML: nested deeper than {MAX_NESTING} levels")
    finally:
        loader.dispose()
    return documents


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _yaml_value(loader: Any, depth: int) -> Any:
    event = loader.get_event()
    line = event.start_mark.line + 1
    if depth > MAX_NESTING:
        raise _TooDeep(line)
    if isinstance(event, yaml.ScalarEvent):
        plain = event.implicit[0] and not event.style  # CParser writes "" for plain style, the Python parser None
        return None if plain and event.value in _YAML_NULLS else event.value
    if isinstance(event, yaml.MappingStartEvent):
        items = []
        while not loader.check_event(yaml.MappingEndEvent):
            key_line = loader.peek_event().start_mark.line + 1
            key = _yaml_value(loader, depth + 1)
            items.append((key if isinstance(key, str) else "", key_line, _yaml_value(loader, depth + 1)))
        loader.get_event()
        return YamlMap(items, line)
    if isinstance(event, yaml.SequenceStartEvent):
        values = []
        while not loader.check_event(yaml.SequenceEndEvent):
            values.append(_yaml_value(loader, depth + 1))
        loader.get_event()
        return YamlList(values, line)
    return None  # an alias: lock writers use none


def is_semver_like(version: str) -> bool:
    """Registry versions (npm, Go) start with digits and dots; anything else (`file:`, git URLs, `link:`) points
    at code that is not a registry release and so cannot be matched against advisories."""
    return re.match(r"^v?\d+(\.\d+)*", version) is not None
