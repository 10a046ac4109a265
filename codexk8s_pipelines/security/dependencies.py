"""The one shape of a dependency, shared by the security scan and the freshness check.

Ecosystem names are OSV's spelling (`PyPI`, `npm`, `Go`, `crates.io`) so a dependency is looked up in the advisory
database and a registry without translation. Names are normalised once, here, so every consumer compares alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PYPI = "PyPI"
NPM = "npm"
GO = "Go"
CRATES = "crates.io"
MAVEN = "Maven"
RUBYGEMS = "RubyGems"
PACKAGIST = "Packagist"
NUGET = "NuGet"
PUB = "Pub"
HEX = "Hex"
CRAN = "CRAN"
ECOSYSTEMS: tuple[str, ...] = (PYPI, NPM, GO, CRATES, MAVEN, RUBYGEMS, PACKAGIST, NUGET, PUB, HEX, CRAN)
_CASE_INSENSITIVE = frozenset({NUGET, PACKAGIST})

_PEP503 = re.compile(r"[-_.]+")


def normalise_name(ecosystem: str, name: str) -> str:
    """PyPI names per PEP 503 (case and `-_.` runs are not significant); NuGet and Packagist names are
    case-insensitive (lowercased); the others are exact (npm, crates.io, Pub and Hex already require lowercase
    names; Go module paths, Maven coordinates, gems and CRAN packages are case-sensitive)."""
    name = name.strip()
    if ecosystem == PYPI:
        return _PEP503.sub("-", name).lower()
    if ecosystem in _CASE_INSENSITIVE:
        return name.lower()
    return name


def location(file: str, line: int | None) -> str:
    """`file:line` as reports write a place, or only `file` when the line is unknown."""
    return f"{file}:{line}" if line else file


@dataclass(frozen=True, slots=True)
class Dependency:
    """One resolved (or declared) dependency where it was found.

    `version` is the exact version in use; it is None for a manifest entry without a pin (`requests>=2`), which
    is kept (so freshness and reports can name it) but cannot be matched against advisories. `spec` keeps the
    declared requirement text when there is one.
    """

    ecosystem: str
    name: str
    version: str | None
    file: str  # path relative to the scanned root, with forward slashes
    line: int | None = None  # 1-based line of the entry in `file`, when the format has lines
    spec: str | None = None
    direct: bool | None = None  # True for manifest entries, False for transitive lock entries, None if unknown
    # Why an entry without a version has none when it is not a plain range: `direct URL (git)`, `direct URL`.
    # Such entries cannot be matched, and the reports say so instead of letting them vanish.
    unpinned_reason: str | None = None


def url_reason(url: str) -> str:
    """How reports name a requirement that points at a URL instead of a registry release."""
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("git", "hg", "svn", "bzr")):
        return f"direct URL ({scheme.split('+', 1)[0]}): not a registry release"
    if scheme == "file":
        return "local path: not a registry release"
    return "direct URL: not a registry release"


@dataclass(frozen=True, slots=True)
class ExtractionError:
    """A file (or one entry of it) that could not be read: reported, never fatal to the rest of the scan."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{location(self.file, self.line)}: {self.message}"


@dataclass(slots=True)
class Extraction:
    dependencies: list[Dependency] = field(default_factory=list)
    errors: list[ExtractionError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every manifest/lockfile that was read, relative paths
