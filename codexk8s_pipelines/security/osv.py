"""An offline OSV advisory database: records from a directory tree and/or OSV's per-ecosystem `all.zip` exports.

The scan runs nightly on every watched repository and from a terminal, so the database is read from disk, never
from the network at scan time (`refresh.py` downloads it beforehand). Loading is tolerant by design: one broken
record among thousands is reported in `errors` and the rest stays usable, because a scanner that refuses to run
reports nothing at all.

What is kept per record is only what matching and reporting need (ids, aliases, summary, severity, one URL and
the affected entries of ecosystems we can order): the `details` text and the long reference lists are dropped,
and ranges are compiled into parsed versions only when a dependency first looks them up (see `matching.py`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from codexk8s_pipelines.domain.untrusted_data import NESTED_TOO_DEEPLY, UntrustedDataError, loads_json
from codexk8s_pipelines.file_lines import not_utf8
from codexk8s_pipelines.security.dependencies import normalise_name
from codexk8s_pipelines.security.lockfiles._common import YAML_LOADER as _YamlLoader
from codexk8s_pipelines.security.safe_files import (
    MAX_NESTING,
    UnsafeFile,
    open_regular_file,
    read_member,
    read_regular_file,
    resolve_inside,
)
from codexk8s_pipelines.security.versions import SUPPORTED

__all__ = [
    "DEFAULT_MAX_AGE",
    "MARKER_NAME",
    "Advisory",
    "Affected",
    "AliasGroup",
    "DatabaseSummary",
    "OsvDatabase",
    "Range",
    "RecordError",
    "format_days",
    "read_marker",
]

DEFAULT_MAX_AGE = timedelta(days=7)
# Written by `refresh.py` at the database root; a dot-file so the record walk never mistakes it for a record.
MARKER_NAME = ".codexk8s-osv.json"
RECORD_SUFFIXES = (".json", ".yaml", ".yml")
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
MATCHED_RANGE_TYPES = ("ECOSYSTEM", "SEMVER")  # GIT ranges need the repository's commit graph: not evaluated
KNOWN_RANGE_TYPES = (*MATCHED_RANGE_TYPES, "GIT")
# Bounds on what one record may cost. The largest real records (PyPI's with every version listed) are ~1 MB;
# an all.zip of every ecosystem inflates to a few GB.
MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_ZIP_INFLATED_BYTES = 8 * 1024 * 1024 * 1024
MAX_ARCHIVE_BYTES = 4 * 1024 * 1024 * 1024
# Records dated later than this past the load time are not believed for the database's age (clock skew aside).
FUTURE_TOLERANCE = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record file (or zip member, `archive.zip!member.json`) that could not be used; the load goes on."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _Malformed(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Range:
    """One ECOSYSTEM or SEMVER range, its events as (kind, version) pairs in the record's order."""

    type: str
    events: tuple[tuple[str, str], ...]


@dataclass(eq=False, slots=True)
class Affected:
    """One `affected[]` entry of a supported ecosystem. `compiled` is matching's cache of parsed versions, filled
    on first lookup so that loading never pays for parsing the versions of packages nobody depends on."""

    advisory: Advisory
    ecosystem: str  # OSV's base ecosystem name, a `:release` suffix removed
    name: str  # normalised with `normalise_name`
    ranges: tuple[Range, ...]
    versions: frozenset[str]
    severity: tuple[Mapping[str, Any], ...]  # package-level severity, which overrides the record's when present
    compiled: Any = None
    # (source, word) of the entry's own rating: `ecosystem_specific.severity`, `database_specific.severity`
    ratings: tuple[tuple[str, str], ...] = ()


