"""How far behind its registry each dependency is: versions behind and libyear.

Two measures, because each hides what the other shows: "versions behind" says how big the jump is (a major
means reading a changelog for breaking changes), libyear says how long the project has been missing out (a
patch behind for three years is worse than a major behind for a week).

- Versions behind, the way libyear's "version number delta" (Cox et al., *Measuring Dependency Freshness*,
  2015) and tools like it count: only the most significant differing part is counted, since a new major
  resets minor and patch. `1.4.2 → 3.0.1` is 2 majors behind (not "2 majors, -4 minors"); `1.4.2 → 1.6.0` is 2
  minors; `1.4.2 → 1.4.7` is 5 patches. A latest that differs only past the patch (`1.0` → `1.0.post1`) is
  outdated yet 0/0/0 behind: libyear still shows it.
- Libyear: the latest release's date minus the used release's date, in years of 365.25 days; 0 when up to date.
  A used version released after the latest (a backport on an old line) counts 0, not negative: it is not
  "ahead", and a negative would cancel real lag in the totals.

A used version newer than the latest stable (a prerelease of the next one) is up to date. A dependency without
an exact version (`requests>=2` in a manifest) is "unpinned": its latest release is shown, but there is no used
release to date, so no libyear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ..security.dependencies import Dependency, normalise_name
from ..security.versions import InvalidVersion, UnsupportedEcosystem, compare, release_triple
from .registries import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BYTES,
    DEFAULT_REGISTRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    PackageInfo,
    RegistryError,
    RegistryUrls,
    fetch_packages,
    registry_name,
)

UP_TO_DATE = "up-to-date"
OUTDATED = "outdated"
UNPINNED = "unpinned"

SECONDS_PER_YEAR = 365.25 * 24 * 3600

__all__ = [
    "OUTDATED",
    "UNPINNED",
    "UP_TO_DATE",
    "Behind",
    "EcosystemTotals",
    "FreshnessError",
    "FreshnessReport",
    "FreshnessRow",
    "FreshnessTotals",
    "check_freshness",
    "libyear",
    "versions_behind",
]


class Behind(NamedTuple):
    """Versions behind; at most one part is non-zero (see the module docstring)."""

    major: int = 0
    minor: int = 0
    patch: int = 0

    def __str__(self) -> str:
        for part in ("major", "minor", "patch"):
            count = getattr(self, part)
            if count:
                return f"{count} {part}"
        return "0"


def versions_behind(ecosystem: str, used: str, latest: str) -> Behind:
    """The most significant differing part of (major, minor, patch), never negative (an epoch or a legacy
    PyPI version can make a later version's triple smaller)."""
    u, lt = release_triple(ecosystem, used), release_triple(ecosystem, latest)
    if u[0] != lt[0]:
        return Behind(major=max(0, lt[0] - u[0]))
    if u[1] != lt[1]:
        return Behind(minor=max(0, lt[1] - u[1]))
    return Behind(patch=max(0, lt[2] - u[2]))


def libyear(used_released: datetime, latest_released: datetime) -> float:
    """Years between the two releases, 0 when the used one is the newer (a backport)."""
    return max(0.0, (latest_released - used_released).total_seconds() / SECONDS_PER_YEAR)


@dataclass(frozen=True, slots=True)
class FreshnessRow:
    """One distinct (ecosystem, name, version), with every file that declares or locks it."""

    ecosystem: str
    name: str
    version: str | None  # None: unpinned
    latest: str | None  # None: the registry has no stable, unyanked release
    status: str  # UP_TO_DATE, OUTDATED or UNPINNED
    used_released: datetime | None = None
    latest_released: datetime | None = None
    behind: Behind | None = None  # None when unpinned or when there is no latest
    libyear: float | None = None  # None when unpinned or a release date is unknown
    files: tuple[str, ...] = ()
    direct: bool | None = None
    spec: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def outdated(self) -> bool:
        return self.status == OUTDATED


@dataclass(frozen=True, slots=True)
class FreshnessError:
    """A dependency the check could not answer for: the registry failed, or never published the used version."""

    ecosystem: str
    name: str
    version: str | None
    registry: str
    reason: str
    files: tuple[str, ...] = ()

    def __str__(self) -> str:
        at = f"@{self.version}" if self.version else ""
        return f"{self.ecosystem} {self.name}{at}: {self.reason}"


@dataclass(frozen=True, slots=True)
class EcosystemTotals:
    dependencies: int = 0
    outdated: int = 0
    libyear: float = 0.0


@dataclass(frozen=True, slots=True)
class FreshnessTotals:
    dependencies: int  # distinct (ecosystem, name, version), checked or not
    outdated: int
    up_to_date: int
    unpinned: int
    errors: int
    libyear: float
    by_ecosystem: dict[str, EcosystemTotals] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FreshnessReport:
    """Rows sorted by libyear, highest first (unpinned and undated last), then ecosystem, name, version."""

    rows: tuple[FreshnessRow, ...]
    errors: tuple[FreshnessError, ...]
    checked_at: datetime

    @property
    def totals(self) -> FreshnessTotals:
        by: dict[str, list[Any]] = {}
        for item in (*self.rows, *self.errors):
            entry = by.setdefault(item.ecosystem, [0, 0, 0.0])
            entry[0] += 1
            if isinstance(item, FreshnessRow):
                entry[1] += item.outdated
                entry[2] += item.libyear or 0.0
        return FreshnessTotals(
            dependencies=len(self.rows) + len(self.errors),
            outdated=sum(r.outdated for r in self.rows),
            up_to_date=sum(r.status == UP_TO_DATE for r in self.rows),
            unpinned=sum(r.status == UNPINNED for r in self.rows),
            errors=len(self.errors),
            libyear=sum(r.libyear or 0.0 for r in self.rows),
            by_ecosystem={eco: EcosystemTotals(n, out, years) for eco, (n, out, years) in sorted(by.items())},
        )

    def frame(self) -> Any:
        """A `pandas.DataFrame`, one row per `FreshnessRow`; columns in `report.FRAME_COLUMNS`."""
        from .report import to_frame

        return to_frame(self)

    def plot_png(self, top: int = 30) -> bytes:
        """A horizontal bar chart of libyear per outdated dependency, as PNG bytes."""
        from .report import plot_png

        return plot_png(self, top=top)

    def to_dict(self) -> dict[str, Any]:
        from .report import to_dict

        return to_dict(self)

    def to_json(self) -> str:
        from .report import render_json

        return render_json(self)

    def to_markdown(self) -> str:
        from .report import render_markdown

        return render_markdown(self)

    def to_text(self) -> str:
        from .report import render_text

        return render_text(self)


@dataclass(slots=True)
class _Group:
    ecosystem: str
    name: str
    version: str | None
    files: set[str] = field(default_factory=set)
    direct: bool | None = None
    spec: str | None = None


def _group(deps: Sequence[Dependency]) -> dict[tuple[str, str, str | None], _Group]:
    """One entry per (ecosystem, name, version): the same pin in a manifest and its lockfile is one dependency,
    asked about once, that remembers both files. Direct wins over transitive, which wins over unknown."""
    groups: dict[tuple[str, str, str | None], _Group] = {}
    for dep in deps:
        name = normalise_name(dep.ecosystem, dep.name)
        version = dep.version.strip() if dep.version and dep.version.strip() else None
        key = (dep.ecosystem, name, version)
        group = groups.setdefault(key, _Group(dep.ecosystem, name, version))
        group.files.add(dep.file)
        if dep.direct or (dep.direct is False and group.direct is None):
            group.direct = dep.direct
        group.spec = group.spec or dep.spec
    return groups


def _is_newer(ecosystem: str, latest: str, used: str) -> bool:
    try:
        return compare(ecosystem, latest, used) > 0
    except (InvalidVersion, UnsupportedEcosystem):
        return latest != used  # an unorderable pin that is not the latest: behind by an unknown amount


def _row(group: _Group, info: PackageInfo) -> FreshnessRow | FreshnessError:
    files = tuple(sorted(group.files))
    common: dict[str, Any] = {"files": files, "direct": group.direct, "spec": group.spec}
    notes = list(info.notes)
    latest_release = info.find(info.latest) if info.latest else None
    latest_released = latest_release.published if latest_release else None
    if info.latest is None:
        notes.append(f"no stable release on {info.registry}")
    if group.version is None:
        return FreshnessRow(
            group.ecosystem,
            group.name,
            None,
            info.latest,
            UNPINNED,
            latest_released=latest_released,
            notes=tuple(notes),
            **common,
        )
    used = info.find(group.version)
    if used is None:
        return FreshnessError(
            group.ecosystem,
            group.name,
            group.version,
            info.registry,
            f"version {group.version} not published on {info.registry}",
            files,
        )
    if used.yanked:
        notes.append(f"{group.version} is yanked")
    if info.latest is None or not _is_newer(group.ecosystem, info.latest, group.version):
        return FreshnessRow(
            group.ecosystem,
            group.name,
            group.version,
            info.latest,
            UP_TO_DATE,
            used_released=used.published,
            latest_released=latest_released,
            behind=Behind() if info.latest else None,
            libyear=0.0,
            notes=tuple(notes),
            **common,
        )
    try:
        behind: Behind | None = versions_behind(group.ecosystem, group.version, info.latest)
    except (InvalidVersion, UnsupportedEcosystem):
        behind = None
        notes.append(f"{group.version} is not a version {group.ecosystem} can order")
    years: float | None = None
    if used.published and latest_released:
        years = libyear(used.published, latest_released)
    else:
        notes.append("release date unknown")
    return FreshnessRow(
        group.ecosystem,
        group.name,
        group.version,
        info.latest,
        OUTDATED,
        used_released=used.published,
        latest_released=latest_released,
        behind=behind,
        libyear=years,
        notes=tuple(notes),
        **common,
    )


def _row_order(row: FreshnessRow) -> tuple[Any, ...]:
    return (row.libyear is None, -(row.libyear or 0.0), row.ecosystem, row.name, row.version or "")


def check_freshness(
    deps: Sequence[Dependency],
    *,
    registries: RegistryUrls = DEFAULT_REGISTRIES,
    now: datetime | None = None,
    workers: int = DEFAULT_WORKERS,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float | None = DEFAULT_DEADLINE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> FreshnessReport:
    """Ask each registry once per distinct package, concurrently, and measure every dependency against it.

    Never raises for a registry's sake: each failure is a `FreshnessError` of the dependencies it concerns.
    `now` stamps the report (tests pass a fixed one). `deadline` bounds the whole check in seconds and
    `max_bytes` each registry answer (see `registries.py`)."""
    groups = _group(deps)
    packages: dict[tuple[str, str], set[str]] = {}
    for (ecosystem, name, version), _ in groups.items():
        used = packages.setdefault((ecosystem, name), set())
        if version is not None:
            used.add(version)
    answers = fetch_packages(
        packages, urls=registries, workers=workers, timeout=timeout, deadline=deadline, max_bytes=max_bytes
    )
    rows: list[FreshnessRow] = []
    errors: list[FreshnessError] = []
    for (ecosystem, name, _), group in groups.items():
        answer = answers[(ecosystem, name)]
        if isinstance(answer, RegistryError):
            registry = answer.registry or registry_name(ecosystem)
            errors.append(
                FreshnessError(ecosystem, name, group.version, registry, answer.reason, tuple(sorted(group.files)))
            )
            continue
        result = _row(group, answer)
        if isinstance(result, FreshnessError):
            errors.append(result)
        else:
            rows.append(result)
    rows.sort(key=_row_order)
    errors.sort(key=lambda e: (e.ecosystem, e.name, e.version or ""))
    return FreshnessReport(tuple(rows), tuple(errors), now or datetime.now(UTC))
