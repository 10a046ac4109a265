"""Dependencies against the OSV database: one finding per vulnerability (alias group) per dependency and file.

The nightly scan keeps one dashboard issue per repository and marks findings resolved when they disappear, so a
finding's identity must survive the edits that do not change the risk. `Finding.fingerprint` is therefore the
sha256 of ("security", ecosystem, normalised package name, file, canonical advisory id), NUL-separated; it
leaves out the version and the line on purpose: re-ordering a lockfile or bumping to another still-vulnerable
version is the same open finding, while the same package in another file (another service) is another finding.
The canonical id is the alias group's (smallest CVE id, else smallest id), so the identity does not change when
a database adds a GHSA alias. Two entries of one file that share a fingerprint (npm lockfiles can hold a
package at several versions) become one finding, kept at its first line, the other versions listed, and the
fix suggested for the highest of them (above all of them, and not affected).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codexk8s_pipelines.security.dependencies import Dependency, ExtractionError, normalise_name
from codexk8s_pipelines.security.matching import MatchError, MatchingError, is_affected, suggest_fix
from codexk8s_pipelines.security.osv import Advisory, Affected, AliasGroup, DatabaseSummary, OsvDatabase
from codexk8s_pipelines.security.severity import UNRATED, Severity, severity_of, severity_rank
from codexk8s_pipelines.security.versions import SUPPORTED, InvalidVersion, UnsupportedEcosystem, sort_key

__all__ = [
    "EcosystemCoverage",
    "Finding",
    "ScanResult",
    "coverage_of",
    "finding_fingerprint",
    "scan_dependencies",
    "scan_path",
]

OSV_URL = "https://osv.dev/vulnerability/"


def finding_fingerprint(ecosystem: str, package: str, file: str, canonical_id: str) -> str:
    """Stable identity of a finding (see the module docstring for what it leaves out, and why)."""
    name = normalise_name(ecosystem, package)
    return hashlib.sha256("\0".join(("security", ecosystem, name, file, canonical_id)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Finding:
    fingerprint: str
    advisory_id: str  # the alias group's canonical id
    aliases: tuple[str, ...]  # every other id of the group, sorted
    summary: str
    ecosystem: str
    package: str  # as the lockfile writes it
    version: str
    file: str
    line: int | None
    severity: Severity
    fixed_version: str | None
    url: str
    records: tuple[str, ...] = ()  # ids of the group's records that matched this dependency
    other_versions: tuple[str, ...] = ()  # further affected versions of the package in the same file


@dataclass(frozen=True, slots=True)
class EcosystemCoverage:
    """What one ecosystem's part of a scan was checked against. `warning` is set when the scan could not say
    anything about its dependencies: no advisories of that ecosystem loaded, or no version ordering for it."""

    ecosystem: str
    dependencies: int
    checked: int  # pinned dependencies matched against the database
    unpinned: int
    advisories: int  # records of the database that name a package of this ecosystem
    supported: bool

    @property
    def warning(self) -> str | None:
        if not self.supported:
            return (
                f"{self.ecosystem}: {self.dependencies} dependencies in an ecosystem without a version ordering: "
                "not checked"
            )
        if self.checked and not self.advisories:
            return (
                f"{self.ecosystem}: {self.checked} dependencies checked against 0 {self.ecosystem} advisories: "
                "the database has none for this ecosystem, so no finding means nothing"
            )
        return None

    @property
    def summary(self) -> str:
        """The coverage sentence of the dashboard issue and the table: dependencies checked against how many
        advisories, or why none was checked."""
        if self.supported:
            return (
                f"{self.ecosystem}: {self.checked} of {self.dependencies} dependencies checked"
                f" against {self.advisories} advisories"
            )
        return f"{self.ecosystem}: {self.dependencies} dependencies not checked (no version ordering)"

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON types: the JSON report's `coverage` entries (SARIF carries a subset of the keys)."""
        return {
            "ecosystem": self.ecosystem,
            "dependencies": self.dependencies,
            "checked": self.checked,
            "unpinned": self.unpinned,
            "advisories": self.advisories,
            "supported": self.supported,
            "warning": self.warning,
        }


def coverage_of(deps: Sequence[Dependency], advisories: dict[str, int]) -> list[EcosystemCoverage]:
    """Per ecosystem present among `deps`: how many dependencies, how many checked, against how many records."""
    totals: dict[str, list[int]] = {}
    for dep in deps:
        row = totals.setdefault(dep.ecosystem, [0, 0, 0])
        row[0] += 1
        if dep.ecosystem in SUPPORTED:
            if (dep.version or "").strip():
                row[1] += 1
            else:
                row[2] += 1
    return [
        EcosystemCoverage(eco, n, checked, unpinned, advisories.get(eco, 0), eco in SUPPORTED)
        for eco, (n, checked, unpinned) in sorted(totals.items())
    ]


