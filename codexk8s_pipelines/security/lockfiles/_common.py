"""Plumbing shared by the format parsers: one result sink per file, and the line numbers stdlib parsers drop.

`tomllib` and `json` return values without positions, and reports must point at a line, so positions are
recovered from the text beside the parse: array-of-table headers for TOML locks, the keys of the JSON text
paired with the parsed document, and PyYAML's parser events (which carry marks) for YAML.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from codexk8s_pipelines.security.dependencies import Dependency, ExtractionError, normalise_name
from codexk8s_pipelines.security.safe_files import UnsafeFile, read_regular_file

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
            self.error(None, f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=relative)
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

_TOML_ERROR_LINE = re.compile(r"at line (\d+)")


def load_toml(text: str, sink: Sink) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_ERROR_LINE.search(str(exc))
        sink.error(int(match.group(1)) if match else None, f"invalid TOML: {exc}")
        return None


def array_table_lines(text: str, key: str, count: int) -> list[int | None]:
    """The 1-based line of each `[[key]]` header, in order. Lock writers (Poetry, uv, Cargo) always write one
    header per entry; if the count disagrees with the parsed array (an inline array, a header inside a
    multi-line string) lines are unknown rather than wrong."""
    header = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(key)}[ \t]*\]\][ \t]*(?:#.*)?$")
    lines = [number for number, line in enumerate(text.splitlines(), 1) if header.match(line)]
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
    """The parsed document, or None (with the error recorded) if it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        sink.error(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        sink.error(None, "invalid JSON: nested too deeply")
    return None


def json_key_lines(text: str, data: Any = None, max_depth: int | None = None) -> dict[tuple[str, ...], int]:
    """The 1-based line of each object key whose value is an object or array, by its key path from the top.

    Only container-valued keys are kept (entries are objects in every lock format read here), which keeps the
    map a fraction of the size of a large package-lock; `max_depth` bounds it further. `text` must be JSON that
    `json.loads` accepted; given what it returned as `data`, a fast path pairs a regex over the text with the
    parsed keys, falling back to a full token scan if they do not line up one to one.
    """
    if data is not None:
        fast = _key_lines_by_pairing(text, data, max_depth)
        if fast is not None:
            return fast
    return _key_lines_by_scanning(text, max_depth)


_CONTAINER_KEY_END = re.compile(r'":\s*[\[{]')  # the closing quote of a key whose value is a container


def _escaped(text: str, index: int) -> bool:
    """Whether the character at `index` is escaped: preceded by an odd run of backslashes."""
    run = 0
    while index - run > 0 and text[index - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _container_key_paths(data: Any) -> list[tuple[str, ...]]:
    """Paths of the container-valued keys in document order (json.loads keeps key order)."""
    paths: list[tuple[str, ...]] = []
    stack: list[tuple[tuple[str, ...], Any, bool]] = [((), data, False)]
    while stack:
        path, value, is_key = stack.pop()
        if is_key:
            paths.append(path)
        if isinstance(value, dict):
            children = [((*path, key), child, True) for key, child in value.items() if isinstance(child, dict | list)]
        elif isinstance(value, list):
            children = [((*path, ""), child, False) for child in value if isinstance(child, dict | list)]
        else:
            continue
        stack.extend(reversed(children))
    return paths


def _key_lines_by_pairing(text: str, data: Any, max_depth: int | None) -> dict[tuple[str, ...], int] | None:
    """The keys found in the text (`"key": {` / `"key": [`, the key read back to its opening quote), zipped
    with the parsed paths; None when the two disagree (a look-alike inside a string value, duplicate keys),
    which leaves it to the exact scan. Several times faster than tokenising every string."""
    paths = _container_key_paths(data)
    result: dict[tuple[str, ...], int] = {}
    line, position, count = 1, 0, 0
    for match in _CONTAINER_KEY_END.finditer(text):
        end = match.start()
        if _escaped(text, end):
            continue  # `\":{` inside a string
        opening = text.rfind('"', 0, end)
        while opening > 0 and _escaped(text, opening):
            opening = text.rfind('"', 0, opening)
        if opening < 0 or count >= len(paths):
            return None
        path = paths[count]
        count += 1
        raw = text[opening + 1 : end]
        try:
            key = json.loads(f'"{raw}"') if "\\" in raw else raw
        except json.JSONDecodeError:
            return None
        if key != path[-1]:
            return None
        line += text.count("\n", position, opening)
        position = opening
        if max_depth is None or len(path) <= max_depth:
            result[path] = line
    return result if count == len(paths) else None


def _key_lines_by_scanning(text: str, max_depth: int | None) -> dict[tuple[str, ...], int]:
    result: dict[tuple[str, ...], int] = {}
    path: list[str] = []  # keys of the enclosing objects ("" stands for an array level)
    kinds: list[str] = []  # "{" or "[" per open container
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
            if kinds and kinds[-1] == "{" and pending is not None:
                key, key_line = pending
                path.append(key)
                if max_depth is None or len(path) <= max_depth:
                    result[tuple(path)] = key_line
            elif kinds:
                path.append("")
            kinds.append(token)
            expect_key = token == "{"
            pending = None
        elif token in "}]":
            if kinds:
                kinds.pop()
            if kinds and path:
                path.pop()
            expect_key = False
        elif token == ",":
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


# Nesting deeper than this is no lockfile: it is there to exhaust the recursion of the reader.
MAX_YAML_DEPTH = 64


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
        sink.error(exc.line, f"invalid YAML: nested deeper than {MAX_YAML_DEPTH} levels")
    finally:
        loader.dispose()
    return documents


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _yaml_value(loader: Any, depth: int) -> Any:
    event = loader.get_event()
    line = event.start_mark.line + 1
    if depth > MAX_YAML_DEPTH:
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