@dataclass(eq=False, slots=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    modified: datetime | None
    severity: tuple[Mapping[str, Any], ...]
    database_severity: str | None  # e.g. GHSA's `database_specific.severity`: "HIGH", "MODERATE"
    url: str | None  # first ADVISORY reference
    source: str
    affected: tuple[Affected, ...] = ()


@dataclass(frozen=True, slots=True)
class AliasGroup:
    """Records that are one vulnerability under several names (a PYSEC, its GHSA and its CVE).

    `canonical` is the lexicographically smallest CVE id of the group, or of all its ids when it has no CVE: CVE
    ids are the names people search for, and the choice must not depend on which databases happen to be loaded
    first. `ids` holds every id (records and bare aliases), `records` the ids of loaded records."""

    canonical: str
    ids: tuple[str, ...]
    records: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatabaseSummary:
    """What a scan report says about the database it used."""

    path: str
    records: int
    withdrawn: int
    skipped: int
    duplicates: int
    errors: int
    snapshot: datetime | None
    snapshot_source: str | None  # "marker" (refresh time) or "records" (newest `modified`), None when unknown
    age_days: float | None
    max_age_days: float | None
    stale: bool
    stale_message: str | None
    warnings: tuple[str, ...] = ()  # records used in part, records dated in the future (see OsvDatabase)
    future_dated: int = 0
    error_messages: tuple[str, ...] = ()  # `path: reason` of each unreadable record, for the reports


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        parent = self.parent.setdefault(item, item)
        root = item
        while parent != root:
            root, parent = parent, self.parent[parent]
        while item != root:  # path compression keeps later finds O(1)
            item, self.parent[item] = self.parent[item], root
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _canonical(ids: Sequence[str]) -> str:
    cves = [i for i in ids if i.startswith("CVE-")]
    return min(cves or ids)


def _timestamp(value: Any) -> datetime | None:
    """`modified` as an aware datetime; libyaml already turns unquoted timestamps into datetimes. Go's vulndb
    writes the zero time (0001-01-01) in its repository copy, which says nothing about age: None."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp if stamp > _EPOCH else None


def _str_list(raw: Mapping[str, Any], key: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Malformed(f"`{key}` is not a list of strings")
    return value


def _ranges(raw_ranges: Any, where: str, warnings: list[str]) -> tuple[Range, ...]:
    if raw_ranges is None:
        return ()
    if not isinstance(raw_ranges, list):
        raise _Malformed(f"{where}.ranges is not a list")
    ranges: list[Range] = []
    for n, raw in enumerate(raw_ranges):
        here = f"{where}.ranges[{n}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
            raise _Malformed(f"{here} is not a mapping with a `type`")
        events = raw.get("events")
        if not isinstance(events, list) or not events:
            raise _Malformed(f"{here}.events is not a non-empty list")
        pairs: list[tuple[str, str]] = []
        for m, event in enumerate(events):
            if not isinstance(event, Mapping) or len(event) != 1:
                raise _Malformed(f"{here}.events[{m}] is not a mapping with exactly one event")
            ((kind, version),) = event.items()
            if kind not in EVENT_KINDS:
                raise _Malformed(f"{here}.events[{m}]: unknown event {kind!r}")
            if not isinstance(version, str) or not version:
                raise _Malformed(f"{here}.events[{m}].{kind} is not a version string")
            pairs.append((kind, version))
        if not any(kind == "introduced" for kind, _ in pairs):
            raise _Malformed(f"{here} has no `introduced` event")
        if raw["type"] in MATCHED_RANGE_TYPES:
            ranges.append(Range(raw["type"], tuple(pairs)))
        elif raw["type"] not in KNOWN_RANGE_TYPES:
            warnings.append(f"{here}: unknown range type {raw['type']!r}, not evaluated")
    return tuple(ranges)


def _severity_list(raw: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, Mapping) for s in raw):
        raise _Malformed(f"{where} is not a list of mappings")
    return tuple(raw)


def _package_ratings(entry: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    ratings = []
    for key in ("ecosystem_specific", "database_specific"):
        specific = entry.get(key)
        word = specific.get("severity") if isinstance(specific, Mapping) else None
        if isinstance(word, str) and word.strip():
            ratings.append((f"affected[].{key}.severity", word))
    return tuple(ratings)


def _summary(raw: Mapping[str, Any]) -> str:
    """OSV's `summary`, or the first sentence-ish line of `details` (PYSEC records have no summary)."""
    text = raw.get("summary")
    if not isinstance(text, str) or not text.strip():
        details = raw.get("details")
        text = details if isinstance(details, str) else ""
    flat = " ".join(text.split())
    return flat if len(flat) <= 160 else flat[:159] + "…"


def _first_advisory_url(raw: Mapping[str, Any]) -> str | None:
    refs = raw.get("references")
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("type") == "ADVISORY" and isinstance(ref.get("url"), str):
            return str(ref["url"])
    return None


@dataclass(slots=True)
class _Parsed:
    """Outcome of reading one record: an advisory, or why it was not indexed."""

    advisory: Advisory | None = None
    withdrawn: bool = False
    unsupported: tuple[str, ...] = ()
    modified: datetime | None = None
    warnings: tuple[str, ...] = ()  # the record is used, but part of it was not understood


def _build(raw: Any, source: str) -> _Parsed:
    if not isinstance(raw, Mapping):
        raise _Malformed(f"record is not a mapping (got {type(raw).__name__})")
    record_id = raw.get("id")
    if not isinstance(record_id, str) or not record_id.strip():
        raise _Malformed("missing `id`")
    modified = _timestamp(raw.get("modified"))
    warnings: list[str] = []
    withdrawn = raw.get("withdrawn")
    if withdrawn:
        if _timestamp(withdrawn) is not None:
            return _Parsed(withdrawn=True, modified=modified)
        # A withdrawal must say when; a value that is no timestamp is a broken record, and dropping its
        # findings on that word alone would hide a live vulnerability.
        warnings.append(f"`withdrawn` is not a timestamp ({str(withdrawn)[:40]!r}): the record is kept")
    aliases = tuple(a for a in _str_list(raw, "aliases") if a != record_id)
    database_specific = raw.get("database_specific")
    db_severity = database_specific.get("severity") if isinstance(database_specific, Mapping) else None
    advisory = Advisory(
        id=record_id,
        aliases=aliases,
        summary=_summary(raw),
        modified=modified,
        severity=_severity_list(raw.get("severity"), "severity"),
        database_severity=db_severity if isinstance(db_severity, str) else None,
        url=_first_advisory_url(raw),
        source=source,
    )
    affected_raw = raw.get("affected")
    if affected_raw is None:
        affected_raw = []
    if not isinstance(affected_raw, list):
        raise _Malformed("`affected` is not a list")
    affected: list[Affected] = []
    unsupported: list[str] = []
    for n, entry in enumerate(affected_raw):
        where = f"affected[{n}]"
        package = entry.get("package") if isinstance(entry, Mapping) else None
        if not isinstance(package, Mapping):
            raise _Malformed(f"{where}.package is missing")
        ecosystem, name = package.get("ecosystem"), package.get("name")
        if not isinstance(ecosystem, str) or not isinstance(name, str) or not name.strip():
            raise _Malformed(f"{where}.package needs `ecosystem` and `name` strings")
        base = ecosystem.split(":", 1)[0].strip()
        if base not in SUPPORTED:
            unsupported.append(base)
            continue
        affected.append(
            Affected(
                advisory=advisory,
                ecosystem=base,
                name=normalise_name(base, name),
                ranges=_ranges(entry.get("ranges"), where, warnings),
                versions=frozenset(_str_list(entry, "versions")),
                severity=_severity_list(entry.get("severity"), f"{where}.severity"),
                ratings=_package_ratings(entry),
            )
        )
    if not affected:
        return _Parsed(unsupported=tuple(unsupported) or ("(none)",), modified=modified, warnings=tuple(warnings))
    advisory.affected = tuple(affected)
    return _Parsed(advisory=advisory, modified=modified, warnings=tuple(warnings))


# Real records nest a handful of levels. libyaml's composer recurses in C, and a record nested 100,000 deep
# kills the whole process with a segmentation fault (no exception to catch), so depth is measured first.
MAX_RECORD_DEPTH = MAX_NESTING  # safe_files: the platform's one nesting limit
# One unit of the run a line opens with: a blank or a block indicator (`-`, `?`, `:`). A line starts after CR, LF,
# or the last byte of NEL, LS or PS (libyaml's line breaks); a byte that only looks like one, or an indicator that
# is no indicator, makes the gate fire more often, never less.
_LINE_RUN_UNIT = rb"[ \t?:-]"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"  # libyaml skips it at the start of any line, not only of the document


@functools.lru_cache(maxsize=4)
def _line_runs(length: int) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """A line's opening run of `length` units: after a line break, and at the document's start."""
    run = _LINE_RUN_UNIT + b"{%d}" % length
    return re.compile(rb"[\r\n\x85\xa8\xa9]" + run), re.compile(run)


def _could_nest_deeper(data: bytes, limit: int) -> bool:
    """Whether the YAML could nest deeper than `limit`, told cheaply from its bytes (walking every record's events
    costs about 40% more than loading it). A flow collection opens with `[` or `{`, so flow nesting is at most
    their count. A block collection starts right of the one that holds it, or after a `- `, `? ` or `: ` that
    opens its line, so block nesting is at most twice the longest run of blanks and indicators a line opens with,
    plus two. When both bounds add up to at most `limit` the record cannot be too deep. The former gate, 32
    brackets in a row or 128 blanks after a newline, let `"[ " * 100_000` and `"- " * 100_000` through to the
    composer, and the process died."""
    if data.startswith(_UTF16_BOMS):  # libyaml reads UTF-16 too; its blanks are not the bytes counted here
        return True
    if _UTF8_BOM in data:  # a line's run may start after one, which the patterns below do not skip: walk the events
        return True
    flow_safe = limit // 2 - 1
    flow = data.count(b"[") + data.count(b"{")
    if flow > flow_safe:
        return True
    after_break, at_start = _line_runs((limit - flow_safe - 2) // 2 + 1)
    return after_break.search(data) is not None or at_start.match(data) is not None


def _yaml_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether the YAML nests deeper than `limit`, told from the parser's events (libyaml's parser, unlike its
    composer, is iterative). Only documents that could be deep (`_could_nest_deeper`) are walked."""
    if not _could_nest_deeper(data, limit):
        return False
    depth = 0
    for event in yaml.parse(data, Loader=_YamlLoader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > limit:
                return True
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return False


def _parse_bytes(data: bytes, name: str) -> Any:
    """The record's document; `UntrustedDataError` when it is not JSON or nests deeper than the readers can
    follow (json's decoder recurses per level; libyaml's composer would crash the process)."""
    if name.endswith(".json"):
        # Decoded as json.loads decodes bytes, so that bytes which are no text stay "not UTF-8 text".
        return loads_json(data.decode(json.detect_encoding(data), "surrogatepass"), name)
    if _yaml_depth_exceeds(data, MAX_RECORD_DEPTH):
        raise UntrustedDataError(name, "YAML", NESTED_TOO_DEEPLY)
    return yaml.load(data, Loader=_YamlLoader)  # a safe loader: no arbitrary objects


def _walk(root: Path) -> Iterator[Path]:
    """Record files and zips under `root`, in a stable order, skipping dot-files and dot-directories (the refresh
    marker, `.git`, editors' temporaries). Directory symlinks are not entered (os.walk's default)."""
    if not root.is_dir():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            if filename.endswith(RECORD_SUFFIXES) or filename.endswith(".zip"):
                yield Path(dirpath, filename)


def osv_database_present(path: Path) -> bool:
    """Something to load at `path`: one zip file, or a directory that is not empty (a fresh install has neither
    until `osv_database` is materialized)."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def read_marker(root: Path) -> dict[str, Any] | None:
    """The refresh marker at the database root, None when absent or unreadable (then records' dates decide)."""
    try:
        data = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _marker_snapshot(marker: Mapping[str, Any] | None) -> datetime | None:
    """The oldest per-ecosystem download time: a refresh that failed for one ecosystem leaves that ecosystem's
    older data in place, and the database is as old as its oldest part."""
    if not marker:
        return None
    stamps: list[datetime] = []
    ecosystems = marker.get("ecosystems")
    if isinstance(ecosystems, Mapping):
        for entry in ecosystems.values():
            if isinstance(entry, Mapping) and (stamp := _timestamp(entry.get("fetched_at"))):
                stamps.append(stamp)
    if not stamps and (stamp := _timestamp(marker.get("fetched_at"))):
        stamps.append(stamp)
    return min(stamps) if stamps else None


@dataclass(eq=False)
class OsvDatabase:
    """Advisories indexed by (ecosystem, normalised package name), with their alias groups and freshness."""

    path: Path
    now: datetime
    max_age: timedelta | None = DEFAULT_MAX_AGE
    advisories: dict[str, Advisory] = field(default_factory=dict)
    errors: list[RecordError] = field(default_factory=list)
    # Records that are used although part of them was not understood (an unknown range type, a `withdrawn`
    # that is no date), and records dated in the future: reported, never silently dropped.
    warnings: list[RecordError] = field(default_factory=list)
    future_dated: int = 0
    withdrawn: int = 0
    skipped: int = 0  # records with no affected package in a supported ecosystem
    skipped_ecosystems: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0  # the same id read twice (a tree and a zip of it): the newer `modified` is kept
    files: int = 0  # record files and zip members read
    snapshot: datetime | None = None
    snapshot_source: str | None = None
    max_inflated: int = MAX_ZIP_INFLATED_BYTES
    _root: Path = field(default=Path("."), repr=False)
    _per_ecosystem: dict[str, int] | None = field(default=None, repr=False)
    _index: dict[tuple[str, str], list[Affected]] = field(default_factory=dict, repr=False)
    _groups: dict[str, AliasGroup] = field(default_factory=dict, repr=False)

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: Path,
        *,
        max_age: timedelta | None = DEFAULT_MAX_AGE,
        now: datetime | None = None,
        max_inflated: int = MAX_ZIP_INFLATED_BYTES,
    ) -> OsvDatabase:
        """Read every record under `path` (a directory, one record file or one zip). A missing path raises
        FileNotFoundError: that is the caller's mistake, unlike a broken record, which is only reported.
        `max_inflated` bounds what each zip may inflate to in all (a record is bounded by MAX_RECORD_BYTES)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such OSV database: {path}")
        db = cls(path=path, now=now or datetime.now(UTC), max_age=max_age, max_inflated=max_inflated)
        db._root = path.resolve() if path.is_dir() else path.resolve().parent
        newest: datetime | None = None
        horizon = db.now + FUTURE_TOLERANCE
        future: list[tuple[datetime, str]] = []
        for file in _walk(path):
            for parsed, source in db._read(file):
                db.warnings.extend(RecordError(source, message) for message in parsed.warnings)
                if parsed.modified and parsed.modified > horizon:
                    future.append((parsed.modified, source))
                elif parsed.modified and (newest is None or parsed.modified > newest):
                    newest = parsed.modified
                if parsed.withdrawn:
                    db.withdrawn += 1
                elif parsed.advisory is None:
                    db.skipped += 1
                    db.skipped_ecosystems.update(parsed.unsupported)
                else:
                    db._add(parsed.advisory)
        db._build_index()
        if future:
            db.future_dated = len(future)
            latest, where = max(future)
            db.warnings.append(
                RecordError(
                    where,
                    f"{len(future)} record(s) dated in the future (latest `modified` {latest.date().isoformat()}): "
                    "ignored for the database's age",
                )
            )
        marker_time = _marker_snapshot(read_marker(path)) if path.is_dir() else None
        if marker_time is not None and marker_time > horizon:
            db.warnings.append(
                RecordError(
                    str(path / MARKER_NAME),
                    f"refresh marker dated in the future ({marker_time.date().isoformat()}): "
                    "ignored for the database's age",
                )
            )
            marker_time = None
        if marker_time is not None:
            db.snapshot, db.snapshot_source = marker_time, "marker"
        elif newest is not None:
            db.snapshot, db.snapshot_source = newest, "records"
        return db

    def _open(self, file: Path, max_bytes: int, *, stream: bool = False) -> Any:
        """The file's bytes (or a binary stream), None with the reason recorded: symlinks must stay inside the
        database, and FIFOs, devices and oversized files are refused before reading."""
        try:
            if file.is_symlink():
                file = resolve_inside(file, self._root)
            if stream:
                return open_regular_file(file, max_bytes=max_bytes)
            return read_regular_file(file, max_bytes=max_bytes)
        except UnsafeFile as exc:
            self.errors.append(RecordError(str(file), str(exc)))
            return None

    def _read(self, file: Path) -> Iterator[tuple[_Parsed, str]]:
        if file.suffix == ".zip":
            yield from self._read_zip(file)
            return
        self.files += 1
        data = self._open(file, MAX_RECORD_BYTES)
        if data is None:
            return
        try:
            yield _build(_parse_bytes(data, file.name), str(file)), str(file)
        except (_Malformed, ValueError, yaml.YAMLError, OSError, RecursionError) as exc:  # pure-Python loader
            self.errors.append(RecordError(str(file), _describe(exc)))

    def _read_zip(self, file: Path) -> Iterator[tuple[_Parsed, str]]:
        handle = self._open(file, MAX_ARCHIVE_BYTES, stream=True)
        if handle is None:
            return
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError) as exc:
            handle.close()
            self.errors.append(RecordError(str(file), f"not a readable zip archive: {exc}"))
            return
        inflated = 0
        with handle, archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(RECORD_SUFFIXES):
                    continue
                self.files += 1
                source = f"{file}!{info.filename}"
                if inflated + info.file_size > self.max_inflated:
                    self.errors.append(
                        RecordError(
                            source,
                            f"the archive inflates to over {self.max_inflated / 1024**3:g} GB: "
                            "this and the remaining members were not read",
                        )
                    )
                    return
                try:
                    member = read_member(archive, info, max_bytes=MAX_RECORD_BYTES)
                    inflated += len(member)
                    yield _build(_parse_bytes(member, info.filename), source), source
                except UnsafeFile as exc:
                    inflated += info.file_size
                    self.errors.append(RecordError(source, str(exc)))
                except (_Malformed, ValueError, yaml.YAMLError, OSError, RecursionError, zipfile.BadZipFile) as exc:
                    self.errors.append(RecordError(source, _describe(exc)))

    def _add(self, advisory: Advisory) -> None:
        previous = self.advisories.get(advisory.id)
        if previous is not None:
            self.duplicates += 1
            if (previous.modified or _EPOCH) >= (advisory.modified or _EPOCH):
                return
        self.advisories[advisory.id] = advisory

    def _build_index(self) -> None:
        index: dict[tuple[str, str], list[Affected]] = {}
        groups = _UnionFind()
        for advisory in self.advisories.values():
            for affected in advisory.affected:
                index.setdefault((affected.ecosystem, affected.name), []).append(affected)
            groups.find(advisory.id)
            for alias in advisory.aliases:
                groups.union(advisory.id, alias)
        members: dict[str, list[str]] = {}
        for item in list(groups.parent):
            members.setdefault(groups.find(item), []).append(item)
        by_id: dict[str, AliasGroup] = {}
        for ids in members.values():
            ids.sort()
            group = AliasGroup(
                canonical=_canonical(ids), ids=tuple(ids), records=tuple(i for i in ids if i in self.advisories)
            )
            for i in ids:
                by_id[i] = group
        self._index, self._groups = index, by_id
        self._per_ecosystem = None  # counted again from the advisories indexed now, when asked

    # -- queries -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.advisories)

    def lookup(self, ecosystem: str, name: str) -> Sequence[Affected]:
        """Affected entries for a package; `name` is normalised here, so callers may pass it as written."""
        return self._index.get((ecosystem, normalise_name(ecosystem, name)), ())

    def advisories_per_ecosystem(self) -> dict[str, int]:
        """How many records name at least one package of each ecosystem: the "against how many advisories" of
        the scan's coverage, which makes an ecosystem whose advisories were never loaded visible."""
        if self._per_ecosystem is None:
            counts: Counter[str] = Counter()
            for advisory in self.advisories.values():
                counts.update({affected.ecosystem for affected in advisory.affected})
            self._per_ecosystem = dict(counts)
        return dict(self._per_ecosystem)

    def packages(self) -> list[tuple[str, str]]:
        """Every (ecosystem, normalised name) with at least one advisory."""
        return list(self._index)

    def group(self, advisory_id: str) -> AliasGroup:
        """The alias group of an id; an id no record mentions is a group of its own."""
        found = self._groups.get(advisory_id)
        return found or AliasGroup(advisory_id, (advisory_id,), (advisory_id,) if advisory_id in self else ())

    def __contains__(self, advisory_id: object) -> bool:
        return advisory_id in self.advisories

    # -- freshness -----------------------------------------------------------------------------------------
    @property
    def age(self) -> timedelta | None:
        return None if self.snapshot is None else self.now - self.snapshot

    @property
    def stale(self) -> bool:
        """Older than `max_age`; a database whose age cannot be told counts as stale, since a scan against
        advisories of unknown date can silently miss everything published since."""
        if self.max_age is None:
            return False
        age = self.age
        return age is None or age > self.max_age

    def staleness_message(self) -> str | None:
        """One sentence for every report format, None when the database is fresh enough."""
        if not self.stale or self.max_age is None:
            return None
        limit = format_days(self.max_age)
        age = self.age
        if age is None or self.snapshot is None:
            return (
                f"OSV database age is unknown (no refresh marker and no record `modified` date), "
                f"it may be older than {limit}: refresh it"
            )
        return (
            f"OSV database is {age.days} days old (snapshot {self.snapshot.date().isoformat()}), "
            f"older than {limit}: refresh it"
        )

    def summary(self) -> DatabaseSummary:
        age = self.age
        return DatabaseSummary(
            path=str(self.path),
            records=len(self.advisories),
            withdrawn=self.withdrawn,
            skipped=self.skipped,
            duplicates=self.duplicates,
            errors=len(self.errors),
            snapshot=self.snapshot,
            snapshot_source=self.snapshot_source,
            age_days=None if age is None else round(age.total_seconds() / 86400, 2),
            max_age_days=None if self.max_age is None else self.max_age.total_seconds() / 86400,
            stale=self.stale,
            stale_message=self.staleness_message(),
            warnings=tuple(str(w) for w in self.warnings),
            future_dated=self.future_dated,
            error_messages=tuple(str(e) for e in self.errors),
        )


def format_days(delta: timedelta) -> str:
    """`7 days`, `1 day`, `0.5 days`: a duration as reports word it."""
    days = delta.total_seconds() / 86400
    text = f"{days:g}"
    return f"{text} day" if text == "1" else f"{text} days"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Malformed):
        return str(exc)
    if isinstance(exc, UntrustedDataError):
        return "nested too deeply to be an OSV record" if exc.too_deep else f"invalid {exc.form}: {exc.detail}"
    if isinstance(exc, yaml.YAMLError):
        return "invalid YAML: " + " ".join(str(exc).split())
    if isinstance(exc, UnicodeDecodeError):
        return not_utf8(exc)
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    if isinstance(exc, RecursionError):
        return "nested too deeply to be an OSV record"
    return str(exc)