@dataclass(slots=True)
class ScanResult:
    findings: list[Finding]
    dependencies: int  # dependencies looked at, pinned or not
    unpinned: int  # without an exact version: cannot be matched
    unsupported: int  # in an ecosystem without a version ordering
    extraction_errors: list[ExtractionError]
    matching_errors: list[MatchError]
    database: DatabaseSummary
    files: list[str] = field(default_factory=list)  # manifests and lockfiles read (scan_path only)
    coverage: list[EcosystemCoverage] = field(default_factory=list)
    inventory: list[Dependency] = field(default_factory=list)  # every dependency looked at, in file order

    def warnings(self) -> list[str]:
        """What every report format must say besides the findings: coverage gaps, a stale database, records
        dated in the future or used only in part."""
        found = [c.warning for c in self.coverage if c.warning]
        if self.database.stale_message:
            found.append(self.database.stale_message)
        found.extend(self.database.warnings)
        return found

    def unpinned_reasons(self) -> dict[str, int]:
        """Unpinned dependencies by why they have no version (`direct URL (git)...`); plain ranges are left out."""
        counts: dict[str, int] = {}
        for dep in self.inventory:
            if dep.unpinned_reason:
                counts[dep.unpinned_reason] = counts.get(dep.unpinned_reason, 0) + 1
        return counts

    def by_severity(self) -> dict[str, int]:
        """Findings per severity rating, in the order the ratings first appear (findings are worst first)."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.severity.rating] = counts.get(finding.severity.rating, 0) + 1
        return counts


@dataclass(frozen=True, slots=True)
class _Hit:
    group: AliasGroup
    matched: tuple[Affected, ...]
    fixed_version: str | None


class _Scanner:
    """Per-scan caches: a package at one version is matched once, however many files list it."""

    def __init__(self, db: OsvDatabase) -> None:
        self.db = db
        self.errors: dict[tuple[str, str, str], MatchError] = {}
        self._hits: dict[tuple[str, str, str], list[_Hit]] = {}
        self._severity: dict[int, Severity] = {}
        self._groups: dict[tuple[str, str], dict[str, list[Affected]]] = {}

    def hits(self, ecosystem: str, name: str, version: str) -> list[_Hit]:
        key = (ecosystem, name, version)
        found = self._hits.get(key)
        if found is None:
            found = self._hits[key] = self._match(ecosystem, name, version, self.db.lookup(ecosystem, name))
        return found

    def _match(self, ecosystem: str, name: str, version: str, candidates: Sequence[Affected]) -> list[_Hit]:
        matched: dict[str, list[Affected]] = {}
        for entry in candidates:
            try:
                if self.is_affected(entry, version):
                    matched.setdefault(self.db.group(entry.advisory.id).canonical, []).append(entry)
            except MatchingError as exc:
                self.errors.setdefault(
                    (entry.advisory.id, name, version),
                    MatchError(entry.advisory.id, ecosystem, name, version, str(exc)),
                )
        if not matched:
            return []
        # The fix is looked for among all the group's entries for the package, matched or not: another record
        # of the group may say that the first "fixed" version is affected again.
        related = self._by_group(ecosystem, name, candidates)
        return [
            _Hit(self.db.group(entries[0].advisory.id), tuple(entries), suggest_fix(ecosystem, version, related[c]))
            for c, entries in matched.items()
        ]

    def _by_group(self, ecosystem: str, name: str, candidates: Sequence[Affected]) -> dict[str, list[Affected]]:
        """A package's entries by alias group, once per package rather than once per version of it."""
        found = self._groups.get((ecosystem, name))
        if found is None:
            found = self._groups[(ecosystem, name)] = {}
            for entry in candidates:
                found.setdefault(self.db.group(entry.advisory.id).canonical, []).append(entry)
        return found

    def is_affected(self, entry: Affected, version: str) -> bool:
        return is_affected(entry, version)

    def severity(self, entry: Affected) -> Severity:
        cached = self._severity.get(id(entry))
        if cached is None:
            advisory = entry.advisory
            cached = severity_of(
                entry.severity or advisory.severity, advisory.database_severity, package_ratings=entry.ratings
            )
            self._severity[id(entry)] = cached
        return cached

    def finding(self, dep: Dependency, version: str, hit: _Hit) -> Finding:
        severities = [self.severity(e) for e in hit.matched]
        severity = min(severities, key=severity_rank) if severities else UNRATED
        primary = _primary(hit.group, [e.advisory for e in hit.matched])
        return Finding(
            fingerprint=finding_fingerprint(dep.ecosystem, dep.name, dep.file, hit.group.canonical),
            advisory_id=hit.group.canonical,
            aliases=tuple(i for i in hit.group.ids if i != hit.group.canonical),
            summary=primary.summary or next((e.advisory.summary for e in hit.matched if e.advisory.summary), ""),
            ecosystem=dep.ecosystem,
            package=dep.name,
            version=version,
            file=dep.file,
            line=dep.line,
            severity=severity,
            fixed_version=hit.fixed_version,
            url=primary.url or OSV_URL + primary.id,
            records=tuple(sorted({e.advisory.id for e in hit.matched})),
        )


def _primary(group: AliasGroup, advisories: Sequence[Advisory]) -> Advisory:
    """The record that speaks for the group: the one named by the canonical id when loaded, else the smallest id."""
    for advisory in advisories:
        if advisory.id == group.canonical:
            return advisory
    return min(advisories, key=lambda a: a.id)


def _sort_key(finding: Finding) -> tuple[object, ...]:
    return (
        severity_rank(finding.severity),
        finding.package.lower(),
        finding.advisory_id,
        finding.file,
        finding.line or 0,
    )


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per fingerprint: the first by line, with the other versions of that file listed."""
    merged: dict[str, Finding] = {}
    others: dict[str, list[str]] = {}
    for finding in sorted(findings, key=lambda f: (f.line is None, f.line or 0)):
        first = merged.setdefault(finding.fingerprint, finding)
        if first is not finding and finding.version != first.version:
            versions = others.setdefault(finding.fingerprint, [])
            if finding.version not in versions:
                versions.append(finding.version)
    fixes: dict[str, tuple[object, str | None]] = {}
    for finding in findings:  # the fix suggested for the highest version is above, and fixes, all of them
        key = _version_key(finding.ecosystem, finding.version)
        best = fixes.get(finding.fingerprint)
        if best is None or (key is not None and (best[0] is None or key > best[0])):  # type: ignore[operator]
            fixes[finding.fingerprint] = (key, finding.fixed_version)
    out = []
    for fingerprint, finding in merged.items():
        extra = others.get(fingerprint)
        if extra:
            finding = replace(finding, other_versions=tuple(extra), fixed_version=fixes[fingerprint][1])
        out.append(finding)
    return out


def _version_key(ecosystem: str, version: str) -> object | None:
    try:
        return sort_key(ecosystem, version)
    except (InvalidVersion, UnsupportedEcosystem):
        return None


def scan_dependencies(deps: Sequence[Dependency], db: OsvDatabase) -> ScanResult:
    """Match dependencies against the database by index lookup; unpinned ones and unsupported ecosystems are
    counted, not matched. Findings come sorted worst first, then by package."""
    return _scan(deps, db, _Scanner(db))


def _scan(deps: Sequence[Dependency], db: OsvDatabase, scanner: _Scanner) -> ScanResult:
    findings: list[Finding] = []
    unpinned = unsupported = 0
    for dep in deps:
        if dep.ecosystem not in SUPPORTED:
            unsupported += 1
            continue
        version = (dep.version or "").strip()
        if not version:
            unpinned += 1
            continue
        name = normalise_name(dep.ecosystem, dep.name)
        for hit in scanner.hits(dep.ecosystem, name, version):
            findings.append(scanner.finding(dep, version, hit))
    findings = _merge(findings)
    findings.sort(key=_sort_key)
    return ScanResult(
        findings=findings,
        dependencies=len(deps),
        unpinned=unpinned,
        unsupported=unsupported,
        extraction_errors=[],
        matching_errors=sorted(scanner.errors.values(), key=lambda e: (e.advisory_id, e.package, e.version or "")),
        database=db.summary(),
        coverage=coverage_of(deps, db.advisories_per_ecosystem()),
        inventory=list(deps),
    )


def scan_path(root: Path, db: OsvDatabase) -> ScanResult:
    """Extract every dependency under `root` (manifests and lockfiles) and scan them."""
    from codexk8s_pipelines.security.lockfiles import extract_dependencies

    extraction = extract_dependencies(Path(root))
    result = scan_dependencies(extraction.dependencies, db)
    result.extraction_errors = list(extraction.errors)
    result.files = list(extraction.files)
    return result
